"""gqlib showcase (`make demo`).

1. Every Runge-Kutta method on a non-autonomous nonlinear problem with a known solution: the table
   of observed convergence orders (fixed steps) against theory, and of its dense output.
2. The neural-ODE showcase (needs the torch extra): a small model trained with gqlib's GQ adjoint
   and torchdiffeq's adjoint side by side.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import gqlib
from gqlib.convergence import refinement_study


def f(t, y):
    # y1 = 1 / (1 + t^2 / 4),  y2 = exp(sin t)
    return np.array([-0.5 * t * y[0] ** 2, y[1] * np.cos(t)])


def exact(t):
    t = np.asarray(t, dtype=float)
    return np.stack([1.0 / (1.0 + 0.25 * t ** 2), np.exp(np.sin(t))], axis=-1)


def order_table() -> None:
    print("Observed orders on y1' = -t y1^2 / 2, y2' = y2 cos t (fixed steps, max error at outputs)")
    print(f"{'method':>14} {'order':>6} {'observed':>9} {'dense q':>8} {'interp.':>8} {'observed':>9}")
    names = sorted({tab.name for tab in gqlib.METHODS.values()},
                   key=lambda n: (gqlib.METHODS[n].order, n))
    for name in names:
        tab = gqlib.METHODS[name]
        tout = np.array([0.0, 1.0, 2.0]) if tab.order >= 7 else np.array([0.0, 0.5, 1.0])
        ref = exact(tout)
        k_min = {1: 64, 2: 16, 3: 4, 4: 2, 5: 2}.get(tab.order, 1)
        k_max = {1: 2 ** 13, 2: 2 ** 11, 3: 2 ** 9, 4: 2 ** 8, 5: 200}.get(tab.order, 40)
        hs = (tout[1] - tout[0]) / np.unique(np.geomspace(k_min, k_max, 20).astype(int))

        def err(h, name=name, tout=tout, ref=ref):
            sol = gqlib.solve(f, exact(0.0), tout, method=name, step_size=h)
            return np.max(np.abs(sol.y[1:] - ref[1:]))

        study = refinement_study(err, hs, lo=1e-13, hi=1e-2, next_order_term=True)
        expected = min(tab.order, tab.dense_order + 1)

        def err_dense(h, name=name):
            sol = gqlib.solve(f, exact(0.0), [0.0, 1.0], method=name, step_size=h, dense_output=True)
            n = round(1.0 / h)
            tq = (np.arange(n) + 0.37) / n
            return np.max(np.abs(sol(tq) - exact(tq)))

        k_max_d = {1: 2 ** 13, 2: 2 ** 11, 3: 2 ** 9, 4: 2 ** 8, 5: 200}.get(expected, 40)
        k_min_d = {1: 64, 2: 16, 3: 4, 4: 2, 5: 2}.get(expected, 1)
        dense = refinement_study(err_dense, 1.0 / np.unique(np.geomspace(k_min_d, k_max_d, 20).astype(int)),
                                 lo=1e-13, hi=1e-2, next_order_term=True)
        print(f"{name:>14} {tab.order:>6} {study.order:>9.2f} {tab.dense_order:>8} {expected:>8} "
              f"{dense.order:>9.2f}")


def main() -> int:
    t0 = time.perf_counter()
    order_table()
    print(f"(order table in {time.perf_counter() - t0:.1f} s)\n")
    try:
        from neural_ode_demo import main as neural_main
    except ImportError as exc:  # torch extra missing
        print(f"neural-ODE showcase skipped: {exc}")
        return 0
    return neural_main()


if __name__ == "__main__":
    sys.path.insert(0, __import__("os").path.dirname(__file__))
    sys.exit(main())
