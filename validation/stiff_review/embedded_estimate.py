"""Tried and not adopted: a stiffness estimate for bosh3 (no stage pair) from the embedded solution.

rho = ||f(t1, y1) - f(t1, yhat1)|| / ||y1 - yhat1|| with yhat1 = y1 - h sum E_i K_i (one extra call
per step), fed to the same Kadane growth as the stage pair. Prints, per problem, method and rtol,
the checkpoint and interpolated adjoints' errors, the pair's growth (dopri5) and the embedded one.

    python validation/stiff_review/embedded_estimate.py bosh3,dopri5    # about 4 minutes
"""
import os
import sys

import numpy as np

import gqlib
from gqlib.adjoint import CheckpointAdjoint, InterpolatedAdjoint
from gqlib.adjoint._stiffness import stability_polynomial
from gqlib.integrate._segment import combine
from gqlib.tableaux import get_method

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import forced_linear, oregonator, reference, rel, robertson, run, vdp  # noqa: E402


def kadane(poly, hr):
    logs = np.log(np.abs(np.polyval(poly, -np.asarray(hr))))
    best = run = 0.0
    for v in logs:
        run = max(run, 0.0) + v
        best = max(best, run)
    return best

def emb_growth(field, y0, t, m, rtol):
    tab = get_method(m)
    E = [(i, float(e)) for i, e in enumerate(np.asarray(tab.E, float)) if e != 0.0]
    hr = []
    def on_step(seg):
        K = seg.K
        yhat = seg.y1 - seg.h_step * combine(K, E)
        f1 = K[tab.stages - 1] if tab.fsal else field(seg.t1, seg.y1)
        fh = field(seg.t1, yhat)
        den = np.linalg.norm(seg.y1 - yhat)
        hr.append(abs(seg.h_step) * (np.linalg.norm(f1 - fh) / den if den > 0 else 0.0))
    gqlib.solve(field, y0, t, method=m, rtol=rtol, atol=rtol / 100, on_step=on_step, max_steps=2_000_000)
    return kadane(stability_polynomial(tab), hr), max(hr)

probs = {"vdp50": vdp, "vdp1000": lambda: vdp(1000.0), "vdp5": lambda: vdp(5.0), "robertson": robertson,
         "forced_linear": forced_linear, "oregonator": oregonator}
methods = sys.argv[1].split(",")
for name, mk in probs.items():
    field, y0, t = mk()
    ref = reference(field, y0, t)
    for m in methods:
        for rtol in (1e-3, 1e-5, 1e-7):
            try:
                gc, stc, wc, sol = run(field, y0, t, adjoint=CheckpointAdjoint(), method=m, rtol=rtol, atol=rtol / 100)
                gi, _, _, _ = run(field, y0, t, adjoint=InterpolatedAdjoint(), method=m, rtol=rtol, atol=rtol / 100)
                G, hmax = emb_growth(field, y0, t, m, rtol)
            except Exception as e:
                print(name, m, rtol, type(e).__name__, str(e)[:80])
                continue
            print(f"{name:13s} {m:7s} rtol {rtol:.0e} steps {sol.stats['n_accepted']:6d} ckpt {rel(gc, ref):.1e} interp {rel(gi, ref):.1e} "
                  f"pair-growth {stc.get('stiff_growth')} emb-growth {G:.2f} max h*rho {hmax:.2f}", flush=True)
