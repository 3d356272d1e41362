"""Toy gradient: ``dz/dt = a z``, ``z(0) = 10``, ``a = 0.2``, ``L = z(T)^2`` for ``T = 19 ... 29``.

The exact gradients are ``dL/da = 2 T z(T)^2`` and ``dL/dz0 = 2 z(T) exp(a T)`` with
``z(T) = z0 exp(a T)``. Every method computes them through a dopri5 solve at rtol 1e-6, atol
1e-7 (the paper's), C = 0.4, in float64; we record the relative error of each, the forward and
backward NFE and the wall time of forward + backward. Full: ``T`` in steps of 0.02 (501 values);
quick: steps of 0.5.
"""

from __future__ import annotations

import math
import os

NAME = "toy_gradient"
TITLE = "Toy gradient (dz/dt = a z, exact gradients)"
RTOL, ATOL, GTOL = 1e-6, 1e-7, 0.4
Z0, A = 10.0, 0.2
CONFIGS = {
    "tiny": dict(t_start=19.0, t_stop=29.0, t_step=10.0),
    "quick": dict(t_start=19.0, t_stop=29.0, t_step=0.5),
    "full": dict(t_start=19.0, t_stop=29.0, t_step=0.02),
}


def horizons(cfg):
    n = int(round((cfg["t_stop"] - cfg["t_start"]) / cfg["t_step"])) + 1
    return [cfg["t_start"] + k * cfg["t_step"] for k in range(n)]


def units(cfg, include):
    from .common import method_names

    return len(horizons(cfg)) * len(method_names(include))


def one(method, T):
    import time

    import torch

    from .common import DIRECT_NAMES, Counted, make_solver

    a = torch.tensor(A, dtype=torch.float64, requires_grad=True)
    z0 = torch.tensor([Z0], dtype=torch.float64, requires_grad=True)
    func = Counted(lambda t, z: a * z)
    solve = make_solver(method, rtol=RTOL, atol=ATOL, gtol=GTOL)
    t = torch.tensor([0.0, T], dtype=torch.float64)
    t0 = time.perf_counter()
    zT = solve(func, z0, t, [a])[-1]
    nf = func.n
    loss = (zT ** 2).sum()
    ga, gz = torch.autograd.grad(loss, (a, z0))
    sec = time.perf_counter() - t0
    z_exact = Z0 * math.exp(A * T)
    da, dz = 2 * T * z_exact ** 2, 2 * z_exact * math.exp(A * T)
    return dict(method=method, T=T, dL_da=float(ga), dL_dz0=float(gz[0]),
                rel_err_a=abs(float(ga) - da) / da, rel_err_z0=abs(float(gz[0]) - dz) / dz,
                fwd_nfe=nf, bwd_nfe=nf if method in DIRECT_NAMES else func.n - nf, seconds=sec)


def run(cfg, out, include, bar, log):
    import warnings

    from .common import method_names
    from .run import write_csv

    methods = method_names(include)
    rows, warned = [], {m: 0 for m in methods}
    for m in methods:  # warm-up (first-call set-up out of the timings)
        one(m, horizons(cfg)[0])
    for T in horizons(cfg):
        for m in methods:
            bar.set_description(f"{NAME} T={T:.2f} {m}")
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                rows.append(one(m, T))
            warned[m] += len(w)
            bar.update(1)
    write_csv(os.path.join(out, f"{NAME}.csv"), rows)
    stats = {}
    for m in methods:
        sel = [r for r in rows if r["method"] == m]
        ea = sorted(r["rel_err_a"] for r in sel)
        ez = sorted(r["rel_err_z0"] for r in sel)
        stats[m] = dict(med_a=ea[len(ea) // 2], max_a=ea[-1], med_z=ez[len(ez) // 2],
                        max_z=ez[-1], nf=sum(r["fwd_nfe"] for r in sel) / len(sel),
                        nb=sum(r["bwd_nfe"] for r in sel) / len(sel),
                        ms=1e3 * sorted(r["seconds"] for r in sel)[len(sel) // 2],
                        warn=warned[m])
        log(f"{NAME} {m}: {stats[m]}")
    hs = horizons(cfg)
    lines = [f"**{TITLE}**", "",
             f"T = {hs[0]:g} ... {hs[-1]:g} in steps of {cfg['t_step']:g} ({len(hs)} values); "
             "dopri5, rtol 1e-6, atol 1e-7, C = 0.4, float64. Relative errors of dL/da and dL/dz0 "
             "against the exact gradient (median and max over T); NFE per solve (forward / "
             "backward, direct: backward = forward); ms: forward + backward, median over T; "
             "warnings: GradientAccuracyWarning etc. raised by gqlib over the sweep.", "",
             "| method | dL/da median | dL/da max | dL/dz0 median | dL/dz0 max | NFE fwd | NFE bwd "
             "| ms | warnings |", "|---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        s = stats[m]
        lines.append(f"| {m} | {s['med_a']:.2e} | {s['max_a']:.2e} | {s['med_z']:.2e} | "
                     f"{s['max_z']:.2e} | {s['nf']:.1f} | {s['nb']:.1f} | {s['ms']:.1f} | "
                     f"{s['warn']} |")
    with open(os.path.join(out, f"{NAME}.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    plot(os.path.join(out, f"{NAME}.png"), rows, methods)
    head = [m for m in methods if m.startswith(("torchdiffeq", "gqlib default", "gqlib gq"))]
    return [f"| {NAME} | {len(hs)} horizons | "
            + " / ".join(f"{stats[m]['med_a']:.1e}" for m in head) + " | "
            + " / ".join(f"{stats[m]['max_a']:.1e}" for m in head) + " |"]


def plot(path, rows, methods):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, label in ((axes[0], "rel_err_a", "dL/da"), (axes[1], "rel_err_z0", "dL/dz0")):
        for m in methods:
            sel = [r for r in rows if r["method"] == m]
            ax.plot([r["T"] for r in sel], [max(r[key], 1e-17) for r in sel], lw=1, label=m)
        ax.set_yscale("log")
        ax.set_xlabel("T")
        ax.set_title(f"relative error of {label}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
