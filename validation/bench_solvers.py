"""Benchmark: gqlib's ODE drivers against scipy.integrate.solve_ivp and torchdiffeq.

One run measures, on this machine, for three nonstiff problems at rtol = atol = 1e-8:

* Lorenz, t in [0, 20], y0 = (1, 1, 1) (chaotic: errors grow ~e^(0.9 t), so every solver's error
  at t = 20 is large; the NFE and time are the point);
* the Arenstorf orbit (restricted three-body problem, one period, Hairer-Norsett-Wanner I, II.0);
* a 100-D linear system ``y' = A y``, ``A = S - 0.05 I`` with S a random skew-symmetric matrix
  (a damped random rotation; exact solution ``expm(A t) y0``),

the number of f evaluations (NFE), the accuracy (max abs error over 11 output times relative to
max |y_ref|, against ``expm`` for the linear system and a DOP853 solve at rtol = atol = 1e-13
otherwise) and the time of a whole solve (warm: after compilation; median of interleaved rounds) of

* scipy ``solve_ivp`` RK45 and DOP853, given the numba-jitted f (scipy calls it from Python; a
  plain NumPy f is timed too for RK45),
* torchdiffeq ``odeint`` dopri5 (CPU, float64, ``torch.set_num_threads(1)``),
* gqlib's array-API driver on NumPy arrays (plain NumPy f) and on torch CPU tensors (torch f),
* gqlib's numba driver (jitted f: the whole loop compiled), dopri5 and dop853.

numba compile time is reported apart: a cold compile (empty numba cache, in a subprocess), a
fresh process with the on-disk cache, and the cost of each further jitted f.

Target: the numba driver >= 50x faster than ``solve_ivp(method="RK45")`` on the jitted Lorenz
system (whole solves after compilation). Also measured: the cost of ``max_step`` on the numba path
(jitted Lorenz, ``max_step=0.05``, and 0.005 where the bound binds on most steps): its time per
f evaluation must stay within 1.5x of the run without (options run compiled; once they sent
``solve`` down the array-API path).
Writes the table to ``docs/bench_solvers.md``.
Run: ``.venv/bin/python validation/bench_solvers.py``.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import scipy
import scipy.linalg
import torch
import torchdiffeq
from scipy.integrate import solve_ivp

import gqlib

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RTOL = ATOL = 1e-8
N_OUT = 11
TARGET = 50.0  # numba driver vs scipy RK45 (jitted f) on Lorenz
MAX_STEP = 0.05
MAX_STEP_BINDING = 0.005  # below Lorenz's typical step at 1e-8 (~0.011): the clamp binds
MAX_STEP_TARGET = 1.5  # time per evaluation with max_step / without, numba path, Lorenz

torch.set_num_threads(1)


# -- problems -------------------------------------------------------------------------------------
@numba.njit
def lorenz(t, y):
    out = np.empty(3)
    out[0] = 10.0 * (y[1] - y[0])
    out[1] = y[0] * (28.0 - y[2]) - y[1]
    out[2] = y[0] * y[1] - 8.0 / 3.0 * y[2]
    return out


def lorenz_torch(t, y):
    return torch.stack([10.0 * (y[1] - y[0]), y[0] * (28.0 - y[2]) - y[1],
                        y[0] * y[1] - 8.0 / 3.0 * y[2]])


MU = 0.012277471
MU1 = 1.0 - MU


@numba.njit
def arenstorf(t, y):
    d1 = ((y[0] + MU) ** 2 + y[1] ** 2) ** 1.5
    d2 = ((y[0] - MU1) ** 2 + y[1] ** 2) ** 1.5
    out = np.empty(4)
    out[0] = y[2]
    out[1] = y[3]
    out[2] = y[0] + 2.0 * y[3] - MU1 * (y[0] + MU) / d1 - MU * (y[0] - MU1) / d2
    out[3] = y[1] - 2.0 * y[2] - MU1 * y[1] / d1 - MU * y[1] / d2
    return out


def arenstorf_torch(t, y):
    d1 = ((y[0] + MU) ** 2 + y[1] ** 2) ** 1.5
    d2 = ((y[0] - MU1) ** 2 + y[1] ** 2) ** 1.5
    return torch.stack([y[2], y[3],
                        y[0] + 2.0 * y[3] - MU1 * (y[0] + MU) / d1 - MU * (y[0] - MU1) / d2,
                        y[1] - 2.0 * y[2] - MU1 * y[1] / d1 - MU * y[1] / d2])


def _linear_matrix(n=100, seed=0):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n))
    S = (M - M.T) / (2.0 * math.sqrt(n))  # eigenvalues on the imaginary axis, |lambda| <~ 1.4
    return np.ascontiguousarray(S - 0.05 * np.eye(n))


A_LIN = _linear_matrix()
A_LIN_T = torch.from_numpy(A_LIN.copy())


@numba.njit
def linear(t, y):
    return A_LIN @ y


def linear_torch(t, y):
    return A_LIN_T @ y


PROBLEMS = {
    "Lorenz": dict(f=lorenz, f_torch=lorenz_torch, y0=np.array([1.0, 1.0, 1.0]), t=(0.0, 20.0)),
    "Arenstorf": dict(f=arenstorf, f_torch=arenstorf_torch,
                      y0=np.array([0.994, 0.0, 0.0, -2.00158510637908252240537862224]),
                      t=(0.0, 17.0652165601579625588917206249)),
    "linear 100-D": dict(f=linear, f_torch=linear_torch,
                         y0=np.random.default_rng(1).standard_normal(100) / 10.0, t=(0.0, 10.0)),
}


def reference(name, p, t_eval):
    if name.startswith("linear"):
        return np.stack([scipy.linalg.expm(A_LIN * (s - t_eval[0])) @ p["y0"] for s in t_eval])
    sol = solve_ivp(p["f"].py_func, p["t"], p["y0"], method="DOP853", rtol=1e-13, atol=1e-13,
                    t_eval=t_eval)
    return sol.y.T


# -- solvers: each returns (y at t_eval (n_out, dim) as NumPy, nfe) ----------------------------------
def run_scipy(method, jitted):
    def go(p, t_eval):
        f = p["f"] if jitted else p["f"].py_func
        sol = solve_ivp(f, p["t"], p["y0"], method=method, rtol=RTOL, atol=ATOL, t_eval=t_eval)
        return sol.y.T, sol.nfev
    return go


def run_torchdiffeq(p, t_eval):
    count = [0]

    def f(t, y):
        count[0] += 1
        return p["f_torch"](t, y)

    y = torchdiffeq.odeint(f, torch.from_numpy(p["y0"].copy()), torch.from_numpy(t_eval),
                           rtol=RTOL, atol=ATOL, method="dopri5")
    return y.numpy(), count[0]


def run_gqlib_numpy(method):
    def go(p, t_eval):
        sol = gqlib.solve(p["f"].py_func, p["y0"], t_eval, method=method, rtol=RTOL, atol=ATOL)
        return sol.y, sol.stats["nfe"]
    return go


def run_gqlib_torch(p, t_eval):
    sol = gqlib.solve(p["f_torch"], torch.from_numpy(p["y0"].copy()), t_eval, method="dopri5",
                      rtol=RTOL, atol=ATOL)
    return sol.y.numpy(), sol.stats["nfe"]


def run_gqlib_numba(method):
    def go(p, t_eval):
        sol = gqlib.solve(p["f"], p["y0"], t_eval, method=method, rtol=RTOL, atol=ATOL)
        return sol.y, sol.stats["nfe"]
    return go


SOLVERS = [  # (label, runner, is the baseline)
    ("scipy RK45, jitted f", run_scipy("RK45", True)),
    ("scipy RK45, NumPy f", run_scipy("RK45", False)),
    ("scipy DOP853, jitted f", run_scipy("DOP853", True)),
    ("torchdiffeq dopri5, torch CPU", run_torchdiffeq),
    ("gqlib dopri5, array-API NumPy", run_gqlib_numpy("dopri5")),
    ("gqlib dopri5, array-API torch CPU", run_gqlib_torch),
    ("gqlib dopri5, numba", run_gqlib_numba("dopri5")),
    ("gqlib dop853, numba", run_gqlib_numba("dop853")),
]
BASELINE = "scipy RK45, jitted f"
REFERENCES = {"rk45": BASELINE, "dop853": "scipy DOP853, jitted f",
              "tde": "torchdiffeq dopri5, torch CPU"}


def interleaved_medians(fns, *, min_run=0.02, rounds=7, budget=20.0) -> list[float]:
    """Median wall time of each warm ``fn()`` in ``fns``, measured in interleaved rounds.

    Each round times every function once (a batch averaging enough calls to last ``min_run``
    seconds), so a burst of load on this shared machine hits all solvers alike instead of one.
    """
    inner = []
    for fn in fns:
        t0 = time.perf_counter()
        fn()
        once = time.perf_counter() - t0
        inner.append(max(1, math.ceil(min_run / max(once, 1e-9))))
    per_round = 0.0
    times = [[] for _ in fns]
    t_start = time.perf_counter()
    for r in range(rounds):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            for _ in range(inner[i]):
                fn()
            times[i].append((time.perf_counter() - t0) / inner[i])
        per_round = (time.perf_counter() - t_start) / (r + 1)
        if r >= 2 and (r + 2) * per_round > budget:
            break
    return [float(np.median(ts)) for ts in times]


# -- numba compile time (subprocesses, so the numba cache can be emptied) --------------------------
_PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np, numba, gqlib
t_import = time.perf_counter() - t0

@numba.njit
def f1(t, y):
    return -y + np.sin(t) * y * y

@numba.njit
def f2(t, y):
    return -2.0 * y + np.cos(t)

y0 = np.array([0.5, 0.2])
t0 = time.perf_counter(); gqlib.solve(f1, y0, [0.0, 1.0]); first = time.perf_counter() - t0
t0 = time.perf_counter(); gqlib.solve(f2, y0, [0.0, 1.0]); second_f = time.perf_counter() - t0
t0 = time.perf_counter(); gqlib.solve(f2, y0, [0.0, 1.0]); warm = time.perf_counter() - t0
print(json.dumps({"import": t_import, "first": first, "second_f": second_f, "warm": warm}))
"""


