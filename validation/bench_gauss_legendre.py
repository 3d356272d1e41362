"""Benchmark: Gauss-Legendre rules from gqlib, scipy.special.roots_legendre and numpy leggauss.

One run measures, on this machine:

* numba compile time (fresh cache directory, in a subprocess) and cache-load time, apart from run
  time; every timed call below is warm;
* for n = 10 ... 10^6: the time of each library (best of several runs; gqlib with its rule cache
  cleared before every run, so it computes) and the largest node error (absolute) and weight
  error (relative) on a sample of nodes, against 40-digit mpmath Newton on the recurrence for
  n <= 1000 and double-double Newton on the recurrence (``gqlib.quadrature._newton.newton_refine``,
  checked against mpmath in the tests) beyond. A peer is skipped at a size its measured growth
  (scipy O(n^2), numpy O(n^3)) predicts to take over 60 s;
* the targets: gqlib at n = 10^6 within 5x the time of ``np.cos`` on 10^6 points, and at least
  100x faster than scipy at n = 5000.

Writes ``docs/gauss_legendre_bench.md`` (the table) and ``docs/gauss_legendre_bench.png``.
Run: ``.venv/bin/python validation/bench_gauss_legendre.py``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mpmath
import numpy as np
import scipy
import scipy.special

from gqlib.quadrature import _gauss_legendre as _gl
from gqlib.quadrature import gauss_legendre
from gqlib.quadrature._newton import newton_refine

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
EPS = np.finfo(np.float64).eps
SIZES = [10, 100, 1000, 10**4, 10**5, 10**6]
BUDGET_S = 60.0
COS_FACTOR = 5.0      # target: gqlib(10^6) <= 5 x np.cos(10^6 points)
SCIPY_FACTOR = 100.0  # target: gqlib >= 100 x faster than scipy at n = 5000


def best_time(fn, *, min_total: float = 0.3, max_runs: int = 30, setup=None) -> float:
    """Best wall time of ``fn()`` over repeated runs (at least 3, or one if a run is slow)."""
    times = []
    while True:
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= max_runs or (sum(times) >= min_total and len(times) >= 3) \
                or times[-1] > 5.0:
            return min(times)


def paired_best(f, g, rounds: int) -> tuple[float, float]:
    """Best times of ``f()`` and ``g()`` run alternately, so that both see the same machine load."""
    tf, tg = [], []
    for _ in range(rounds):
        for fn, ts in ((f, tf), (g, tg)):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return min(tf), min(tg)


def gqlib_computed(n: int):
    _gl._cached.cache_clear()
    return gauss_legendre(n)


PEERS = {
    "gqlib": (gqlib_computed, 1),
    "scipy roots_legendre": (lambda n: scipy.special.roots_legendre(n), 2),
    "numpy leggauss": (lambda n: np.polynomial.legendre.leggauss(n), 3),
}


# ---------------------------------------------------------------- reference

def _mp_legendre(n, x):
    p0, p1 = mpmath.mpf(1), x
    d0, d1 = mpmath.mpf(0), mpmath.mpf(1)
    for k in range(1, n):
        p0, p1 = p1, ((2 * k + 1) * x * p1 - k * p0) / (k + 1)
        d0, d1 = d1, d0 + (2 * k + 1) * p0
    return p1, d1


def sample_indices(n: int) -> np.ndarray:
    if n <= 100:
        return np.arange(n)
    ends = np.concatenate([np.arange(6), n - 1 - np.arange(6)])
    middle = n // 2 - 3 + np.arange(6)
    spread = np.linspace(0, n - 1, 28).astype(int)
    return np.unique(np.concatenate([ends, middle, spread]))


def reference(n: int, x0: np.ndarray) -> tuple[list, list]:
    """Reference nodes and weights at the starting points x0 (mpf for n <= 1000, else float64)."""
    if n <= 1000:
        xs, ws = [], []
        with mpmath.workdps(40):
            for v in x0:
                x = mpmath.mpf(float(v))
                for _ in range(2):
                    p, d = _mp_legendre(n, x)
                    y, x = x, x - p / d
                xs.append(x)
                ws.append(2 / ((1 - y * y) * d * d))
        return xs, ws
    xr, wr = newton_refine(n, x0)
    return [mpmath.mpf(float(v)) for v in xr], [mpmath.mpf(float(v)) for v in wr]


def errors(x, w, idx, xref, wref) -> tuple[float, float]:
    node = max(abs(float(mpmath.mpf(float(x[i])) - r)) for i, r in zip(idx, xref, strict=True))
    weight = max(abs(float((mpmath.mpf(float(w[i])) - r) / r)) for i, r in zip(idx, wref, strict=True))
    return node, weight


# ---------------------------------------------------------------- compile time

COMPILE_SNIPPET = """
import time
t0 = time.perf_counter()
from gqlib.quadrature import gauss_legendre
t1 = time.perf_counter()
out = [t1 - t0]
for n in (10, 200, 20000):
    t = time.perf_counter(); gauss_legendre(n); out.append(time.perf_counter() - t)
