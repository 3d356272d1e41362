"""Benchmark: the cost of the checks a solve runs on every field call and every step.

The per-call checks of the field's output (shape and dtype: host metadata, no sync) and the
per-step non-finite checks (folded into the error norm's one scalar sync; in the numba kernel a
sum over y1) against the same solves with both off (``gqlib._checks.checks_disabled()``, a
private switch the drivers read once per solve). Side by side in interleaved rounds (on and off
alternating, their order swapped each round), median of 5 rounds:

* the Lorenz problem of ``validation/bench_solvers.py`` (dopri5, rtol = atol = 1e-8, t in
  [0, 20], 11 outputs) through the array-API driver (plain NumPy f) and the numba driver
  (jitted f);
* the 25 DETEST problems (``validation/detest.py``: Hull, Enright, Fellen & Sedgwick 1972,
  classes A-E) through ``gqlib.torch.odeint`` (dopri5, float64 CPU, default rtol 1e-7 and atol
  1e-9, t in [0, 20], 11 outputs), forward.

Each round alternates on and off call by call for about ``MIN_RUN`` seconds each (on this shared
two-core machine whole solves vary by 5-10% between rounds; the on/off difference is a few %).

Target: overhead (on / off - 1) below 3% in each row.
Writes ``docs/bench_checks.md``.  Run: ``.venv/bin/python validation/bench_checks.py``.
"""

from __future__ import annotations

import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_solvers import ATOL, N_OUT, RTOL, lorenz  # noqa: E402
from detest import PROBLEMS, T_END  # noqa: E402

import gqlib  # noqa: E402
from gqlib._checks import checks_disabled  # noqa: E402
from gqlib.torch import odeint  # noqa: E402

ROOT = HERE.parent
ROUNDS = 5
TARGET = 0.03
torch.set_num_threads(1)

Y0 = np.array([1.0, 1.0, 1.0])
T_LORENZ = np.linspace(0.0, 20.0, N_OUT)
T_DETEST = torch.linspace(0.0, T_END, N_OUT, dtype=torch.float64)


def lorenz_numpy():
    return gqlib.solve(lorenz.py_func, Y0, T_LORENZ, method="dopri5", rtol=RTOL, atol=ATOL)


def lorenz_numba():
    return gqlib.solve(lorenz, Y0, T_LORENZ, method="dopri5", rtol=RTOL, atol=ATOL)


def detest_forward():
    with torch.no_grad():
        for f, y0 in PROBLEMS.values():
            odeint(f, y0, T_DETEST)


def _one(fn, checks):
    """CPU seconds of this process for one call (all single-threaded: one torch thread): on a
    shared machine wall time also counts the other processes' time slices."""
    t0 = time.process_time()
    if checks:
        fn()
    else:
        with checks_disabled():
            fn()
    return time.process_time() - t0


MIN_RUN = 2.0


def on_off(fn, min_run=MIN_RUN):
    """Median seconds per call with the checks on and off, and the median of the rounds' ratios.

    Each round alternates on and off call by call (which goes first alternates too) until both
    have run about ``min_run`` seconds, so a burst of load on this shared machine hits both.
    """
    _one(fn, True)
    _one(fn, False)  # warm both (numba compiles the kernel once: `checks` is an argument)
    inner = max(1, round(min_run / _one(fn, True)))
    on, off, ratios = [], [], []
    for r in range(ROUNDS):
        t_on = t_off = 0.0
        for k in range(inner):
            first = (k + r) % 2 == 0
            a = _one(fn, first)
            b = _one(fn, not first)
            t_on += a if first else b
            t_off += b if first else a
        on.append(t_on / inner)
        off.append(t_off / inner)
        ratios.append(t_on / t_off)
    return statistics.median(on), statistics.median(off), statistics.median(ratios), inner


def main() -> int:
    ref = lorenz_numpy()
    nfe_np = ref.stats["nfe"]
    with checks_disabled():
        same = np.array_equal(ref.y, lorenz_numpy().y)
    rows = [
        ("Lorenz, array-API driver (NumPy f)", lorenz_numpy, f"{nfe_np} f calls"),
        ("Lorenz, numba driver (jitted f)", lorenz_numba, f"{lorenz_numba().stats['nfe']} f calls"),
        ("DETEST A-E (25), gqlib.torch.odeint forward", detest_forward, "25 solves"),
    ]
    results = []
    for label, fn, what in rows:
        on, off, ratio, inner = on_off(fn)
        results.append((label, what, on, off, ratio))
        print(f"{label:55s} on {on * 1e3:9.3f} ms  off {off * 1e3:9.3f} ms  "
              f"on/off {ratio:.4f}  ({inner} calls per timing)", flush=True)
    worst = max(r[4] for r in results) - 1.0
    ok = worst < TARGET
    lines = [
        "# Cost of the per-call and per-step checks",
        "",
        "Each field output's shape and dtype are checked on every call (host metadata, no sync),",
        "and every step's state is checked for NaN/inf (the error norm's one scalar sync carries",
        "NaN; an overflow to inf is caught by the next step's stages and by one check of the",
        "outputs per solve; in the numba kernel a sum over the new state). This is their cost: the same solves",
        "with the checks on and off (a private switch, `gqlib._checks.checks_disabled()`, read",
        "once per solve), side by side: 5 rounds, each alternating on and off call by call until",
        "both have run the same number of solves; medians over the rounds. Times are the process's",
        "CPU time per solve (single-threaded), which the other jobs on this shared two-core",
        "machine disturb less than wall time.",
        "",
        "| solve | size | checks on (CPU ms) | checks off (CPU ms) | on / off (median of 5 rounds) |",
        "|---|---|---|---|---|",
    ]
    for label, what, on, off, ratio in results:
        lines.append(f"| {label} | {what} | {on * 1e3:.3f} | {off * 1e3:.3f} | {ratio:.4f} |")
    lines += [
        "",
        f"Target: below {TARGET:.0%} overhead in every row; worst measured "
        f"{worst:+.1%}: {'met' if ok else 'NOT met'}. On this shared machine (load 3-4 on two",
        "cores) repeated runs scatter by a few %.",
        "",
        "Lorenz: dopri5, rtol = atol = 1e-8, t in [0, 20], 11 outputs (as in",
        "[bench_solvers](bench_solvers.md)); the state with checks off equals the one with checks",
        f"on bit for bit: {same}. DETEST: the 25 nonstiff problems of Hull, Enright, Fellen &",
        "Sedgwick (1972), classes A-E (`validation/detest.py`), t in [0, 20], dopri5 at the",
        "default rtol 1e-7, atol 1e-9, float64 on the CPU (one torch thread), forward solves.",
        f"Each timing averages the solves that fill {MIN_RUN:.0f} s; the table's ms are per call.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, NumPy {np.__version__}, torch {torch.__version__}.",
        "",
        "Run: `.venv/bin/python validation/bench_checks.py`",
        "",
    ]
    (ROOT / "docs" / "bench_checks.md").write_text("\n".join(lines))
    print(f"worst overhead {worst:+.2%}; target < {TARGET:.0%}: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
