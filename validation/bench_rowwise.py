"""Where stacking row-wise parameter VJPs pays: the checkpoint adjoint's backward with and
without ``adjoint_options={"rowwise": True}`` against torchdiffeq's direct backprop, over
batches, with the row limit lifted (``gqlib.adjoint._rows.MAX_CALL_ROWS``), so that the measured
crossover can set it.

    python validation/bench_rowwise.py --width 1024 --batches 4 8 16 32 64 --repeats 3

Settings of validation/bench_torch.py (MLP 16 -> W -> W -> 16 tanh, dopri5, rtol 1e-6, atol
1e-8, float64, one thread); backward seconds, median of ``repeats`` interleaved rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--batches", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch
    import torchdiffeq

    import gqlib.adjoint._rows as rows
    import gqlib.torch as gt
    from validation.bench_torch import ATOL, RTOL, build

    torch.set_num_threads(1)
    rows.MAX_CALL_ROWS = 1 << 30  # measure past the limit
    print(f"W = {args.width}, load {os.getloadavg()[0]:.1f}")
    print("| batch | direct bwd s | checkpoint bwd s (x direct) | rowwise bwd s (x direct) |")
    print("|---|---|---|---|")
    for batch in args.batches:
        model, z0, t = build(args.width, batch, "cpu")
        times: dict = {"direct": [], "checkpoint": [], "rowwise": []}
        for _ in range(args.repeats + 1):  # the first round warms up
            for kind, v in times.items():
                model.zero_grad()
                if kind == "direct":
                    ys = torchdiffeq.odeint(model, z0, t, rtol=RTOL, atol=ATOL)
                else:
                    ys = gt.odeint_adjoint(model, z0, t, rtol=RTOL, atol=ATOL,
                                           adjoint="checkpoint",
                                           adjoint_options={"rowwise": kind == "rowwise"})
                loss = (ys[1:] ** 2).mean()
                t0 = time.perf_counter()
                loss.backward()
                v.append(time.perf_counter() - t0)
        m = {k: statistics.median(v[1:]) for k, v in times.items()}
        print(f"| {batch} | {m['direct']:.3f} | {m['checkpoint']:.3f} "
              f"({m['checkpoint'] / m['direct']:.2f}) | {m['rowwise']:.3f} "
              f"({m['rowwise'] / m['direct']:.2f}) |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