def compile_times() -> dict:
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        out = {}
        for label in ("cold", "cached"):
            r = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True,
                               text=True, check=True, cwd=ROOT)
            out[label] = json.loads(r.stdout.strip().splitlines()[-1])
        return out


def max_step_cost() -> dict:
    """Time per f evaluation of the numba driver on Lorenz with and without ``max_step``."""
    p = PROBLEMS["Lorenz"]
    t_eval = np.linspace(*p["t"], N_OUT)
    runs = {"free": {}, "max_step": {"max_step": MAX_STEP},
            "binding": {"max_step": MAX_STEP_BINDING}}
    out = {}
    for key, kw in runs.items():
        sol = gqlib.solve(p["f"], p["y0"], t_eval, rtol=RTOL, atol=ATOL, **kw)
        assert sol.driver == "numba", sol.driver_reason
        out[key] = {"nfe": sol.stats["nfe"], "n_accepted": sol.stats["n_accepted"]}
    fns = [lambda kw=kw: gqlib.solve(p["f"], p["y0"], t_eval, rtol=RTOL, atol=ATOL, **kw)
           for kw in runs.values()]
    for key, t in zip(runs, interleaved_medians(fns), strict=True):
        out[key]["time"] = t
        out[key]["per_eval"] = t / out[key]["nfe"]
    out["ratio"] = out["max_step"]["per_eval"] / out["free"]["per_eval"]
    out["ratio_binding"] = out["binding"]["per_eval"] / out["free"]["per_eval"]
    return out


