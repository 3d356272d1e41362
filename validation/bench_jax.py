"""gqlib.jax against diffrax on the torch benchmark's neural ODE (issue 12).

Problem (as validation/bench_torch.py): dz/dt = MLP(z), 16 -> W -> W -> 16, tanh, weights
N(0, 4/fan_in), biases N(0, 0.04) (NumPy generator seeded 0), z0 ~ N(0, 1) (batch x 16, seeded 1),
t = linspace(0, 1, 11), loss = mean of z(t)^2 over t_1..t_10; dopri5 (diffrax.Dopri5),
rtol 1e-6, atol 1e-8, float64, one XLA thread. Methods: gqlib.jax's default strategy
(CheckpointAdjoint) and GQAdjoint against diffrax's RecursiveCheckpointAdjoint and
BacksolveAdjoint (with and without the seminorm). For each: compile time of the jitted
value_and_grad (``.lower().compile()``), then forward and value_and_grad time (median of
``--repeats`` after a warm-up call), NFE (forward from the solvers' statistics; all calls of the
field in one value_and_grad counted by an instrumented run), and the relative gradient
difference against diffrax's RecursiveCheckpointAdjoint.

    python validation/bench_jax.py                          # W = 1024, batch 64 and 4
    python validation/bench_jax.py --widths 256 --batches 4 --repeats 3 --out /tmp/b.md
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

RTOL, ATOL = 1e-6, 1e-8
METHODS = ["gqlib default (auto)", "gqlib gq", "diffrax RecursiveCheckpoint",
           "diffrax Backsolve", "diffrax Backsolve seminorm"]


def build(W: int, batch: int):
    rng = np.random.default_rng(0)
    params = []
    for fan_in, fan_out in ((16, W), (W, W), (W, 16)):
        params.append((jnp.asarray(rng.normal(0.0, (4.0 / fan_in) ** 0.5, (fan_in, fan_out))),
                       jnp.asarray(rng.normal(0.0, 0.2, fan_out))))
    z0 = jnp.asarray(np.random.default_rng(1).standard_normal((batch, 16)))
    return tuple(params), z0


def mlp(z, p):
    (w1, b1), (w2, b2), (w3, b3) = p
    h = jnp.tanh(z @ w1 + b1)
    h = jnp.tanh(h @ w2 + b2)
    return h @ w3 + b3


def make_loss(method: str, t, counter=None):
    import diffrax

    import gqlib.jax as gj
    from gqlib.adjoint import GQAdjoint

    def field(z, p):
        if counter is not None:
            jax.debug.callback(counter)
        return mlp(z, p)

    if method.startswith("gqlib"):
        adjoint = None if "default" in method else GQAdjoint()

        def solve(p, z0):
            ys, stats = gj.odeint(lambda z, t, p: field(z, p), z0, t, p, rtol=RTOL, atol=ATOL,
                                  adjoint=adjoint, return_stats=True)
            return ys, stats["nfe"]
    else:
        if "Recursive" in method:
            adj = diffrax.RecursiveCheckpointAdjoint()
        elif "seminorm" in method:
            adj = diffrax.BacksolveAdjoint(stepsize_controller=diffrax.PIDController(
                rtol=RTOL, atol=ATOL, norm=diffrax.adjoint_rms_seminorm))
        else:
            adj = diffrax.BacksolveAdjoint()

        def solve(p, z0):
            sol = diffrax.diffeqsolve(
                diffrax.ODETerm(lambda t, z, p: field(z, p)), diffrax.Dopri5(), t[0], t[-1],
                None, z0, args=p, saveat=diffrax.SaveAt(ts=t),
                stepsize_controller=diffrax.PIDController(rtol=RTOL, atol=ATOL), adjoint=adj,
                max_steps=4096)
            # Dopri5 is FSAL: 6 new evaluations per step, 2 for the initial step and f(t0, y0)
            return sol.ys, 6 * sol.stats["num_steps"] + 2

    def loss(p, z0):
        ys, _ = solve(p, z0)
        return jnp.mean(ys[1:] ** 2)

    def forward(p, z0):
        ys, nfe = solve(p, z0)
        return jnp.mean(ys[1:] ** 2), nfe
    return loss, forward


def timed(fn, *args, repeats: int):
    jax.block_until_ready(fn(*args))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(W: int, batch: int, repeats: int):
    params, z0 = build(W, batch)
    t = jnp.linspace(0.0, 1.0, 11)
    rows, ref = [], None
    for method in METHODS:
        loss, forward = make_loss(method, t)
        vg = jax.jit(jax.value_and_grad(loss))
        c0 = time.perf_counter()
        compiled = vg.lower(params, z0).compile()
        compile_s = time.perf_counter() - c0
        fwd = jax.jit(forward)
        fwd.lower(params, z0).compile()
        t_fwd = timed(fwd, params, z0, repeats=repeats)
        t_vg = timed(compiled, params, z0, repeats=repeats)
        _, nfe_fwd = fwd(params, z0)
        calls = [0]

        def count(calls=calls):
            calls[0] += 1
        lossc, _ = make_loss(method, t, counter=count)
        jax.block_until_ready(jax.jit(jax.value_and_grad(lossc))(params, z0))
        _, grads = compiled(params, z0)
        flat = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(grads)])
        if ref is None and "Recursive" in method:
            ref = flat
        rows.append(dict(method=method, compile=compile_s, fwd=t_fwd, vg=t_vg,
                         nfe_fwd=int(nfe_fwd), calls=calls[0], grad=flat))
        print(f"W={W} batch={batch} {method}: compile {compile_s:.2f} s, forward "
              f"{t_fwd:.3f} s, value_and_grad {t_vg:.3f} s, NFE fwd {int(nfe_fwd)}, "
              f"field calls {calls[0]}", flush=True)
    for r in rows:
        r["err"] = float(np.max(np.abs(r["grad"] - ref)) / np.max(np.abs(ref)))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[1024])
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 4])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="docs/bench_jax.md")
    args = ap.parse_args()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    import diffrax
    lines = ["# gqlib.jax against diffrax", "",
             "Written by `validation/bench_jax.py` "
             f"(`python validation/bench_jax.py --widths {' '.join(map(str, args.widths))} "
             f"--batches {' '.join(map(str, args.batches))} --repeats {args.repeats}`). "
             "Neural ODE dz/dt = MLP(z), 16 -> W -> W -> 16 tanh, t = linspace(0, 1, 11), "
             "dopri5 rtol 1e-6 atol 1e-8, float64, one XLA thread, all methods in one process. "
             "Times are medians of the repeats after a warm-up; compile time is "
             "`jit(value_and_grad).lower().compile()`. NFE fwd: evaluations of the field in "
             "the forward solve (solver statistics); field calls: every evaluation of the field "
             "in one value_and_grad (forward, recomputation and VJPs), counted by an "
             "instrumented run. grad diff: relative max difference of the gradient from "
             "diffrax's RecursiveCheckpointAdjoint at the same tolerances.", "",
             f"Machine: {platform.processor() or platform.machine()}, jax {jax.__version__}, "
             f"diffrax {diffrax.__version__}; load at start: `{load}`.", ""]
    for W in args.widths:
        for batch in args.batches:
            rows = run(W, batch, args.repeats)
            base = {r["method"]: r for r in rows}
            rc = base["diffrax RecursiveCheckpoint"]["vg"]
            bs = base["diffrax Backsolve"]["vg"]
            lines += [f"## W = {W}, batch = {batch}", "",
                      "| method | compile s | forward s | value_and_grad s | vs Recursive"
                      "Checkpoint | vs Backsolve | NFE fwd | field calls | grad diff |",
                      "|---|---|---|---|---|---|---|---|---|"]
            for r in rows:
                lines.append(f"| {r['method']} | {r['compile']:.2f} | {r['fwd']:.3f} | "
                             f"{r['vg']:.3f} | {r['vg'] / rc:.2f}x | {r['vg'] / bs:.2f}x | "
                             f"{r['nfe_fwd']} | {r['calls']} | {r['err']:.1e} |")
            lines.append("")
    load_end = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    lines += [f"Load at the end: `{load_end}`.", ""]
    with open(args.out, "w") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
