"""Side-by-side speed of the numba driver in two checkouts (e.g. this one and the previous commit).

Each round starts one process per checkout (alternating which goes first) that solves
``bench_solvers.PROBLEMS`` with dopri5 and dop853 on the numba path (rtol = atol = 1e-8, warm) and
reports the minimum over 15 batches of the *thread CPU time* per solve: on a shared machine wall
time swings by 50% with other people's load, CPU time by a few percent. The table gives, per case,
the minimum over rounds for each checkout and their ratio.

Run (after ``git worktree add --detach /tmp/base <commit>``)::

    .venv/bin/python validation/compare_numba_speed.py /tmp/base . --rounds 8
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

_PROBE = r"""
import json, sys, time
sys.path.insert(0, "validation")
import numpy as np, gqlib
import bench_solvers as b
out = {}
for name, p in b.PROBLEMS.items():
    t_eval = np.linspace(*p["t"], b.N_OUT)
    for method in ("dopri5", "dop853"):
        def fn():
            return gqlib.solve(p["f"], p["y0"], t_eval, method=method, rtol=b.RTOL, atol=b.ATOL)
        fn()
        t0 = time.thread_time(); fn(); once = time.thread_time() - t0
        inner = max(1, int(0.03 / max(once, 1e-6)))
        ts = []
        for _ in range(15):
            t0 = time.thread_time()
            for _ in range(inner):
                fn()
            ts.append((time.thread_time() - t0) / inner)
        out[f"{name} {method}"] = min(ts)
print(json.dumps(out))
"""


def run(tree: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree))
    r = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                       cwd=tree, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--rounds", type=int, default=8)
    args = ap.parse_args()
    trees = {"base": args.base.resolve(), "new": args.new.resolve()}
    res = {k: [] for k in trees}
    for r in range(args.rounds):
        for name in (["base", "new"] if r % 2 == 0 else ["new", "base"]):
            res[name].append(run(trees[name]))
    print(f"{args.rounds} interleaved rounds; thread CPU time per warm solve, minimum over rounds")
    print(f"base {trees['base']}\nnew  {trees['new']}")
    worst = 0.0
    for case in res["base"][0]:
        b = min(x[case] for x in res["base"])
        n = min(x[case] for x in res["new"])
        per_round = [y[case] / x[case] for x, y in zip(res["base"], res["new"], strict=True)]
        worst = max(worst, n / b)
        print(f"{case:22s} base {b * 1e3:8.4f} ms  new {n * 1e3:8.4f} ms  new/base {n / b:.3f} "
              f"(per round {min(per_round):.2f}..{max(per_round):.2f}, median "
              f"{float(np.median(per_round)):.3f})")
    print(f"worst new/base: {worst:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
