"""Benchmark: cost and accuracy of the four adjoints and of the GQ node rules on a neural ODE.

Problem (NumPy, hand-written VJPs): ``dz/dt = W2 tanh(W1 z + b1) + b2``, a D -> H -> D MLP with
D = 16 and H in {8, 32, 128, 512} (P = 2 D H + H + D parameters, 296 to 16,912), weights drawn
N(0, 4 / fan_in) so the flow is nontrivial (tens of forward f-evaluations); output times
``t = linspace(0, 1, 11)`` (10 intervals); loss ``L = mean over i >= 1 and components of
z(t_i)^2``, so ``grad_y[i] = 2 z(t_i) / (10 D)``. Forward solve: dopri5, rtol 1e-6, atol 1e-8;
the backward solve inherits them. Reference gradient: ``adjoint="backsolve"`` at
rtol = atol = 1e-12 on a forward solve at rtol = atol = 1e-12.

Measures, for each H and each of gq (adaptive / paper / nodes=1 / nodes=3), interpolated
(adaptive), backsolve (plain / seminorm) and collocation (3 and 2 nodes; the field's
``linearize`` keeps one forward pass per node): the forward nfe, the backward's calls of each kind
(``nfe_f``, ``nfe_vjp_y``, ``nfe_vjp_params``), quadrature nodes, backward steps accepted and
rejected, the relative 2-norm error of dL/dtheta and dL/dz0, and the backward's wall time (median
of 3 after one warm-up). Then a tolerance sweep at H = 128 (rtol 1e-4 ... 1e-10, atol = rtol/100):
gradient error and parameter VJPs of every node rule, to show which rule follows the tolerance
and which plateau.

Writes ``docs/adjoint_cost.md`` (the tables, the command and the machine) and
``docs/adjoint_node_rules.png``. Run: ``.venv/bin/python validation/bench_adjoint_cost.py``.
About 1 minute on 2 cores.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import gqlib
from gqlib.adjoint import gradient

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
D = 16
HIDDEN = [8, 32, 128, 512]
T = np.linspace(0.0, 1.0, 11)
FORWARD = dict(rtol=1e-6, atol=1e-8)
REFERENCE = dict(rtol=1e-12, atol=1e-12)
SEED = 0
REPEATS = 3
SWEEP_H = 128
SWEEP_RTOL = [1e-4, 1e-6, 1e-8, 1e-10]

CONFIGS = [  # (label, gradient() keywords)
    ("gq adaptive", dict(adjoint="gq", nodes="adaptive")),
    ("gq paper (gtol 0.1)", dict(adjoint="gq", nodes="paper", gtol=0.1)),
    ("gq nodes=1", dict(adjoint="gq", nodes=1)),
    ("gq nodes=3", dict(adjoint="gq", nodes=3)),
    ("interpolated adaptive", dict(adjoint="interpolated", nodes="adaptive")),
    ("backsolve", dict(adjoint="backsolve")),
    ("backsolve seminorm", dict(adjoint="backsolve", seminorm=True)),
    ("collocation (3 nodes)", dict(adjoint="collocation")),
    ("collocation (2 nodes)", dict(adjoint="collocation", nodes=2)),
]
SWEEP_RULES = [  # (label, gradient() keywords); backsolve seminorm shows the backward solve's floor
    ("gq adaptive", dict(nodes="adaptive")),
    ("gq paper", dict(nodes="paper")),
    ("gq nodes=1", dict(nodes=1)),
    ("gq nodes=3", dict(nodes=3)),
    ("gq nodes=5", dict(nodes=5)),
    ("backsolve seminorm", dict(adjoint="backsolve", seminorm=True)),
    ("collocation (3 nodes)", dict(adjoint="collocation")),
]


class MLPField:
    """``dz/dt = W2 tanh(W1 z + b1) + b2`` with hand-written VJPs; theta = (W1, b1, W2, b2) flat."""

    def __init__(self, dim: int, hidden: int, rng: np.random.Generator):
        s1, s2 = np.sqrt(4.0 / dim), np.sqrt(4.0 / hidden)   # N(0, 4 / fan_in)
        self.W1 = s1 * rng.standard_normal((hidden, dim))
        self.b1 = s1 * rng.standard_normal(hidden)
        self.W2 = s2 * rng.standard_normal((dim, hidden))
        self.b2 = s2 * rng.standard_normal(dim)

    @property
    def n_params(self) -> int:
        return self.W1.size + self.b1.size + self.W2.size + self.b2.size

    def _u(self, z):
        return np.tanh(self.W1 @ z + self.b1)

    def _r(self, u, a):
        return (self.W2.T @ a) * (1.0 - u * u)   # a^T d f / d(pre-activation)

    def _params(self, z, u, r, a):
        return np.concatenate([np.outer(r, z).ravel(), r, np.outer(a, u).ravel(), a])

    def __call__(self, t, z):
        return self.W2 @ self._u(z) + self.b2

    def vjp_y(self, t, z, a):
        return self.W1.T @ self._r(self._u(z), a)

    def vjp_params(self, t, z, a):
        u = self._u(z)
        return self._params(z, u, self._r(u, a), a)

    def f_vjp_y(self, t, z, a):
        u = self._u(z)
        return self.W2 @ u + self.b2, self.W1.T @ self._r(u, a)

    def f_vjp(self, t, z, a):
        u = self._u(z)
        r = self._r(u, a)
        return self.W2 @ u + self.b2, self.W1.T @ r, self._params(z, u, r, a)

    def linearize(self, t, z):
        """One forward pass kept for many cotangents (the collocation adjoint)."""
        return _Linearized(self, z, self._u(z))


    def theta(self):
        return np.concatenate([self.W1.ravel(), self.b1, self.W2.ravel(), self.b2])

    def with_theta(self, theta):
        H = self.b1.size
        new = object.__new__(MLPField)
        sizes = np.cumsum([H * D, H, D * H])
        new.W1 = theta[: sizes[0]].reshape(H, D)
        new.b1 = theta[sizes[0]: sizes[1]]
        new.W2 = theta[sizes[1]: sizes[2]].reshape(D, H)
        new.b2 = theta[sizes[2]:]
        return new


class _Linearized:
    """MLPField at one point: the activations kept for many cotangents."""

    def __init__(self, field: MLPField, z, u):
        self.field, self.z, self.u = field, z, u

    def vjp_y(self, a):
        return self.field.W1.T @ self.field._r(self.u, a)

    def vjp(self, a):
        r = self.field._r(self.u, a)
        return self.field.W1.T @ r, self.field._params(self.z, self.u, r, a)


def check_vjps(field: MLPField, rng: np.random.Generator, eps: float = 1e-6) -> float:
    """Largest relative mismatch of the hand VJPs (plain and fused) against central differences
    along random directions."""
    z, a, v = rng.standard_normal(D), rng.standard_normal(D), rng.standard_normal(D)
    th = field.theta()
    w = rng.standard_normal(th.size)
    fd_y = a @ (field(0, z + eps * v) - field(0, z - eps * v)) / (2 * eps)
    fd_p = a @ (field.with_theta(th + eps * w)(0, z) - field.with_theta(th - eps * w)(0, z)) / (2 * eps)
    f, vy, vp = field.f_vjp(0, z, a)
    f2, vy2 = field.f_vjp_y(0, z, a)
    lin_y, lin_p = field.linearize(0, z).vjp(a)
    errs = [abs(lin_y @ v - fd_y) / abs(fd_y), abs(lin_p @ w - fd_p) / abs(fd_p),
            np.abs(field.linearize(0, z).vjp_y(a) - lin_y).max(),abs(field.vjp_y(0, z, a) @ v - fd_y) / abs(fd_y),
            abs(field.vjp_params(0, z, a) @ w - fd_p) / abs(fd_p),
            abs(vy @ v - fd_y) / abs(fd_y), abs(vp @ w - fd_p) / abs(fd_p),
            np.abs(f - field(0, z)).max(), np.abs(f2 - f).max(), np.abs(vy2 - vy).max()]
    return float(max(errs))


def loss_grad(y: np.ndarray) -> np.ndarray:
    """dL/dz(t_i) for L = mean over i >= 1 and components of z(t_i)^2."""
    g = np.zeros_like(y)
    g[1:] = 2.0 * y[1:] / y[1:].size
    return g


def rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def problem(hidden: int):
    rng = np.random.default_rng(SEED + hidden)
    field = MLPField(D, hidden, rng)
    z0 = rng.standard_normal(D)
    ref_sol = gqlib.solve(field, z0, T, **REFERENCE)
    ref = gradient(field, ref_sol, loss_grad(ref_sol.y), adjoint="backsolve", **REFERENCE)
    return field, z0, ref


def timed_gradient(field, sol, gy, kw):
    gradient(field, sol, gy, **kw)                       # warm-up
    times, g = [], None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        g = gradient(field, sol, gy, **kw)
        times.append(time.perf_counter() - t0)
    return g, statistics.median(times)


def cost_table():
    rows, ratios = [], []
    for H in HIDDEN:
        field, z0, ref = problem(H)
        sol = gqlib.solve(field, z0, T, dense_output=True, **FORWARD)
        gy = loss_grad(sol.y)
        by_label = {}
        for label, kw in CONFIGS:
            g, wall = timed_gradient(field, sol, gy, kw)
            s = g.stats
            row = dict(H=H, P=field.n_params, label=label, nfe_fwd=sol.stats["nfe"],
                       nfe_f=s["nfe_f"], nfe_vjp_y=s["nfe_vjp_y"],
                       nfe_vjp_params=s["nfe_vjp_params"], n_nodes=s["n_nodes"],
                       acc=s["n_accepted"], rej=s["n_rejected"],
                       err_p=rel(g.params, ref.params), err_y0=rel(g.y0, ref.y0), wall=wall)
            rows.append(row)
            by_label[label] = row
            print(f"  H={H:4d} {label:22s} vjp_params={row['nfe_vjp_params']:4d} "
                  f"err={row['err_p']:.1e} {1e3 * wall:7.1f} ms", flush=True)
        bs = by_label["backsolve seminorm"]
        ratios.append(dict(H=H, P=field.n_params,
                           **{lab: (by_label[lab]["nfe_vjp_params"] / bs["nfe_vjp_params"],
                                    by_label[lab]["wall"] / bs["wall"])
                              for lab in ("gq adaptive", "gq nodes=3", "interpolated adaptive")}))
    return rows, ratios


def sweep():
    field, z0, ref = problem(SWEEP_H)
    out = []
    for rtol in SWEEP_RTOL:
        sol = gqlib.solve(field, z0, T, rtol=rtol, atol=rtol * 1e-2, dense_output=True)
        gy = loss_grad(sol.y)
        for label, kw in SWEEP_RULES:
            g = gradient(field, sol, gy, **kw)
            out.append(dict(rtol=rtol, label=label, nfe_fwd=sol.stats["nfe"],
                            nfe_vjp_params=g.stats["nfe_vjp_params"], n_panels=g.stats["n_panels"],
                            err_p=rel(g.params, ref.params), err_y0=rel(g.y0, ref.y0)))
    return field.n_params, out


# -- output ---------------------------------------------------------------------------------------
def machine() -> str:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    return (f"`nproc` = {os.cpu_count()}, CPU: {cpu}; Python {platform.python_version()}, "
            f"NumPy {np.__version__}, {platform.system()} {platform.machine()}")


def source_state() -> str:
    """The commit measured, and whether the core adjoint code differs from it."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "gqlib/adjoint", "gqlib/integrate")
    return f"commit {head}" + (" with uncommitted changes in gqlib/adjoint or gqlib/integrate"
                                if dirty else "")