print(*out)
"""


def first_call_times(cache_dir: str | None) -> list[float]:
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET], env=env, check=True,
                         capture_output=True, text=True, cwd=ROOT)
    return [float(v) for v in out.stdout.split()]


# ---------------------------------------------------------------- main

def fmt_t(t: float | None) -> str:
    if t is None:
        return "skipped"
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    if t < 1.0:
        return f"{t * 1e3:.2f} ms"
    return f"{t:.2f} s"


def fmt_e(e: float | None) -> str:
    return "-" if e is None else f"{e:.1e}"


def main() -> int:
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}"
          f", {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        cold = first_call_times(tmp)   # empty numba cache: compiles
        warm_load = first_call_times(tmp)  # the cache just written: loads
    print("first calls (import, n=10 Newton kernel, n=200 serial, n=20000 parallel kernel):")
    print("  cold compile:", ", ".join(fmt_t(t) for t in cold))
    print("  cache load:  ", ", ".join(fmt_t(t) for t in warm_load))
    for n in (10, 200, 20000):
        gqlib_computed(n)  # warm up in this process
    gauss_legendre(64)
    t_cached = best_time(lambda: gauss_legendre(64))
    print(f"cached call, n = 64: {fmt_t(t_cached)}")

    z = np.linspace(0.0, 1.0, 10**6)
    t_cos = best_time(lambda: np.cos(z), min_total=1.0)
    print(f"np.cos on 10^6 points: {fmt_t(t_cos)}")

    rows = []
    last: dict[str, tuple[int, float]] = {}
    for n in SIZES:
        idx = sample_indices(n)
        x, w = gauss_legendre(n)
        xref, wref = reference(n, x[idx])
        row = {"n": n}
        for name, (fn, p) in PEERS.items():
            if name in last:
                n0, t0 = last[name]
                if t0 is None or t0 * (n / n0) ** p > BUDGET_S:
                    row[name] = (None, None, None)
                    last[name] = (n, None)
                    continue
            xp, wp = fn(n)
            t = best_time(lambda fn=fn, n=n: fn(n), min_total=1.0 if name == "gqlib" else 0.3)
            last[name] = (n, t)
            row[name] = (t, *errors(xp, wp, idx, xref, wref))
        rows.append(row)
        print(f"n = {n:>7}: " + "; ".join(
            f"{k} {fmt_t(v[0])} node {fmt_e(v[1])} weight {fmt_e(v[2])}"
            for k, v in row.items() if k != "n"), flush=True)

    # Targets, measured in this run, each pair alternated.
    t_gl6, t_cos6 = paired_best(lambda: gqlib_computed(10**6), lambda: np.cos(z), rounds=40)
    t_gl5000, t_sp5000 = paired_best(lambda: gqlib_computed(5000),
                                     lambda: scipy.special.roots_legendre(5000), rounds=5)
    cos_ratio = t_gl6 / t_cos6
    sp_ratio = t_sp5000 / t_gl5000
    ok_cos = cos_ratio <= COS_FACTOR
    ok_sp = sp_ratio >= SCIPY_FACTOR
    print(f"target n=10^6 <= {COS_FACTOR:g} x np.cos: {fmt_t(t_gl6)} / {fmt_t(t_cos6)} = "
          f"{cos_ratio:.2f} x  [{'met' if ok_cos else 'MISSED'}]")
    print(f"target >= {SCIPY_FACTOR:g} x faster than scipy at n=5000: {fmt_t(t_sp5000)} / "
          f"{fmt_t(t_gl5000)} = {sp_ratio:.0f} x  [{'met' if ok_sp else 'MISSED'}]")
    t_gl7 = best_time(lambda: gqlib_computed(10**7), min_total=1.0, max_runs=5)
    print(f"gqlib n=10^7: {fmt_t(t_gl7)}")

    write_markdown(rows, cold, warm_load, (t_gl6, t_cos6), (t_gl5000, t_sp5000), t_gl7,
                   t_cached)
    write_plot(rows, t_cos)
    return 0 if ok_cos and ok_sp else 1


def write_markdown(rows, cold, warm_load, cos_pair, scipy_pair, t_gl7, t_cached):
    t_gl6, t_cos = cos_pair
    t_gl5000, t_sp5000 = scipy_pair
    ok_cos = t_gl6 / t_cos <= COS_FACTOR
    ok_sp = t_sp5000 / t_gl5000 >= SCIPY_FACTOR
    names = list(PEERS)
    lines = [
        "# Gauss-Legendre benchmark",
        "",
        "Written by `validation/bench_gauss_legendre.py` "
        "(`.venv/bin/python validation/bench_gauss_legendre.py`), one run on "
        f"{platform.machine()} with {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"NumPy {np.__version__}, SciPy {scipy.__version__}; 1-minute load average "
        f"{os.getloadavg()[0]:.1f} at the end (other jobs slow every timing alike; the targets are "
        "ratios of alternated runs).",
        "",
        "Times are the best of several warm runs (gqlib with its rule cache cleared before each, "
        "so it computes). Errors are the largest over a sample of nodes (all for n <= 100; ends, "
        "middle and an even spread of 40 beyond): node error absolute, weight error relative; "
        f"eps = {EPS:.3g}. Reference: 40-digit mpmath Newton on the recurrence for n <= 1000, "
        "double-double Newton on the recurrence rounded to float64 beyond (so an error below "
        "half an ulp of the node reads as 0 or 1 ulp). *skipped*: the peer's measured growth "
        f"predicts more than {BUDGET_S:g} s.",
        "",
        "| n | " + " | ".join(f"{k} time | node err | weight err" for k in names) + " |",
        "|---:|" + "---:|---:|---:|" * len(names),
    ]
    for row in rows:
        cells = []
        for k in names:
            t, en, ew = row[k]
            cells += [fmt_t(t), fmt_e(en), fmt_e(ew)]
        lines.append(f"| {row['n']:,} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Targets (same run; each pair timed alternately, best of 40 and of 5 rounds):",
        "",
        f"- n = 10^6: gqlib {fmt_t(t_gl6)}, `np.cos` on 10^6 points {fmt_t(t_cos)}: "
        f"{t_gl6 / t_cos:.2f} x (target <= {COS_FACTOR:g} x): **{'met' if ok_cos else 'missed'}**.",
        f"- n = 5000: scipy {fmt_t(t_sp5000)}, gqlib {fmt_t(t_gl5000)}: "
        f"{t_sp5000 / t_gl5000:.0f} x faster (target >= {SCIPY_FACTOR:g} x): "
        f"**{'met' if ok_sp else 'missed'}**.",
        f"- n = 10^7: gqlib {fmt_t(t_gl7)}.",
        f"- A cached rule (n <= 4096, here n = 64, returned as fresh arrays): {fmt_t(t_cached)}.",
        "",
        "numba first calls, apart from the run times above (import; first n = 10, Newton kernel; "
        "n = 200, serial asymptotic kernel; n = 20000, parallel kernel):",
        "",
        "| | import | n = 10 | n = 200 | n = 20000 |",
        "|---|---:|---:|---:|---:|",
        "| compile (empty cache) | " + " | ".join(fmt_t(t) for t in cold) + " |",
        "| load from cache | " + " | ".join(fmt_t(t) for t in warm_load) + " |",
        "",
        "![timings and errors](gauss_legendre_bench.png)",
        "",
    ]
    (DOCS / "gauss_legendre_bench.md").write_text("\n".join(lines))
    print(f"wrote {DOCS / 'gauss_legendre_bench.md'}")


def write_plot(rows, t_cos):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(11, 4.2))
    markers = {"gqlib": "o", "scipy roots_legendre": "s", "numpy leggauss": "^"}
    for name, mk in markers.items():
        pts = [(r["n"], *r[name]) for r in rows if r[name][0] is not None]
        if not pts:
            continue
        n, t, en, ew = map(np.array, zip(*pts, strict=True))
        line, = ax_t.loglog(n, t, marker=mk, label=name)
        floor = EPS / 4  # errors of exactly 0 drawn at eps/4
        ax_e.loglog(n, np.maximum(en, floor), marker=mk, color=line.get_color(),
                    label=f"{name}: node")
        ax_e.loglog(n, np.maximum(ew, floor), marker=mk, color=line.get_color(), ls="--",
                    label=f"{name}: weight")
    ax_t.axhline(t_cos, color="gray", lw=0.8, ls=":")
    ax_t.text(12, t_cos * 1.3, "np.cos, 10^6 points", color="gray", fontsize=8)
    ax_t.axhline(BUDGET_S, color="gray", lw=0.8, ls="--")
    ax_t.set(xlabel="n", ylabel="time [s]", title="time for the n-point rule")
    ax_e.axhline(EPS, color="gray", lw=0.8, ls=":")
    ax_e.set(xlabel="n", ylabel="max error", title="node (abs) and weight (rel) error")
    ax_t.legend(fontsize=8)
    ax_e.legend(fontsize=7, ncol=1)
    fig.tight_layout()
    fig.savefig(DOCS / "gauss_legendre_bench.png", dpi=110)
    print(f"wrote {DOCS / 'gauss_legendre_bench.png'}")


if __name__ == "__main__":
    sys.exit(main())
