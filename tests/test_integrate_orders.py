"""Convergence orders of every method, its dense output, and tolerance proportionality.

Orders are least-squares log-log slopes over the errors in [1e-12, 1e-2], with a next-order
correction term (``err = C h^p (1 + D h)``, see :func:`gqlib.convergence.observed_order`); they
must lie within 0.15 of theory.
"""

import numpy as np
import pytest
from problems import LINEAR, NONAUTONOMOUS

import gqlib
from gqlib.convergence import observed_order, refinement_study

ALL = sorted({tab.name for tab in gqlib.METHODS.values()})
TOL = 0.15
WINDOW = dict(lo=1e-13, hi=1e-2, next_order_term=True)


def _step_sizes(order, span):
    """Step sizes span/k, k geometric up to a cost cap that reaches rounding for order >= 3."""
    k_min = {1: 64, 2: 16, 3: 4, 4: 2, 5: 2, 6: 1, 7: 1, 8: 1}[order]  # skip pre-asymptotic h
    k_max = {1: 2 ** 13, 2: 2 ** 11, 3: 2 ** 9, 4: 2 ** 8, 5: 200, 6: 80, 7: 40, 8: 30}[order]
    return span / np.unique(np.geomspace(k_min, k_max, 30).astype(int))


def _output_times(order):
    # 8th-order methods reach rounding within a few halvings: give them longer intervals
    return np.array([0.0, 1.0, 2.0]) if order >= 7 else np.array([0.0, 0.5, 1.0])


@pytest.mark.parametrize("name", ALL)
def test_fixed_step_order(name):
    """Max error over the output times of a fixed-step solve is O(h^p)."""
    tab = gqlib.METHODS[name]
    P = NONAUTONOMOUS
    tout = _output_times(tab.order)
    ref = P.exact(tout)

    def error_at(h):
        sol = gqlib.solve(P.f, P.y0, tout, method=name, step_size=h)
        return np.max(np.abs(sol.y[1:] - ref[1:]))

    study = refinement_study(error_at, _step_sizes(tab.order, tout[1] - tout[0]), **WINDOW)
    assert len(study.h_fit) >= 5, study.err
    assert abs(study.order - tab.order) <= TOL, (name, study.order, study.err)


@pytest.mark.parametrize("name", ALL)
def test_dense_output_local_order(name):
    """One step from the exact state: interpolant error at theta = 0.4 is O(h^(min(p, q) + 1))."""
    tab = gqlib.METHODS[name]
    P = NONAUTONOMOUS
    t0, theta = 0.3, 0.4
    y0 = P.exact(t0)
    expected = min(tab.order, tab.dense_order) + 1

    def error_at(h):
        sol = gqlib.solve(P.f, y0, [t0, t0 + h], method=name, step_size=h, dense_output=True)
        return np.max(np.abs(sol(t0 + theta * h) - P.exact(t0 + theta * h)))

    h_max = 0.4 if expected <= 5 else 1.0
    # one step carries no accumulated rounding: errors are clean down to ~1e-14
    hi = 1e-6 if expected >= 5 else 1e-2
    study = refinement_study(error_at, np.geomspace(h_max, h_max / 2 ** 7, 15), lo=1e-14, hi=hi,
                             next_order_term=True)
    assert len(study.h_fit) >= 5, study.err
    assert abs(study.order - expected) <= TOL, (name, study.order, study.err)


@pytest.mark.parametrize("name", ALL)
def test_dense_output_global_order(name):
    """Interpolant between the steps of a whole fixed-step solve: O(h^min(p, q + 1))."""
    tab = gqlib.METHODS[name]
    P = NONAUTONOMOUS
    expected = min(tab.order, tab.dense_order + 1)
    span = P.t1 - P.t0

    def error_at(h):
        sol = gqlib.solve(P.f, P.y0, [P.t0, P.t1], method=name, step_size=h, dense_output=True)
        n = round(span / h)
        tq = P.t0 + (np.arange(n) + 0.37) * span / n
        return np.max(np.abs(sol(tq) - P.exact(tq)))

    study = refinement_study(error_at, _step_sizes(expected, span), **WINDOW)
    assert len(study.h_fit) >= 5, study.err
    assert abs(study.order - expected) <= TOL, (name, study.order, study.err)


@pytest.mark.parametrize("name", [n for n in ALL if gqlib.METHODS[n].adaptive])
def test_tolerance_proportionality(name):
    """Global error is proportional to the tolerance: these methods all propagate the higher-order
    solution (local extrapolation), so err ~ tol (slope 1 in log-log)."""
    tab = gqlib.METHODS[name]
    P, T = LINEAR, 10.0
    ref = P.exact(T)[-1]
    tols = np.geomspace(1e-5, 1e-11, 7) if tab.order >= 4 else np.geomspace(1e-4, 1e-8, 5)
    errs = []
    for tol in tols:
        sol = gqlib.solve(P.f, P.y0, [P.t0, T], method=name, rtol=tol, atol=tol)
        errs.append(np.max(np.abs(sol.y[-1] - ref)))
    slope = observed_order(tols, errs)
    assert abs(slope - 1.0) <= TOL, (name, slope, errs)
