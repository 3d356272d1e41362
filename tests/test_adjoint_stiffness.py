"""The discrete adjoint's stiffness check (gqlib.adjoint._stiffness) and its fallback.

The check estimates h |lambda| per step from two stage values at t1 (Hairer's DOPRI5 estimate)
and sums log|R(-h rho)| over runs of steps (R: the method's stability function). On a linear
field the estimate is exact, so the growth it reports is known in closed form.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from adjoint_fields import LinearField, VanDerPolField

import gqlib
from gqlib.adjoint import (
    AutoAdjoint,
    CheckpointAdjoint,
    CollocationAdjoint,
    InterpolatedAdjoint,
    gradient,
)
from gqlib.adjoint._checkpoint import _DiscretePass
from gqlib.adjoint._field import CountedField
from gqlib.adjoint._stiffness import estimate_pair, stability_polynomial
from gqlib.errors import GradientAccuracyWarning
from gqlib.tableaux import get_method


def test_stability_polynomials_are_the_known_ones():
    """dopri5: the Taylor polynomial of e^z to z^5 plus z^6/600 (Hairer & Wanner I, IV.2); an
    order-p method with p = s stages (rk4, heun3, midpoint): Taylor to z^p."""
    np.testing.assert_allclose(stability_polynomial(get_method("dopri5")),
                               [1 / 600, 1 / 120, 1 / 24, 1 / 6, 1 / 2, 1, 1], rtol=1e-14)
    for name in ("rk4", "heun3", "midpoint", "euler"):
        p = get_method(name).order
        taylor = [1 / math.factorial(k) for k in range(p, -1, -1)]
        np.testing.assert_allclose(stability_polynomial(get_method(name))[-(p + 1):], taylor,
                                   rtol=1e-14)


@pytest.mark.parametrize("name, boundary", [("dopri5", 3.3066), ("rk4", 2.7853)])
def test_real_stability_boundaries(name, boundary):
    """|R(-x)| = 1 at the known ends of the real stability intervals (dopri5 3.3066, rk4
    2.7853), < 1 inside, > 1 past."""
    poly = stability_polynomial(get_method(name))
    assert abs(np.polyval(poly, -boundary)) == pytest.approx(1.0, abs=2e-4)
    assert abs(np.polyval(poly, -0.99 * boundary)) < 1 < abs(np.polyval(poly, -1.01 * boundary))


def test_estimate_pairs():
    """The last stage at c = 1 whose point is not y1: dopri5's sixth (the seventh is FSAL at
    y1), rk4's fourth, dop853's twelfth; none for euler, midpoint and bosh3 (whose only c = 1
    stage is its FSAL one)."""
    assert estimate_pair(get_method("dopri5")) == 5
    assert estimate_pair(get_method("tsit5")) == 5
    assert estimate_pair(get_method("rk4")) == 3
    assert estimate_pair(get_method("dop853")) == 11
    for name in ("euler", "midpoint", "bosh3"):
        assert estimate_pair(get_method(name)) is None


@pytest.mark.parametrize("method, hlam", [("rk4", 2.0), ("rk4", 2.9), ("dopri5", 3.4),
                                          ("dopri5", 1.0)])
def test_growth_is_exact_on_a_linear_field(method, hlam):
    """y' = -lambda y, fixed steps: rho is lambda exactly, and the growth is
    max(0, n log|R(-h lambda)|) over the n steps whose next step exists (the last has no
    f(t1, y1) from a following stage)."""
    lam, n = 10.0, 12
    field = LinearField(np.array([[-lam]]))
    t = np.array([0.0, n * hlam / lam])
    sol = gqlib.solve(field, np.array([1.0]), t, method=method, step_size=hlam / lam,
                      checkpoints=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientAccuracyWarning)
        g = gradient(field, sol, np.ones((2, 1)), adjoint="checkpoint", grad_t=False)
    per_step = math.log(abs(np.polyval(stability_polynomial(get_method(method)), -hlam)))
    assert g.stats["stiff_growth"] == pytest.approx(max(0.0, (n - 1) * per_step), rel=1e-9,
                                                    abs=1e-12)


def test_fixed_steps_past_the_boundary_warn():
    """rk4 at h lambda = 2.9 (past 2.785) for 60 steps: growth 59 x log|R(-2.9)| = 59 x 0.1716
    = 10.1 > the limit; the checkpoint adjoint warns with the span and the remedy."""
    lam = 10.0
    field = LinearField(np.array([[-lam]]))
    sol = gqlib.solve(field, np.array([1.0]), np.array([0.0, 60 * 0.29]), method="rk4",
                      step_size=0.29, checkpoints=True)
    with pytest.warns(GradientAccuracyWarning, match=r"rk4 steps over t in \[0\.0, .*e\^10\.1 "):
        gradient(field, sol, np.ones((2, 1)), adjoint=CheckpointAdjoint(), grad_t=False)


@pytest.mark.parametrize("method, tstops", [("dopri5", None), ("dop853", None), ("rk4", None),
                                            ("bosh3", [0.83]), ("dopri5", [0.5, 1.3])])
def test_dense_output_rebuilt_from_checkpoints_is_the_forwards(method, tstops):
    """The stiff fallback's dense output, rebuilt from the checkpoints (stages recomputed;
    FSAL's from the forward's own y1), equals the forward's to round-off: extra dense stages
    (dop853), Hermite (rk4), one-sided stage times at tstops."""
    field = VanDerPolField(3.0)
    t = np.linspace(0.0, 2.0, 5)
    opts = dict(step_size=0.05) if method == "rk4" else dict(rtol=1e-7, atol=1e-9)
    sol = gqlib.solve(field, np.array([2.0, 0.0]), t, method=method, dense_output=True,
                      tstops=tstops, **opts)
    rebuilt = _DiscretePass(CountedField(field), sol, np.zeros((5, 2)), np, t,
                            grad_t=False).dense_output()
    tq = np.linspace(0.0, 2.0, 2001)
    np.testing.assert_allclose(rebuilt(tq), sol.dense(tq), rtol=0, atol=1e-13)
    assert rebuilt.n_steps == sol.dense.n_steps


def test_stiff_fallback_takes_a_continuous_strategy_only():
    with pytest.raises(TypeError, match="stiff_fallback"):
        CheckpointAdjoint(stiff_fallback="interpolated")
    with pytest.raises(TypeError, match="stiff_fallback"):
        CheckpointAdjoint(stiff_fallback=CheckpointAdjoint())
    with pytest.raises(TypeError, match="stiff_fallback"):
        AutoAdjoint(stiff_fallback=1)
    assert AutoAdjoint().discrete.stiff_fallback == InterpolatedAdjoint()
    assert AutoAdjoint(stiff_fallback=False).discrete.stiff_fallback is None
    own = CheckpointAdjoint(stiff_fallback=CollocationAdjoint())
    assert AutoAdjoint(discrete=own).discrete.stiff_fallback == CollocationAdjoint()


def test_collocation_fallback_and_auto_without_fallback():
    """A chosen fallback (collocation) gives its gradient; auto(stiff_fallback=False) warns."""
    field, y0, t = VanDerPolField(50.0), np.array([2.0, 0.0]), np.linspace(0.0, 5.0, 6)
    sol = gqlib.solve(field, y0, t, rtol=1e-7, atol=1e-9, checkpoints=True)
    gy = 2.0 * sol.y
    gy[0] = 0.0
    g = gradient(field, sol, gy, grad_t=False,
                 adjoint=CheckpointAdjoint(stiff_fallback=CollocationAdjoint()))
    assert g.stats["strategy"] == "collocation" and g.stats["stiff_fallback"] == "collocation"
    assert g.params[0] == pytest.approx(0.016168, rel=1e-4)
    with pytest.warns(GradientAccuracyWarning, match="stability boundary"):
        gradient(field, sol, gy, grad_t=False, adjoint=AutoAdjoint(stiff_fallback=False))


def test_no_fallback_after_fixed_steps_or_a_low_order_method():
    """After fixed steps (rk4 at h lambda = 2.9 on y' = -10 y) and after a low-order adaptive
    method (fehlberg2 on stiff Van der Pol, growth 2.75), where the continuous adjoint was
    measured worse than the discrete one (review: rk38 fixed steps 9.3e-2 against 1.2e-4;
    fehlberg2, adaptive_heun), the default keeps the discrete gradient, compares nothing, and
    warns past the limit."""
    lam = 10.0
    field = LinearField(np.array([[-lam]]))
    sol = gqlib.solve(field, np.array([1.0]), np.array([0.0, 60 * 0.29]), method="rk4",
                      step_size=0.29, checkpoints=True)
    with pytest.warns(GradientAccuracyWarning, match="stability boundary"):
        g = gradient(field, sol, np.ones((2, 1)), grad_t=False)
    assert g.stats["strategy"] == "checkpoint" and g.stats["stiff_fallback"] is None
    field, y0, t = VanDerPolField(50.0), np.array([2.0, 0.0]), np.linspace(0.0, 5.0, 6)
    sol = gqlib.solve(field, y0, t, method="fehlberg2", rtol=1e-5, atol=1e-7, checkpoints=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientAccuracyWarning)
        g = gradient(field, sol, 2.0 * sol.y, grad_t=False)
    assert g.stats["stiff_growth"] > 1.5  # STIFF_CHECK_FROM: a dopri5 solve would compare
    assert g.stats["strategy"] == "checkpoint" and g.stats["stiff_compared"] is None


def test_a_nan_difference_between_the_gradients_counts_as_disagreement():
    # review: Python's max(0.0, nan) is 0.0, so a NaN continuous gradient read as agreement
    from gqlib.adjoint._checkpoint import _relative_difference
    from gqlib.adjoint._strategy import AdjointGradient

    ok = AdjointGradient(np.ones(2), np.ones(3), None, {})
    nan = AdjointGradient(np.ones(2), np.array([1.0, np.nan, 1.0]), None, {})
    assert _relative_difference(ok, ok, np) == 0.0
    assert _relative_difference(nan, ok, np) == math.inf  # a NaN over a finite norm
    assert _relative_difference(ok, nan, np) == math.inf
