"""g1d: the paper's 1-D crossing-trajectories task (Norcliffe & Deisenroth 2023, after Dupont et al.).

Data: ``x(0) = -1 -> x(1) = +1`` and ``x(0) = +1 -> x(1) = -1``, full batch. Model: the state
``x`` with 3 zero-augmented dimensions, ``dz/dt = MLP(z)``, softplus, ``4 -> W -> W -> 4``, no
time input. Loss and metric: MSE of ``z_0(1)`` against the target. Adam, dopri5, rtol = atol =
1e-3, C = 0.1 (``gtol``). Full: lr 1e-4, 200 epochs, widths 5 ... 3000, 10 seeds (the settings of
the paper's notebook).
"""

from __future__ import annotations

NAME = "g1d"
TITLE = "g1d (1-D crossing trajectories, augmented NODE)"
METRIC = "final MSE"
HIGHER_IS_BETTER = False
RTOL = ATOL = 1e-3
GTOL = 0.1
CONFIGS = {
    "tiny": dict(widths=[5], epochs=2, seeds=1, lr=1e-4),
    "quick": dict(widths=[5, 100, 500], epochs=15, seeds=2, lr=1e-4),
    "full": dict(widths=[5, 20, 100, 500, 1000, 1500, 2000, 2500, 3000], epochs=200, seeds=10,
                 lr=1e-4),
}
AUG = 3


def tasks(cfg):
    return [NAME]


def run_one(task, method, width, seed, cfg, progress=None):
    import torch

    from .common import mlp, train

    torch.manual_seed(seed)
    net = mlp(1 + AUG, width, 1 + AUG)

    def field(t, z):
        return net(z)

    x0 = torch.tensor([[-1.0], [1.0]])
    y0 = torch.cat([x0, torch.zeros(2, AUG)], 1)
    target = -x0
    t = torch.tensor([0.0, 1.0])
    params = list(net.parameters())

    def forward(solve, func, batch, params):
        return solve(func, y0, t, params)[-1, :, :1], target

    def loss_fn(pred, tgt):
        return ((pred - tgt) ** 2).mean()

    def metric(model):
        import torchdiffeq

        with torch.no_grad():
            z1 = torchdiffeq.odeint(model, y0, t, rtol=RTOL, atol=ATOL)[-1, :, :1]
        return float(loss_fn(z1, target))

    return train(name=method, step_data=lambda: [None], model=field, params=params,
                 forward=forward, loss_fn=loss_fn, epochs=cfg["epochs"], lr=cfg["lr"],
                 metric_fn=metric, rtol=RTOL, atol=ATOL, gtol=GTOL, progress=progress)


def iteration_times(width, methods, repeats=3, seed=0):
    """One training iteration (forward + backward at the initial weights) per method, side by
    side in this process: a warm-up of every method, then ``repeats`` rounds interleaving the
    methods; returns ``{method: (median s, [s...], fwd NFE, bwd NFE, stats)}``."""
    import statistics
    import time

    import torch

    from .common import Counted, make_solver, mlp, set_threads

    set_threads()
    torch.manual_seed(seed)
    net = mlp(1 + AUG, width, 1 + AUG)
    params = list(net.parameters())
    x0 = torch.tensor([[-1.0], [1.0]])
    y0 = torch.cat([x0, torch.zeros(2, AUG)], 1)
    target = -x0
    t = torch.tensor([0.0, 1.0])
    func = Counted(lambda t, z: net(z))
    solvers = {m: make_solver(m, rtol=RTOL, atol=ATOL, gtol=GTOL) for m in methods}

    def once(m):
        for p in params:
            p.grad = None
        n0 = func.n
        t0 = time.perf_counter()
        pred = solvers[m](func, y0, t, params)[-1, :, :1]
        n1 = func.n
        ((pred - target) ** 2).mean().backward()
        sec = time.perf_counter() - t0
        return sec, n1 - n0, func.n - n1

    for m in methods:
        once(m)
    runs = {m: [] for m in methods}
    for _ in range(repeats):
        for m in methods:
            runs[m].append(once(m))
    return {m: (statistics.median(r[0] for r in rs), [r[0] for r in rs], rs[0][1], rs[0][2])
            for m, rs in runs.items()}


def main(argv=None) -> int:
    """``python -m validation.experiments.g1d``: the iteration-time table at the given widths."""
    import argparse
    import os
    import shlex
    import sys

    from .common import method_names

    ap = argparse.ArgumentParser(description="g1d: one iteration's time per method, side by side")
    ap.add_argument("--widths", default="3000")
    ap.add_argument("--methods", default="", help="';'-separated subset of the methods")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="", help="markdown file for the table")
    args = ap.parse_args(argv)
    methods = method_names(args.methods.split(";") if args.methods else None)
    cmd = "python -m validation.experiments.g1d " + shlex.join(
        argv if argv is not None else sys.argv[1:])
    lines = [f"Command: `{cmd}`; one torch thread; median of {args.repeats} interleaved rounds "
             "after a warm-up; an iteration is forward + backward at the initial weights.", ""]
    for width in (int(w) for w in args.widths.split(",")):
        load0 = os.getloadavg()[0]
        res = iteration_times(width, methods, args.repeats)
        load1 = os.getloadavg()[0]
        base = res.get("torchdiffeq direct", (None,))[0]
        adj = res.get("torchdiffeq adjoint", (None,))[0]
        lines += [f"#### g1d, width {width} (load {load0:.1f} -> {load1:.1f})", "",
                  "| method | s / iteration | x tdq direct | tdq adjoint / this | NFE fwd | NFE bwd |",
                  "|---|---|---|---|---|---|"]
        for m, (sec, _, nf, nb) in res.items():
            lines.append(f"| {m} | {sec:.3f} | {sec / base:.2f} | "
                         f"{'-' if adj is None else f'{adj / sec:.1f}'} | {nf} | {nb} |"
                         if base else f"| {m} | {sec:.3f} | - | - | {nf} | {nb} |")
        lines.append("")
        print("\n".join(lines[-len(res) - 4:]), flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
