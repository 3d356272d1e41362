"""Butcher tableaux: identities, order conditions in exact arithmetic, dense output, registry.

Order conditions use Butcher's rooted trees: a method has order p iff for every rooted tree t with
rho(t) <= p the elementary weight Phi(t) = sum_i b_i g_i(t) equals 1/gamma(t), where
g_i(leaf) = 1 and g_i([t_1, ..., t_m]) = prod_k (A g(t_k))_i. A continuous extension b_i(theta) has
local order q iff sum_i b_i(theta) g_i(t) = theta^rho(t) / gamma(t) for rho(t) <= q.

Everything is computed in ``Fraction`` arithmetic. Float coefficients (tsit5, dop853, dopri8) are
converted exactly, so any residual is the coefficients' own rounding; they are checked to 1e-13.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from functools import lru_cache
from importlib.util import find_spec

import numpy as np
import pytest

from gqlib.tableaux import METHODS, ButcherTableau, get_method

Tree = tuple  # a rooted tree is the sorted tuple of its children's trees; the leaf is ()

NAMES = ("euler", "midpoint", "heun", "ralston", "heun3", "bosh3", "rk4", "rk38", "fehlberg2",
         "adaptive_heun", "dopri5", "dopri5_shampine", "tsit5", "dop853", "dopri8")
ADAPTIVE = tuple(n for n in NAMES if METHODS[n].adaptive)
DENSE = tuple(n for n in NAMES if METHODS[n].dense is not None)

TOL = 1e-13  # for tableaux with float (irrational or rounded) coefficients
FAIL = 1e-9  # a condition counts as failed only if missed by more than this
THETAS = (Fraction(1, 3), Fraction(1, 2), Fraction(7, 10))
GENERIC_THETA = Fraction(3, 10)


# -- rooted trees ----------------------------------------------------------------------------------
@lru_cache(None)
def trees(n: int) -> tuple[Tree, ...]:
    """All rooted trees with n vertices, each once (1, 1, 2, 4, 9, 20, 48, 115, 286 ...)."""
    if n == 1:
        return ((),)
    pool = [t for m in range(1, n) for t in trees(m)]  # a fixed total order on smaller trees

    def forests(m: int, top: int):  # multisets of total order m from pool[:top + 1], non-increasing
        if m == 0:
            yield ()
            return
        for k in range(top, -1, -1):
            r = order(pool[k])
            if r <= m:
                for rest in forests(m - r, k):
                    yield (pool[k],) + rest

    return tuple(forests(n - 1, len(pool) - 1))


@lru_cache(None)
def order(t: Tree) -> int:
    return 1 + sum(order(c) for c in t)


@lru_cache(None)
def gamma(t: Tree) -> int:
    g = order(t)
    for c in t:
        g *= gamma(c)
    return g


def test_tree_counts():
    assert [len(trees(n)) for n in range(1, 10)] == [1, 1, 2, 4, 9, 20, 48, 115, 286]
    assert len({t for n in range(1, 9) for t in trees(n)}) == 200  # distinct up to order 8


# -- elementary weights --------------------------------------------------------------------------
def _exact(x) -> Fraction:
    return x if isinstance(x, Fraction) else Fraction(x)


def _is_exact(tab: ButcherTableau) -> bool:
    fields = [*tab.c, *tab.b, *(x for row in tab.a for x in row), *(tab.b_err or ()),
              *tab.dense_c, *(x for row in tab.dense_a for x in row), *(x for row in tab.dense or () for x in row)]
    return all(isinstance(x, (Fraction, int)) for x in fields)


class Weights:
    """g(t) for one tableau over all its stages (dense-only stages included), cached per tree."""

    def __init__(self, tab: ButcherTableau):
        self.tab = tab
        rows = [list(r) for r in tab.a] + [list(r) for r in tab.dense_a]
        self.n = len(rows)
        self.rows = [[(j, _exact(x)) for j, x in enumerate(r) if x != 0] for r in rows]
        self.exact = _is_exact(tab)
        self._g: dict[Tree, list[Fraction]] = {}
        self._Ag: dict[Tree, list[Fraction]] = {}

    def Ag(self, t: Tree) -> list[Fraction]:
        if t not in self._Ag:
            g = self.g(t)
            self._Ag[t] = [sum((a * g[j] for j, a in row), Fraction(0)) for row in self.rows]
        return self._Ag[t]

    def g(self, t: Tree) -> list[Fraction]:
        if t not in self._g:
            v = [Fraction(1)] * self.n
            for c in t:
                v = [x * y for x, y in zip(v, self.Ag(c), strict=True)]
            self._g[t] = v
        return self._g[t]

    def phi(self, weights, t: Tree) -> Fraction:
        # `weights` may stop before the dense-only stages (b, b_hat)
        return sum((_exact(w) * gi for w, gi in zip(weights, self.g(t), strict=False)), Fraction(0))

    def residuals(self, weights, n: int, theta: Fraction = Fraction(1)) -> list[Fraction]:
        """Phi(t) - theta^n / gamma(t) over the trees of order n."""
        return [self.phi(weights, t) - theta**n / gamma(t) for t in trees(n)]

    def holds(self, weights, n: int, theta: Fraction = Fraction(1)) -> bool:
        res = self.residuals(weights, n, theta)
        if self.exact:
            return all(r == 0 for r in res)
        return max(abs(float(r)) for r in res) <= TOL

    def fails(self, weights, n: int, theta: Fraction = Fraction(1)) -> bool:
        return max(abs(float(r)) for r in self.residuals(weights, n, theta)) > FAIL

    def exact_order(self, weights, pmax: int, theta: Fraction = Fraction(1)) -> int:
        """The largest p <= pmax with all conditions of order <= p satisfied."""
        p = 0
        while p < pmax and self.holds(weights, p + 1, theta):
            p += 1
        return p


@lru_cache(None)
def weights_of(name: str) -> Weights:
    return Weights(METHODS[name])


def _minus(x, y):
    return [_exact(a) - _exact(b) for a, b in zip(x, y, strict=True)]


# -- registry --------------------------------------------------------------------------------------
def test_registry_names_and_alias():
    assert set(NAMES) <= set(METHODS)
    assert METHODS["heun2"] is METHODS["heun"]
    assert set(METHODS) == set(NAMES) | {"heun2"}
    for name in NAMES:
        assert get_method(name) is METHODS[name]
        assert METHODS[name].name == name


@pytest.mark.parametrize("name", NAMES)
def test_registry_attributes(name):
    tab = METHODS[name]
    assert isinstance(tab.order, int) and tab.order >= 1
    assert isinstance(tab.dense_order, int)
    assert isinstance(tab.stages, int) and tab.stages == len(tab.c)
    assert isinstance(tab.fsal, bool)
    assert (tab.error_order is None) == (not tab.adaptive)
    assert tab.provenance


def test_fsal_flags():
    fsal = {n for n in NAMES if METHODS[n].fsal}
    assert {"dopri5", "tsit5", "bosh3", "dop853"} <= fsal
    assert fsal == {"dopri5", "dopri5_shampine", "tsit5", "bosh3", "dop853", "dopri8"}
    for n in fsal:
        assert METHODS[n].new_evals_per_step == METHODS[n].stages - 1


def test_get_method_errors():
    with pytest.raises(ValueError, match="valid methods"):
        get_method("rk5")
    with pytest.raises(TypeError):
        get_method(5)


# -- identities and float arrays -------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_identities(name):
    tab = METHODS[name]
    w = weights_of(name)
    s = tab.stages
    close = (lambda x, y: x == y) if w.exact else (lambda x, y: abs(float(x) - float(y)) <= TOL)
    rows = list(tab.a) + list(tab.dense_a)
    cs = list(tab.c) + list(tab.dense_c)
    for i, (row, c) in enumerate(zip(rows, cs, strict=True)):
        assert len(row) == i  # strictly lower
        assert close(sum(map(_exact, row), Fraction(0)), c), f"{name}: row {i}"
    assert close(sum(map(_exact, tab.b), Fraction(0)), 1)
    for err in (tab.b_err, tab.b_err_low):
        if err is not None:
            assert len(err) == s
            assert close(sum(map(_exact, err), Fraction(0)), 0)
    # float64 views shared by the drivers
    n = s + len(tab.dense_c)
    assert tab.A.shape == (n, n) and tab.A.dtype == np.float64
    assert np.all(np.triu(tab.A) == 0)
    assert tab.C.shape == (n,) and tab.B.shape == (s,)
    np.testing.assert_allclose(tab.A.sum(axis=1), tab.C, rtol=0, atol=1e-13)
    if tab.adaptive:
        assert tab.E.shape == (s,) and tab.E.dtype == np.float64
    else:
        assert tab.E is None
    if tab.dense is not None:
        assert tab.P.shape[0] == n and tab.P.dtype == np.float64
        np.testing.assert_allclose(tab.P.sum(axis=1)[:s], tab.B, rtol=0, atol=1e-12)
    if tab.fsal:
        assert tab.c[-1] == 1 and tab.b[-1] == 0
        assert close(max(abs(_exact(x) - _exact(y)) for x, y in zip(tab.a[-1], tab.b, strict=False)), 0)


# -- order conditions --------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_order_is_exact(name):
    """All conditions up to `order` hold, and some condition of order `order + 1` fails."""
    tab, w = METHODS[name], weights_of(name)
    for n in range(1, tab.order + 1):
        assert w.holds(tab.b, n), f"{name}: an order-{n} condition fails"
    assert w.fails(tab.b, tab.order + 1), f"{name}: order is understated"


@pytest.mark.parametrize("name", ADAPTIVE)
def test_error_order(name):
    """The embedded method b_hat = b - b_err has exactly `error_order` (dop853: see below)."""
    tab, w = METHODS[name], weights_of(name)
    b_hat = _minus(tab.b, tab.b_err)
    p_hat = w.exact_order(b_hat, tab.order)
    assert w.fails(b_hat, p_hat + 1)
    if tab.b_err_low is None:
        assert p_hat == tab.error_order
        assert p_hat < tab.order
    else:
        # Hairer's DOP853 estimate e5^2 / sqrt(e5^2 + 0.01 e3^2) with e5 = O(h^(p5+1)) and
        # e3 = O(h^(p3+1)) behaves like h^(2 p5 - p3 + 1): the controller's error_order is 2 p5 - p3.
        p_low = w.exact_order(_minus(tab.b, tab.b_err_low), tab.order)
        assert (p_hat, p_low) == (5, 3)
        assert tab.error_order == 2 * p_hat - p_low == 7


# -- dense output -------------------------------------------------------------------------------
def continuous_weights(tab: ButcherTableau, theta: Fraction) -> list[Fraction]:
    return [sum((_exact(x) * theta ** (p + 1) for p, x in enumerate(row)), Fraction(0)) for row in tab.dense]


@pytest.mark.parametrize("name", DENSE)
def test_dense_output_order(name):
    tab, w = METHODS[name], weights_of(name)
    s = tab.stages
    b1 = continuous_weights(tab, Fraction(1))
    if w.exact:
        assert b1[:s] == [_exact(x) for x in tab.b] and not any(b1[s:])
    else:
        assert max(abs(float(x - _exact(y))) for x, y in zip(b1, [*tab.b, *[0] * len(tab.dense_c)], strict=True)) <= 1e-12
    for theta in THETAS:
        bt = continuous_weights(tab, theta)
        for n in range(1, tab.dense_order + 1):
            assert w.holds(bt, n, theta), f"{name}: dense order-{n} condition fails at theta={theta}"
    # not understated
    assert w.fails(continuous_weights(tab, GENERIC_THETA), tab.dense_order + 1, GENERIC_THETA)


@pytest.mark.parametrize("name", DENSE)
def test_dense_output_endpoints(name):
    """u(0) = y0 and u'(0) = h f0 (weights at theta = 0 vanish; theta^1 column is e_0)."""
    tab = METHODS[name]
    e0 = np.zeros(tab.P.shape[0])
    e0[0] = 1
    np.testing.assert_allclose(tab.P[:, 0], e0, atol=1e-13)