def md_cost(rows) -> str:
    head = ("| H | P | adjoint | fwd nfe | bwd nfe_f | nfe_vjp_y | nfe_vjp_params | nodes | "
            "acc/rej | rel err dL/dθ | rel err dL/dz0 | bwd time [ms] |\n"
            "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
    body = "".join(
        f"| {r['H']} | {r['P']} | {r['label']} | {r['nfe_fwd']} | {r['nfe_f']} | {r['nfe_vjp_y']} "
        f"| {r['nfe_vjp_params']} | {r['n_nodes']} | {r['acc']}/{r['rej']} | {r['err_p']:.1e} "
        f"| {r['err_y0']:.1e} | {1e3 * r['wall']:.1f} |\n" for r in rows)
    return head + body


def md_ratios(ratios) -> str:
    labs = ("gq adaptive", "gq nodes=3", "interpolated adaptive")
    head = ("| H | P | " + " | ".join(f"{lab}: vjp_params ratio / time ratio" for lab in labs)
            + " |\n|---:|---:|" + "---:|" * len(labs) + "\n")
    body = "".join(f"| {r['H']} | {r['P']} | " + " | ".join(
        f"{r[lab][0]:.2f} / {r[lab][1]:.2f}" for lab in labs) + " |\n" for r in ratios)
    return head + body


def md_sweep(out) -> str:
    labels = [lab for lab, _ in SWEEP_RULES]
    head = ("| rtol (atol = rtol/100) | fwd nfe | " + " | ".join(labels) + " |\n|---:|---:|"
            + "---:|" * len(labels) + "\n")
    body = ""
    for rtol in SWEEP_RTOL:
        cells = {o["label"]: o for o in out if o["rtol"] == rtol}
        nfe = next(iter(cells.values()))["nfe_fwd"]
        body += f"| {rtol:.0e} | {nfe} | " + " | ".join(
            f"{cells[lab]['err_p']:.1e} ({cells[lab]['nfe_vjp_params']})" for lab in labels) + " |\n"
    return head + body


def plot(out, path: Path, n_params: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"gq adaptive": ("C0", "o-"), "gq paper": ("C1", "s--"), "gq nodes=1": ("C2", "v--"),
              "gq nodes=3": ("C3", "^--"), "gq nodes=5": ("C4", "D--"),
              "backsolve seminorm": ("k", "x:"), "collocation (3 nodes)": ("C5", "P-.")}
    for label, _ in SWEEP_RULES:
        pts = [o for o in out if o["label"] == label]
        color, fmt = styles[label]
        ax1.loglog([o["rtol"] for o in pts], [o["err_p"] for o in pts], fmt, color=color, label=label)
        ax2.loglog([o["rtol"] for o in pts], [o["nfe_vjp_params"] for o in pts], fmt, color=color,
                   label=label)
    r = np.array(SWEEP_RTOL)
    ax1.loglog(r, r, color="0.6", lw=0.8, label="error = rtol")
    for ax, ylabel in ((ax1, "relative error of dL/dθ"), (ax2, "parameter VJPs (nfe_vjp_params)")):
        ax.set_xlabel("rtol of forward and backward solve (atol = rtol/100)")
        ax.set_ylabel(ylabel)
        ax.invert_xaxis()
        ax.grid(True, which="major", alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(f"GQ node rules, MLP neural ODE D={D}, H={SWEEP_H} (P={n_params}), "
                 f"10 output intervals, dopri5")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    t_start = time.perf_counter()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    vjp_err = check_vjps(MLPField(D, 8, np.random.default_rng(1)), np.random.default_rng(2))
    print(f"hand VJPs vs central differences: max rel mismatch {vjp_err:.1e}")
    if vjp_err > 1e-6:
        print("VJP check failed", file=sys.stderr)
        return 1
    print("cost table (forward dopri5 rtol 1e-6 atol 1e-8; backward inherits)")
    rows, ratios = cost_table()
    print(f"tolerance sweep at H = {SWEEP_H}")
    n_params, out = sweep()
    elapsed = time.perf_counter() - t_start

    cost_md, ratio_md, sweep_md = md_cost(rows), md_ratios(ratios), md_sweep(out)
    print("\n" + cost_md + "\n" + ratio_md + "\n" + sweep_md)
    plot(out, DOCS / "adjoint_node_rules.png", n_params)
    doc = f"""# Adjoint cost and node-rule accuracy (measured)

Written by `validation/bench_adjoint_cost.py`; do not edit by hand. Command:

```
.venv/bin/python validation/bench_adjoint_cost.py
```

Machine: {machine()}. Load average at start: {load:.1f}. Whole run: {elapsed:.0f} s.
Source: {source_state()}.

Problem: `dz/dt = W2 tanh(W1 z + b1) + b2` (D = {D} -> H -> D MLP, weights N(0, 4/fan_in),
hand-written NumPy VJPs, fused `f_vjp_y` / `f_vjp`), `t = linspace(0, 1, 11)` (10 intervals),
`L = mean_(i>=1) z(t_i)^2`. Forward: dopri5, rtol 1e-6, atol 1e-8, `dense_output=True`; the
backward inherits the tolerances. Errors are relative 2-norm errors against backsolve at
rtol = atol = 1e-12 on a forward solve at 1e-12. Backward time: median of {REPEATS} after a warm-up
(NumPy, small matrices: dominated by per-call overhead, so compare counts first).

## Calls of each kind per adjoint, as the parameter count P grows

{cost_md}
## gq and interpolated against backsolve seminorm

Ratio of `nfe_vjp_params` and of backward wall time to `backsolve seminorm` on the same forward
solve.

{ratio_md}
## Node rules across tolerances (H = {SWEEP_H}, P = {n_params})

Relative error of dL/dθ, and in parentheses `nfe_vjp_params`. The forward and backward solves use
the same rtol (atol = rtol/100). `backsolve seminorm` has no quadrature: its error is the backward
solve's floor. Plot: `docs/adjoint_node_rules.png`.

{sweep_md}"""
    (DOCS / "adjoint_cost.md").write_text(doc)
    print(f"wrote {DOCS / 'adjoint_cost.md'} and {DOCS / 'adjoint_node_rules.png'} "
          f"({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
