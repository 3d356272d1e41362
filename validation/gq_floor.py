"""How fast can any GQ backward pass be on issue 11's benchmark? A floor from measured call costs.

Issue 11 asks for gq >= 10x faster than torchdiffeq's seminorm adjoint at W = 1024, batch 64
(validation/bench_torch.py's problem). A continuous adjoint's backward pass costs at least its
calls of the model:

* a backward solver stage: ``f(t, y)`` and ``a^T df/dy`` (one forward and one backward pass,
  gqlib's fused ``f_vjp_y``);
* a quadrature node: ``a^T df/dtheta`` (a forward and a backward pass with the weight gradients,
  ``vjp_params``), or the same fused into a stage (``f_vjp``: y and theta in one pass).

This script times each kind of call on the benchmark's model in one process, times the backward
passes of torchdiffeq's direct backprop and seminorm adjoint and of gqlib's gq and interpolated
adjoints side by side (interleaved rounds, medians), and prints what the call counts cost:

* the measured counts of gq and interpolated (the cost model checked against their run);
* lower counts no error-controlled solve at this tolerance reaches: one backward step of 6
  stage calls per output interval, and as few nodes as integrate to the solver's order.

Run: ``python validation/gq_floor.py [--repeats 5] [--calls 40]`` (about 3 minutes, 2 cores).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_torch import build, one_pass  # noqa: E402


def call_costs(model, z0, calls: int) -> dict[str, float]:
    """Median seconds of each kind of call at the state z0 (interleaved)."""
    import torch

    from gqlib.torch._field import TorchParamField, UserFunc

    fn = UserFunc(model, None, z0.dtype, z0.device, check=False)
    field = TorchParamField(fn, tuple(model.parameters()))
    a = torch.randn_like(z0)
    kinds = {
        "stage (f + a^T df/dy)": lambda: field.f_vjp_y(0.5, z0, a),
        "node (a^T df/dtheta)": lambda: field.vjp_params(0.5, z0, a),
        "fused stage (f + a^T df/d(y, theta))": lambda: field.f_vjp(0.5, z0, a),
        "f alone": lambda: field(0.5, z0),
    }
    for k in kinds.values():
        k()
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for _ in range(calls):
        for name, k in kinds.items():
            t0 = time.perf_counter()
            k()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--calls", type=int, default=40)
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    model, z0, t = build(args.width, args.batch, "cpu")
    methods = ["tdq direct", "tdq seminorm", "gq adaptive", "interpolated"]
    for m in methods:
        one_pass(m, model, z0, t, "cpu")
    load0 = os.getloadavg()[0]
    runs: dict[str, list] = {m: [] for m in methods}
    for _ in range(args.repeats):
        for m in methods:
            runs[m].append(one_pass(m, model, z0, t, "cpu")[1:3])
    bwd = {m: statistics.median(r[0] for r in rs) for m, rs in runs.items()}
    stats = {m: rs[0][1] for m, rs in runs.items()}
    cost = call_costs(model, z0.detach(), args.calls)
    load1 = os.getloadavg()[0]

    print(f"# gq's floor, W = {args.width}, batch {args.batch} (torch {torch.__version__}, one thread, "
          f"load {load0:.1f}-{load1:.1f}; medians of {args.repeats} interleaved rounds, "
          f"calls: medians of {args.calls})\n")
    print("| call | ms |\n|---|---|")
    for name, s in cost.items():
        print(f"| {name} | {1e3 * s:.2f} |")
    semi, direct = bwd["tdq seminorm"], bwd["tdq direct"]
    print(f"\nBackward passes: torchdiffeq direct {direct:.3f} s, seminorm {semi:.3f} s "
          f"({semi / direct:.1f}x direct); 10x the seminorm adjoint needs <= {semi / 10:.3f} s.\n")
    st, nd, fu = (cost["stage (f + a^T df/dy)"], cost["node (a^T df/dtheta)"],
                  cost["fused stage (f + a^T df/d(y, theta))"])
    rows = []
    for m in ("gq adaptive", "interpolated"):
        s = stats[m]
        calls, nodes = s.get("nfe_vjp_y", 0), s.get("n_nodes", 0)
        model_s = calls * st + nodes * nd
        rows.append((f"{m}: measured ({calls} stage calls, {nodes} nodes; run {bwd[m]:.3f} s)",
                     model_s))
    n_out = len(t) - 1
    # the interpolated adjoint's own steps with the parameter integral fused into its stages
    # (the solver's weights b; for dopri5 b != 0 at stages 0, 2, 3, 4, 5, and the FSAL stage is
    # the next step's stage 0): every attempt fuses 5 of its 6 calls, and each restart after a
    # jump of a at an output time re-evaluates a fused stage 0; the other calls stay plain
    si = stats["interpolated"]
    attempts = si.get("n_accepted", 0) + si.get("n_rejected", 0)
    fused = 5 * attempts + n_out
    plain = si.get("nfe_vjp_y", 0) - fused
    rows.append((f"interpolated's steps ({attempts} attempts), the parameter integral fused into "
                 f"the stages with b != 0 ({fused} fused + {plain} plain, no nodes)",
                 fused * fu + plain * st))
    # one backward step per output interval: 6 new stage calls (FSAL) plus the first stage
    # re-evaluated after each jump of a at an output time
    s1 = 7 * n_out
    rows.append((f"one step per output interval ({s1} stage calls), 3 Gauss nodes each "
                 f"({3 * n_out}: order 6)", s1 * st + 3 * n_out * nd))
    rows.append((f"one step per output interval, the parameter integral fused into the 5 "
                 f"stages with b != 0 ({5 * n_out} fused + {2 * n_out} plain)",
                 5 * n_out * fu + 2 * n_out * st))
    s2 = 13 * n_out
    rows.append((f"two steps per output interval ({s2} stage calls), 3 Gauss nodes each",
                 s2 * st + 3 * n_out * nd))
    rows.append((f"two steps per output interval, fused into the stages with b != 0 "
                 f"({10 * n_out} fused + {3 * n_out} plain)", 10 * n_out * fu + 3 * n_out * st))
    print("| backward pass made of | model calls alone, s | seminorm / that |\n|---|---|---|")
    for name, secs in rows:
        print(f"| {name} | {secs:.3f} | {semi / secs:.1f} |")
    print("\nThe forward's accepted steps: "
          f"{stats['gq adaptive'].get('nfe_fwd', 0)} NFE; gq's backward accepted "
          f"{stats['gq adaptive'].get('n_accepted')} steps, rejected "
          f"{stats['gq adaptive'].get('n_rejected')}; interpolated accepted "
          f"{stats['interpolated'].get('n_accepted')}, rejected "
          f"{stats['interpolated'].get('n_rejected')}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