def test_bosh3_dense_is_cubic_hermite():
    tab = METHODS["bosh3"]
    rng = np.random.default_rng(0)
    K = rng.standard_normal((4, 3))
    h, y0 = 0.3, rng.standard_normal(3)
    y1 = y0 + h * K.T @ tab.B
    f0, f1 = K[0], K[3]
    for th in (0.1, 0.5, 0.85):
        ours = y0 + h * (K.T @ tab.P) @ th ** np.arange(1, 4)
        h00, h10, h01, h11 = 2 * th**3 - 3 * th**2 + 1, th**3 - 2 * th**2 + th, -2 * th**3 + 3 * th**2, th**3 - th**2
        np.testing.assert_allclose(ours, h00 * y0 + h10 * h * f0 + h01 * y1 + h11 * h * f1, rtol=1e-14, atol=1e-14)


def test_tsit5_dense_matches_factored_polynomials():
    """Tsitouras' b_i(theta), as printed in factored form."""
    P = METHODS["tsit5"].P
    for t in (0.1, 0.37, 0.5, 0.9):
        printed = [
            -1.0530884977290216 * t * (t - 1.3299890189751412) * (t**2 - 1.4364028541716351 * t + 0.7139816917074209),
            0.1017 * t**2 * (t**2 - 2.1966568338249754 * t + 1.2949852507374631),
            2.490627285651252793 * t**2 * (t**2 - 2.38535645472061657 * t + 1.57803468208092486),
            -16.54810288924490272 * (t - 1.21712927295533244) * (t - 0.61620406037800089) * t**2,
            47.37952196281928122 * (t - 1.203071208372362603) * (t - 0.658047292653547382) * t**2,
            -34.87065786149660974 * (t - 1.2) * (t - 0.666666666666666667) * t**2,
            2.5 * (t - 1) * (t - 0.6) * t**2,
        ]
        np.testing.assert_allclose(P @ t ** np.arange(1, 5), printed, rtol=0, atol=1e-13)