# -- main ---------------------------------------------------------------------------------------------
def main() -> int:
    print("numba compile time (subprocesses) ...", flush=True)
    ct = compile_times()
    rows = []
    for name, p in PROBLEMS.items():
        t_eval = np.linspace(*p["t"], N_OUT)
        y_ref = reference(name, p, t_eval)
        scale = np.max(np.abs(y_ref))
        fns = []
        for label, go in SOLVERS:
            y, nfe = go(p, t_eval)  # warm-up (compiles the jitted f for scipy and numba)
            err = float(np.max(np.abs(np.asarray(y) - y_ref)) / scale)
            rows.append({"problem": name, "solver": label, "nfe": nfe, "err": err})
            fns.append(lambda go=go, p=p, t_eval=t_eval: go(p, t_eval))
        for r, t in zip(rows[-len(fns):], interleaved_medians(fns), strict=True):
            r["time"] = t
            print(f"{name:13s} {r['solver']:34s} nfe {r['nfe']:6d}  err {r['err']:8.1e}  "
                  f"{t * 1e3:9.3f} ms", flush=True)
    by = {(r["problem"], r["solver"]): r for r in rows}
    for r in rows:
        for key, ref in REFERENCES.items():
            r[key] = by[(r["problem"], ref)]["time"] / r["time"]
        r["nfe_ratio"] = r["nfe"] / by[(r["problem"], BASELINE)]["nfe"]
    ratios = {(r["problem"], r["solver"]): r["rk45"] for r in rows}

    ms = max_step_cost()
    print(f"Lorenz numba max_step={MAX_STEP}: {ms['max_step']['per_eval'] * 1e9:.1f} ns/eval "
          f"(nfe {ms['max_step']['nfe']}) vs {ms['free']['per_eval'] * 1e9:.1f} ns/eval without "
          f"(nfe {ms['free']['nfe']}): ratio {ms['ratio']:.2f}; max_step={MAX_STEP_BINDING}: "
          f"nfe {ms['binding']['nfe']}, ratio {ms['ratio_binding']:.2f}", flush=True)
    target = ratios[("Lorenz", "gqlib dopri5, numba")]
    ok = target >= TARGET and max(ms["ratio"], ms["ratio_binding"]) <= MAX_STEP_TARGET
    cpu = _cpu_name()
    load = os.getloadavg()
    lines = [
        "# ODE solvers: gqlib vs scipy.integrate.solve_ivp and torchdiffeq",
        "",
        "Written by `validation/bench_solvers.py` (run: `.venv/bin/python validation/bench_solvers.py`).",
        "",
        f"Machine: {cpu}, {os.cpu_count()} logical CPUs, load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min; the machine is shared, so "
        "times are noisy: medians of several runs). Python "
        f"{platform.python_version()}, NumPy {np.__version__}, SciPy {scipy.__version__}, numba "
        f"{numba.__version__}, torch {torch.__version__} (1 thread), torchdiffeq "
        f"{torchdiffeq.__version__}.",
        "",
        f"rtol = atol = {RTOL:g}, {N_OUT} output times (interpolated by every solver). "
        "error = max abs error over the outputs / max |y_ref| (reference: expm for the linear "
        "system, DOP853 at rtol = atol = 1e-13 otherwise; Lorenz is chaotic, so its errors at "
        "t = 20 are large for every solver). time = one whole solve, warm (after compilation), "
        "median of up to 7 rounds that time every solver in turn. Speed-ups are time ratios against scipy RK45 and DOP853 (both "
        "given the jitted f) and torchdiffeq dopri5; NFE / RK45 is the ratio of evaluations.",
        "",
        "| problem | solver | NFE | NFE / RK45 | error | time (ms) | vs RK45 | vs DOP853 "
        "| vs torchdiffeq |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['problem']} | {r['solver']} | {r['nfe']} | {r['nfe_ratio']:.2f} | "
                     f"{r['err']:.1e} | {r['time'] * 1e3:.3f} | {_x(r['rk45'])} | "
                     f"{_x(r['dop853'])} | {_x(r['tde'])} |")
    c, w = ct["cold"], ct["cached"]
    lines += [
        "",
        "numba compilation (not in the times above; separate processes):",
        "",
        f"- cold (empty numba cache): first solve with a jitted f {c['first']:.1f} s (the "
        f"driver kernel, compiled once for all f, plus f); a second jitted f "
        f"{c['second_f']:.2f} s; warm solve {c['warm'] * 1e3:.2f} ms.",
        f"- new process, kernel in numba's on-disk cache: first solve {w['first']:.2f} s "
        f"(cache load plus f); a second jitted f {w['second_f']:.2f} s; `import gqlib` "
        f"{w['import']:.2f} s.",
        "",
        f"Target: numba driver >= {TARGET:.0f}x faster than `solve_ivp(method=\"RK45\")` on the "
        f"jitted Lorenz system: **{target:.0f}x** ({'met' if target >= TARGET else 'NOT met'}).",
        f"Against scipy RK45 with a plain NumPy f: "
        f"{ratios[('Lorenz', 'gqlib dopri5, numba')] / ratios[('Lorenz', 'scipy RK45, NumPy f')]:.0f}x.",
        "",
        f"`max_step` on the numba path (jitted Lorenz, dopri5, rtol = atol = {RTOL:g}): with "
        f"`max_step={MAX_STEP}` {ms['max_step']['nfe']} evaluations in "
        f"{ms['max_step']['time'] * 1e3:.3f} ms ({ms['max_step']['per_eval'] * 1e9:.0f} ns each), "
        f"without {ms['free']['nfe']} in {ms['free']['time'] * 1e3:.3f} ms "
        f"({ms['free']['per_eval'] * 1e9:.0f} ns each): time per evaluation "
        f"**{ms['ratio']:.2f}x** (target <= {MAX_STEP_TARGET}x: "
        f"{'met' if ms['ratio'] <= MAX_STEP_TARGET else 'NOT met'}). With "
        f"`max_step={MAX_STEP_BINDING}`, which binds on most steps: {ms['binding']['nfe']} "
        f"evaluations, {ms['binding']['per_eval'] * 1e9:.0f} ns each, "
        f"**{ms['ratio_binding']:.2f}x**.",
        "",
    ]
    text = "\n".join(lines)
    print()
    print(text)
    DOCS.mkdir(exist_ok=True)
    (DOCS / "bench_solvers.md").write_text(text)
    return 0 if ok else 1


def _x(ratio: float) -> str:
    return f"{ratio:.2g}x" if ratio < 10 else f"{ratio:.0f}x"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
