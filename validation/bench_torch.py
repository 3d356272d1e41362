"""Neural-ODE training cost: gqlib's adjoints against torchdiffeq, side by side (issue 5).

Problem: dz/dt = MLP(z), 16 -> W -> W -> 16, tanh, weights N(0, 4/fan_in), biases N(0, 0.04),
drawn after ``torch.manual_seed(0)``; z0 ~ N(0, 1) (batch x 16) from a generator seeded 1;
t = linspace(0, 1, 11); loss = mean of z(t)^2 over t_1..t_10; dopri5, rtol 1e-6, atol 1e-8,
float64, one thread. For every (W, batch) and method: forward and backward time (median of
``--repeats`` runs after a warm-up), NFE by kind, peak memory growth of one forward+backward in
a fresh process (CPU: VmHWM - VmRSS before; CUDA: max_memory_allocated - memory_allocated
before), and the relative gradient error (parameters and z0) against a tight direct reference
(torchdiffeq, rtol = atol = 1e-10).

    python validation/bench_torch.py                      # full grid, CPU (about 30 min)
    python validation/bench_torch.py --widths 1024 --batches 4 64 --repeats 3
    python validation/bench_torch.py --device cuda --out docs/bench_torch_cuda.md

Every configuration runs in its own process (``--worker``), so memory peaks do not mix.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

METHODS = {
    # name: (library, adjoint, options)
    "tdq direct": ("torchdiffeq", None, {}),
    "tdq adjoint": ("torchdiffeq", "adjoint", {}),
    "tdq seminorm": ("torchdiffeq", "adjoint", {"norm": "seminorm"}),
    "gq adaptive": ("gqlib", "gq", {}),
    "gq nockpt": ("gqlib", "gq", {"checkpoints": False}),
    "checkpoint": ("gqlib", "checkpoint", {}),
    "gq paper": ("gqlib", "gq", {"nodes": "paper"}),
    "interpolated": ("gqlib", "interpolated", {}),
    "backsolve": ("gqlib", "backsolve", {}),
    "collocation": ("gqlib", "collocation", {}),
    "gq direct": ("gqlib", None, {}),
    "auto": ("gqlib", "auto", {}),
    "default": ("gqlib", "default", {}),  # odeint_adjoint's strategy (DEFAULT_ADJOINT)
    # the user's word that the MLP ignores t and maps rows on their own: parameter VJPs of
    # many calls stacked into one (at <= 16 rows per call; gqlib.adjoint._rows)
    "default rowwise": ("gqlib", "default", {"rowwise": True}),
    "checkpoint rowwise": ("gqlib", "checkpoint", {"rowwise": True}),
    # without the forward's kept stage graphs: every step recomputed from its checkpoint
    "checkpoint recompute": ("gqlib", "checkpoint", {"keep_stages": 0}),
    "default recompute": ("gqlib", "default", {"keep_stages": 0}),
}
RTOL, ATOL = 1e-6, 1e-8
_CHOOSING = ("auto", "default", "default rowwise", "default recompute")  # rows name the choice


def build(W: int, batch: int, device: str):
    import torch

    torch.manual_seed(0)

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = torch.nn.Linear(16, W)
            self.l2 = torch.nn.Linear(W, W)
            self.l3 = torch.nn.Linear(W, 16)
            for layer in (self.l1, self.l2, self.l3):
                torch.nn.init.normal_(layer.weight, 0.0, (4.0 / layer.in_features) ** 0.5)
                torch.nn.init.normal_(layer.bias, 0.0, 0.2)

        def forward(self, t, z):
            return self.l3(torch.tanh(self.l2(torch.tanh(self.l1(z)))))

    model = MLP().to(device=device, dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    z0 = torch.randn(batch, 16, generator=gen, dtype=torch.float64).to(device)
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64, device=device)
    return model, z0, t


class Counter:
    """Counts calls of the model (torchdiffeq has no NFE statistics)."""

    def __init__(self, model):
        self.model, self.n = model, 0

    def __call__(self, t, z):
        self.n += 1
        return self.model(t, z)


def _sync(device):
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def one_pass(name, model, z0, t, device, rtol=RTOL, atol=ATOL):
    """Forward + backward once: times, NFE, gradients."""
    import torch
    import torchdiffeq

    import gqlib.torch as gt

    lib, adjoint, opts = METHODS[name]
    z0 = z0.detach().clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    stats = {}
    _sync(device)
    t0 = time.perf_counter()
    if lib == "torchdiffeq":
        counter = Counter(model)
        if adjoint is None:
            ys = torchdiffeq.odeint(counter, z0, t, rtol=rtol, atol=atol, method="dopri5")
        else:
            # odeint_adjoint needs an nn.Module for the parameters: pass them explicitly
            ys = torchdiffeq.odeint_adjoint(counter, z0, t, rtol=rtol, atol=atol, method="dopri5",
                                            adjoint_params=tuple(model.parameters()),
                                            adjoint_options=dict(opts) or None)
        nfe_fwd = counter.n
    else:
        if adjoint == "default":
            ys, st = gt.odeint_adjoint(model, z0, t, rtol=rtol, atol=atol, method="dopri5",
                                       adjoint_options=dict(opts) or None, return_stats=True)
        else:
            ys, st = gt.odeint(model, z0, t, rtol=rtol, atol=atol, method="dopri5",
                               adjoint=adjoint, adjoint_options=dict(opts) or None,
                               return_stats=True)
        nfe_fwd = st.forward["nfe"]
    _sync(device)
    t1 = time.perf_counter()
    loss = (ys[1:] ** 2).mean()
    loss.backward()
    _sync(device)
    t2 = time.perf_counter()
    if lib == "torchdiffeq":
        stats = {"nfe_fwd": nfe_fwd, "nfe_bwd_f": counter.n - nfe_fwd if adjoint else 0}
    else:
        stats = {"nfe_fwd": nfe_fwd}
        if st.backward:
            stats.update({k: st.backward[k] for k in ("nfe_f", "nfe_vjp_y", "nfe_vjp_params",
                                                       "n_nodes", "n_accepted", "n_rejected",
                                                       "seconds", "strategy")
                          if k in st.backward})
    grads = torch.cat([z0.grad.reshape(-1)] + [p.grad.reshape(-1) for p in model.parameters()])
    return t1 - t0, t2 - t1, stats, grads.detach()


def worker(args) -> None:
    import torch

    torch.set_num_threads(1)
    device = args.device
    model, z0, t = build(args.W, args.B, device)
    if args.method == "reference":
        z = z0.detach().clone().requires_grad_(True)
        import torchdiffeq

        ys = torchdiffeq.odeint(model, z, t, rtol=1e-10, atol=1e-10, method="dopri5")
        (ys[1:] ** 2).mean().backward()
        g = torch.cat([z.grad.reshape(-1)] + [p.grad.reshape(-1) for p in model.parameters()])
        torch.save(g.cpu(), args.ref)
        print(json.dumps({"ok": True}))
        return
    methods = args.method.split(",")
    if len(methods) == 1:
        # memory: one pass in a fresh process after a warm-up of every code path (imports,
        # numba, caches) on a tiny model, so that the peak is the pass's own
        m = methods[0]
        tiny = build(4, 2, device)
        one_pass(m, *tiny, device)
        model, z0, t = build(args.W, args.B, device)
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        else:
            before = _rss_kib("VmRSS")
        _, _, _, grads = one_pass(m, model, z0, t, device)
        if device == "cuda":
            torch.cuda.synchronize()
            peak_mib = (torch.cuda.max_memory_allocated() - before) / 2 ** 20
        else:
            peak_mib = (_rss_kib("VmHWM") - before) / 1024
        ref = torch.load(args.ref).to(grads.device)
        err = float(torch.linalg.vector_norm(grads - ref) / torch.linalg.vector_norm(ref))
        print(json.dumps({"peak_mib": peak_mib, "err": err}))
        return
    # times: every method in this one process, side by side: a warm-up pass of each, then
    # `repeats` rounds interleaving the methods (machine load hits them alike)
    for m in methods:
        one_pass(m, model, z0, t, device)
    runs = {m: [] for m in methods}
    load0 = os.getloadavg()[0]
    for _ in range(args.repeats):
        for m in methods:
            runs[m].append(one_pass(m, model, z0, t, device)[:3])
    out = {}
    for m, rs in runs.items():
        by_bwd = sorted(rs, key=lambda r: r[1])
        _, bwd, stats = by_bwd[(len(by_bwd) - 1) // 2]  # the median run, with its own breakdown
        out[m] = {"fwd": statistics.median(r[0] for r in rs), "bwd": bwd, "stats": stats}
    print(json.dumps({"times": out, "load": [load0, os.getloadavg()[0]]}))


IN_PROCESS = False


def run_worker(argv) -> dict:
    if IN_PROCESS:  # CUDA only: peaks are reset per configuration with torch.cuda
        import contextlib
        import io

        buf = io.StringIO()
        ns = argparse.Namespace(**{k.lstrip("-"): v for k, v in zip(argv[::2], argv[1::2], strict=True)})
        ns.W, ns.B, ns.repeats = int(ns.W), int(ns.B), int(ns.repeats)
        try:
            with contextlib.redirect_stdout(buf):
                worker(ns)
        except Exception as exc:  # report and go on with the next configuration
            return {"error": f"{type(exc).__name__}: {exc}"}
        return json.loads(buf.getvalue().strip().splitlines()[-1])
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", *argv],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--widths", type=int, nargs="+", default=[32, 128, 512, 1024, 2048])
    p.add_argument("--batches", type=int, nargs="+", default=[4, 64])
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mem-repeats", type=int, default=3,
                   help="fresh processes per memory peak (median)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="markdown file for the table")
    p.add_argument("--json", default=None, help="raw results as JSON")
    p.add_argument("--in-process", action="store_true",
                   help="CUDA: run every configuration in this process (saves start-up time)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--W", type=int, help=argparse.SUPPRESS)
    p.add_argument("--B", type=int, help=argparse.SUPPRESS)
    p.add_argument("--method", help=argparse.SUPPRESS)
    p.add_argument("--ref", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return 0
    if args.in_process:
        if args.device != "cuda":
            p.error("--in-process needs --device cuda (CPU peaks cannot be reset in-process)")
        global IN_PROCESS
        IN_PROCESS = True
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        p.error(f"unknown methods {unknown}; valid: {list(METHODS)}")
    import torch

    card = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    lines = [f"# Neural-ODE adjoint benchmark ({args.device}: {card})", "",
             f"Command: `python validation/bench_torch.py {' '.join(sys.argv[1:])}`; torch "
             f"{torch.__version__}, one thread, float64, dopri5, rtol {RTOL}, atol {ATOL}, median of "
             f"{args.repeats} runs; memory: peak growth of one forward+backward in a fresh process "
             f"(median of {args.mem_repeats} processes).",
             ""]
    from gqlib.adjoint import DEFAULT_ADJOINT

    header = ("| W | batch | method | fwd s | bwd s | bwd / tdq direct | bwd / tdq seminorm | "
              "NFE fwd | bwd f | bwd vjp_y | bwd vjp_θ | nodes | peak MiB | peak / tdq direct | "
              "grad err | load |")
    results = []
    print(header)
    lines += [f"`default` is `odeint_adjoint`'s strategy, `DEFAULT_ADJOINT = {DEFAULT_ADJOINT!r}`; "
              "`auto` rows name the strategy it chose. Times: all methods in one process, "
              "interleaved; load: 1-minute load average before and after.", "",
              header, "|" + "---|" * 16]
    for W in args.widths:
        for B in args.batches:
            with tempfile.TemporaryDirectory() as tmp:
                ref = os.path.join(tmp, "ref.pt")
                base = ["--W", str(W), "--B", str(B), "--device", args.device, "--ref", ref,
                        "--repeats", str(args.repeats)]
                r = run_worker(base + ["--method", "reference"])
                if "error" in r:
                    print(f"W={W} B={B}: reference failed: {r['error']}")
                    continue
                timed = run_worker(base + ["--method", ",".join(args.methods)])
                rows = {}
                for m in args.methods:
                    if "error" in timed:
                        rows[m] = timed
                        continue
                    # RSS peaks vary run to run by up to a P-sized buffer (the C allocator's
                    # reuse of freed blocks): the median of --mem-repeats fresh processes
                    mems = [run_worker(base + ["--method", m]) for _ in range(args.mem_repeats)]
                    bad = [x for x in mems if "error" in x]
                    if bad:
                        rows[m] = bad[0]
                        continue
                    mem = dict(mems[0])
                    mem["peak_mib"] = statistics.median(x["peak_mib"] for x in mems)
                    mem["peaks"] = [x["peak_mib"] for x in mems]
                    rows[m] = {**timed["times"][m], **mem, "load": timed["load"]}
            direct = rows.get("tdq direct", {}).get("bwd")
            semi = rows.get("tdq seminorm", {}).get("bwd")
            peak_direct = rows.get("tdq direct", {}).get("peak_mib")
            for m, r in rows.items():
                results.append({"W": W, "batch": B, "method": m, **r})
                if "error" in r:
                    row = f"| {W} | {B} | {m} | failed: {r['error']} |"
                else:
                    s = r["stats"]
                    bwd_f = s.get("nfe_f", s.get("nfe_bwd_f", 0))
                    vs_direct = f"{r['bwd'] / direct:.2f}" if direct else "-"
                    vs_semi = f"{r['bwd'] / semi:.3f}" if semi else "-"
                    vs_peak = f"{r['peak_mib'] / peak_direct:.2f}" if peak_direct else "-"
                    label = m if m not in _CHOOSING or "strategy" not in s else \
                        f"{m} → {s['strategy']}"
                    load = "/".join(f"{x:.1f}" for x in r.get("load", []))
                    row = (f"| {W} | {B} | {label} | {r['fwd']:.3f} | {r['bwd']:.3f} | "
                           f"{vs_direct} | {vs_semi} | {s.get('nfe_fwd', '-')} | {bwd_f} | "
                           f"{s.get('nfe_vjp_y', '-')} | {s.get('nfe_vjp_params', '-')} | "
                           f"{s.get('n_nodes', '-')} | {r['peak_mib']:.1f} | {vs_peak} | "
                           f"{r['err']:.1e} | {load} |")
                print(row, flush=True)
                lines.append(row)
    breakdown = ["", "Where gqlib's backward time goes (host seconds inside the model's calls, by "
                 "kind; checkpoint: f = the recomputed forward stages (linearised), vjp_θ = "
                 "their backward passes (y and θ together); gq/interpolated: vjp_y = the "
                 "backward solver's stages (f + a^T df/dy fused), vjp_θ = the quadrature "
                 "nodes (f + a^T df/dθ); rest = solver, interpolation, accumulation, "
                 "bookkeeping; on CUDA these are launch times unless the model syncs):", "",
                 "| W | batch | method | bwd s | f s (calls) | vjp_y s (calls) | vjp_θ s (calls) "
                 "| rest s |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        sec = r.get("stats", {}).get("seconds")
        if not sec:
            continue
        s = r["stats"]
        rest = r["bwd"] - sec["vjp_y"] - sec["vjp_params"] - sec["f"]
        name = r["method"] + (f" → {s['strategy']}" if r["method"] in _CHOOSING
                              and "strategy" in s else "")
        breakdown.append(f"| {r['W']} | {r['batch']} | {name} | {r['bwd']:.3f} | "
                         f"{sec['f']:.3f} ({s.get('nfe_f', 0)}) | "
                         f"{sec['vjp_y']:.3f} ({s.get('nfe_vjp_y', 0)}) | "
                         f"{sec['vjp_params']:.3f} ({s.get('nfe_vjp_params', 0)}) | {rest:.3f} |")
    print("\n".join(breakdown))
    lines += breakdown
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