def test_dopri8_dense_is_torchdiffeq_quartic():
    """P reproduces torchdiffeq's _interp_fit (quartic through y0, y1, f0, f1, y_mid)."""
    from gqlib.tableaux.dopri8 import _mid

    tab = METHODS["dopri8"]
    rng = np.random.default_rng(1)
    K = rng.standard_normal((14, 5))
    h, y0 = 0.7, rng.standard_normal(5)
    y1 = y0 + h * K.T @ tab.B
    y_mid = y0 + h * K.T @ np.array(_mid)
    f0, f1 = K[0], K[-1]
    a = 2 * h * (f1 - f0) - 8 * (y1 + y0) + 16 * y_mid
    b = h * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * y_mid
    c = h * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * y_mid
    for x in (0.0, 0.2, 0.5, 0.9, 1.0):
        expected = y0 + x * h * f0 + x**2 * c + x**3 * b + x**4 * a
        ours = y0 + h * (K.T @ tab.P) @ x ** np.arange(1, 5)
        np.testing.assert_allclose(ours, expected, rtol=1e-13, atol=1e-13)


def test_dopri8_midpoint_value_is_fifth_order():
    """torchdiffeq's y_mid is a 5th-order value at theta = 1/2, which makes the quartic 4th order."""
    from gqlib.tableaux.dopri8 import _mid

    w, half = weights_of("dopri8"), Fraction(1, 2)
    assert w.exact_order(_mid, 8, half) == 5
    assert w.fails(_mid, 6, half)


