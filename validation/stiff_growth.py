"""The discrete adjoint's stiffness check, measured: growth against gradient error.

For Van der Pol (mu = 20 ... 1000, on [0, 5], y0 = (2, 0), L = sum_{i>0} |y(t_i)|^2) and the
trust suite's non-stiff problems, every adaptive method with an estimate and bosh3 (which has
none), at rtol 1e-3 ... 1e-9 (atol = rtol / 100): the growth the checkpoint adjoint measures
(``stats["stiff_growth"]``, nepers: ``gqlib.adjoint._stiffness``), and the relative error of
dL/dtheta against a reference (collocation over dop853 at rtol = atol = 1e-12; the closed form for
the linear problems) from

- the checkpoint adjoint alone (= direct backprop),
- the interpolated adjoint (the continuous one the default falls back to),
- the default (``"auto"``: the checkpoint adjoint, or the interpolated one where the growth
  passes ``STIFF_GROWTH_LIMIT``).

A row is *off* where the checkpoint adjoint's error passes 10 x rtol and 10 x the interpolated
adjoint's; *flagged* where its growth passes the limit (the default then returns the
interpolated adjoint's gradient); *compared* where the default computed both (growth from
``STIFF_CHECK_FROM``); *warned* where the default warned. The summary counts them.

Run: python validation/stiff_growth.py [--out docs/results/stiff_growth.md] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from adjoint_fields import VanDerPolField  # noqa: E402
from adjoint_trust import PROBLEMS, loss_grad, reference  # noqa: E402

import gqlib  # noqa: E402
from gqlib.adjoint import STIFF_GROWTH_LIMIT, gradient  # noqa: E402
from gqlib.errors import GradientAccuracyWarning  # noqa: E402

METHODS = ("dopri5", "tsit5", "dop853", "bosh3")


def van_der_pol(mu):
    return VanDerPolField(mu), np.array([2.0, 0.0]), np.linspace(0.0, 5.0, 6)


def vdp_reference(mu):
    field, y0, t = van_der_pol(mu)
    sol = gqlib.solve(field, y0, t, method="dop853", rtol=1e-12, atol=1e-12, dense_output=True,
                      max_steps=10**7)
    return gradient(field, sol, loss_grad(sol), adjoint="collocation", grad_t=False).params


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def row(name, field, y0, t, ref, method, rtol):
    sol = gqlib.solve(field, y0, t, method=method, rtol=rtol, atol=rtol / 100,
                      dense_output=True, max_steps=10**6)
    gy = loss_grad(sol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientAccuracyWarning)
        ck = gradient(field, sol, gy, adjoint="checkpoint", grad_t=False)
        it = gradient(field, sol, gy, adjoint="interpolated", grad_t=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GradientAccuracyWarning)
        de = gradient(field, sol, gy, grad_t=False)
    warned = any(issubclass(w.category, GradientAccuracyWarning) for w in caught)
    e_ck, e_it, e_de = rel(ck.params, ref), rel(it.params, ref), rel(de.params, ref)
    growth = ck.stats["stiff_growth"]
    off = e_ck > max(10 * rtol, 10 * e_it)
    flagged = growth is not None and growth > STIFF_GROWTH_LIMIT
    return dict(problem=name, method=method, rtol=rtol, steps=ck.stats["n_steps"],
                growth=growth, ck=e_ck, interp=e_it, default=e_de, chosen=de.stats["strategy"],
                compared=de.stats.get("stiff_compared") is not None, warned=warned,
                off=off, flagged=flagged)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--quick", action="store_true", help="mu = 50 and two trust problems only")
    args = ap.parse_args(argv)
    mus = (50.0,) if args.quick else (20.0, 50.0, 200.0, 1000.0)
    rtols = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9)
    others = ("lorenz", "tanh_mlp") if args.quick else \
        tuple(k for k in PROBLEMS if not k.startswith("linear_lam200_"))
    rows, t0 = [], time.perf_counter()
    for mu in mus:
        ref = vdp_reference(mu)
        for method in METHODS:
            for rtol in rtols:
                if mu >= 1000 and rtol < 1e-6:
                    continue  # 4500+ steps each: the pattern is set by then
                rows.append(row(f"vdp mu={mu:g}", *van_der_pol(mu), ref, method, rtol))
                print(_line(rows[-1]), flush=True)
    for name in others:
        ref = reference(name)[1]
        for method in METHODS:
            for rtol in rtols[1:-1]:
                rows.append(row(name, *PROBLEMS[name](), ref, method, rtol))
                print(_line(rows[-1]), flush=True)
    seconds = time.perf_counter() - t0
    text = _report(rows, seconds)
    print(text)
    if args.out is not None:
        args.out.write_text(text)


def _line(r):
    g = "  -  " if r["growth"] is None else f"{r['growth']:6.2f}"
    return (f"{r['problem']:14s} {r['method']:7s} {r['rtol']:7.0e} {r['steps']:5d} {g} "
            f"{r['ck']:9.2e} {r['interp']:9.2e} {r['default']:9.2e} {r['chosen']:12s}"
            f"{' off' if r['off'] else ''}{' flagged' if r['flagged'] else ''}"
            f"{' compared' if r['compared'] else ''}{' warned' if r['warned'] else ''}")


def _report(rows, seconds) -> str:
    out = ["# The discrete adjoint's stiffness check: growth against gradient error", "",
           f"`python validation/stiff_growth.py` ({seconds:.0f} s). Growth: "
           "``stats['stiff_growth']`` (nepers), limit "
           f"{STIFF_GROWTH_LIMIT:.2f} (e^4.6 = 100). Errors: relative, dL/dtheta, against the "
           "reference. *off*: the checkpoint adjoint's error > 10 rtol and > 10 x the "
           "interpolated adjoint's. bosh3 has no estimate (-).", "",
           "| problem | method | rtol | steps | growth | checkpoint | interpolated | default "
           "| default ran | off | flagged | default compared | default warned |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g = "-" if r["growth"] is None else f"{r['growth']:.2f}"
        out.append(f"| {r['problem']} | {r['method']} | {r['rtol']:.0e} | {r['steps']} | {g} | "
                   f"{r['ck']:.1e} | {r['interp']:.1e} | {r['default']:.1e} | {r['chosen']} | "
                   f"{'off' if r['off'] else ''} | {'yes' if r['flagged'] else ''} | "
                   f"{'yes' if r['compared'] else ''} | {'yes' if r['warned'] else ''} |")
    est = [r for r in rows if r["growth"] is not None]
    off = [r for r in est if r["off"]]
    ok = [r for r in est if not r["off"]]
    caught = [r for r in off if r["flagged"]]
    false = [r for r in ok if r["flagged"]]
    worst_missed = max((r["ck"] / r["rtol"] for r in off if not r["flagged"]), default=0.0)
    worst_default = max(r["default"] / r["rtol"] for r in rows)
    silent = [r for r in est if r["default"] > max(10 * r["rtol"], 10 * r["interp"])
              and not r["warned"]]
    out += ["", "## Summary (methods with an estimate)", "",
            f"- the default more than 10 rtol and 10x the interpolated adjoint's error off "
            f"without a warning: {len(silent)} rows, worst "
            f"{max((r['default'] / r['rtol'] for r in silent), default=0.0):.0f} x rtol; "
            f"it compared both gradients in {sum(r['compared'] for r in est)} rows and warned "
            f"in {sum(r['warned'] for r in est)}.",
            f"- rows: {len(est)}; checkpoint off: {len(off)}, of which flagged {len(caught)}; "
            f"the worst unflagged one is {worst_missed:.0f} x rtol off.",
            f"- flagged where the checkpoint adjoint was not off: {len(false)} "
            "(the default then ran the interpolated adjoint: slower, as accurate).",
            f"- largest error of the default over all rows: {worst_default:.0f} x rtol.",
            "- largest growth where the checkpoint adjoint was not off: "
            f"{max((r['growth'] for r in ok), default=0.0):.2f}; smallest where it was off "
            f"and flagged: {min((r['growth'] for r in caught), default=float('nan')):.2f}."]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