def test_dop853_dense_matches_scipy():
    """P (with the 3 extra stages) reproduces scipy's Dop853DenseOutput."""
    scipy_ivp = pytest.importorskip("scipy.integrate")

    def f(t, y):
        return np.array([y[1], -np.sin(y[0]) + 0.3 * np.cos(2 * t)])

    solver = scipy_ivp.DOP853(f, 0.0, np.array([1.0, 0.2]), 10.0, rtol=1e-6, atol=1e-9, first_step=0.4)
    solver.step()
    dense = solver.dense_output()  # fills solver.K_extended with the extra stages
    tab = METHODS["dop853"]
    h, y0 = solver.t - solver.t_old, solver.y_old
    K = solver.K_extended
    assert np.allclose(y0 + h * K[:13].T @ tab.B, solver.y, rtol=1e-14, atol=1e-14)
    for th in (0.0, 0.25, 0.5, 0.8, 1.0):
        ours = y0 + h * (K.T @ tab.P) @ th ** np.arange(1, 8)
        np.testing.assert_allclose(ours, dense(solver.t_old + th * h), rtol=1e-13, atol=1e-13)
    # same stages and error estimators as scipy
    from scipy.integrate._ivp import dop853_coefficients as dc

    np.testing.assert_array_equal(tab.A, dc.A)
    np.testing.assert_array_equal(tab.C, dc.C)
    np.testing.assert_array_equal(tab.E, dc.E5)
    np.testing.assert_array_equal(tab.E_low, dc.E3)


# -- cross-check against torchdiffeq's own tableaux (in a subprocess: torch stays out of this one) --
_TORCHDIFFEQ_DUMP = """
import json
from torchdiffeq._impl import bosh3, fehlberg2, adaptive_heun, dopri8
out = {}
for name, mod, attr in [("bosh3", bosh3, "_BOGACKI_SHAMPINE_TABLEAU"), ("fehlberg2", fehlberg2, "_FEHLBERG2_TABLEAU"),
                        ("adaptive_heun", adaptive_heun, "_ADAPTIVE_HEUN_TABLEAU"), ("dopri8", dopri8, "_DOPRI8_TABLEAU")]:
    t = getattr(mod, attr)
    out[name] = dict(alpha=t.alpha.tolist(), beta=[b.tolist() for b in t.beta], c_sol=t.c_sol.tolist(),
                     c_error=t.c_error.tolist())
out["dopri8"]["mid"] = dopri8._C_mid.tolist()
print(json.dumps(out))
"""


@pytest.mark.skipif(find_spec("torchdiffeq") is None, reason="torchdiffeq not installed")
def test_matches_torchdiffeq_tableaux():
    proc = subprocess.run([sys.executable, "-c", _TORCHDIFFEQ_DUMP], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    ref = json.loads(proc.stdout)
    for name, r in ref.items():
        tab = METHODS[name]
        n = len(r["c_sol"])
        k = len(r["alpha"])  # torchdiffeq evaluates k + 1 stages; the last one at alpha[-1]
        np.testing.assert_allclose(tab.C[1:k + 1], r["alpha"], rtol=1e-15, atol=0)
        for i, beta in enumerate(r["beta"], start=1):
            np.testing.assert_allclose(tab.A[i, :i], beta, rtol=1e-15, atol=1e-17)
        b = np.zeros(n)
        b[: tab.stages] = tab.B
        np.testing.assert_allclose(b, r["c_sol"], rtol=1e-15, atol=1e-17)
        e = np.zeros(n)
        e[: tab.stages] = tab.E
        sign = -1.0 if name == "adaptive_heun" else 1.0  # torchdiffeq stores b_hat - b there
        np.testing.assert_allclose(sign * e, r["c_error"], rtol=1e-14, atol=1e-16)
    from gqlib.tableaux.dopri8 import _mid

    # torchdiffeq evaluates its C_mid polynomials in float64 (with cancellation); gqlib's _mid is the exact
    # value rounded once, so they agree to a few ulps of the polynomials' terms only
    np.testing.assert_allclose(_mid, ref["dopri8"]["mid"], rtol=0, atol=2e-15)


# -- validation ------------------------------------------------------------------------------
def test_tableau_validation_rejects_bad_data():
    F = Fraction
    ok = dict(name="x", c=(F(0), F(1, 2)), a=((), (F(1, 2),)), b=(F(0), F(1)), order=2)
    ButcherTableau(**ok)
    with pytest.raises(ValueError, match="row sum"):
        ButcherTableau(**{**ok, "c": (F(0), F(1, 3))})
    with pytest.raises(ValueError, match="sum\\(b\\)"):
        ButcherTableau(**{**ok, "b": (F(0), F(2))})
    with pytest.raises(ValueError, match="explicit"):
        ButcherTableau(**{**ok, "a": ((), (F(1, 4), F(1, 4)))})
    with pytest.raises(ValueError, match="error_order"):
        ButcherTableau(**{**ok, "b_err": (F(1), F(-1))})
    with pytest.raises(ValueError, match="sum\\(b_err\\)"):
        ButcherTableau(**{**ok, "b_err": (F(1), F(0)), "error_order": 1})
    with pytest.raises(ValueError, match="dense row"):
        ButcherTableau(**{**ok, "dense": ((F(1),), (F(0),))})
    with pytest.raises(ValueError, match="need `b_err`"):
        ButcherTableau(**{**ok, "error_order": 1})
    with pytest.raises(ValueError, match="sum\\(b_err_low\\)"):
        ButcherTableau(**{**ok, "b_err": (F(1), F(-1)), "error_order": 1, "b_err_low": (F(1), F(0))})
    with pytest.raises(ValueError, match="without a dense matrix"):
        ButcherTableau(**{**ok, "dense_c": (F(1),), "dense_a": ((F(0), F(1)),)})
    with pytest.raises(ValueError, match="same length"):
        ButcherTableau(**{**ok, "dense": ((F(1), F(0)), (F(0),))})
