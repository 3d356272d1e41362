"""Tests for gqlib.quadrature: Gauss-Legendre rules against 40-digit references, across regimes."""

from __future__ import annotations

import doctest
import math
import os
import subprocess
import sys
from fractions import Fraction

import mpmath
import numpy as np
import pytest

from gqlib.quadrature import (
    CACHE_MAX,
    CLOSED_FORM_MAX,
    NEWTON_MAX,
    PARALLEL_MIN,
    _asymptotic,
    _bessel,
    _dd,
    _gauss_legendre,
    _rules,
    composite,
    gauss_legendre,
    integrate,
    map_to_interval,
)
from gqlib.quadrature._newton import newton_refine

EPS = np.finfo(np.float64).eps
DPS = 40

# Every threshold with both of its sides: the issue's list plus this module's own boundaries
# (closed forms | Newton | asymptotics with all terms | v^6 terms dropped at _DROP_V6 = 1000).
N_FAST = sorted({*range(1, 11), 20, 60, 61, 99, 100, 101, 150, 300, 999, 1000, 1001,
                 CLOSED_FORM_MAX, CLOSED_FORM_MAX + 1, NEWTON_MAX, NEWTON_MAX + 1,
                 _asymptotic._DROP_V6 - 1, _asymptotic._DROP_V6})
# Larger boundaries (cache, parallel kernel, v^4 terms dropped), against double-double Newton.
N_FAST_DD = sorted({CACHE_MAX, CACHE_MAX + 1, PARALLEL_MIN - 1, PARALLEL_MIN,
                    _asymptotic._DROP_V4 - 1, _asymptotic._DROP_V4})
N_SLOW = [10**4, 10**5, 10**6]


# ---------------------------------------------------------------- 40-digit mpmath reference

def _mp_legendre(n: int, x):
    """(P_n(x), P_n'(x)) by the three-term recurrence in mpmath."""
    p0, p1 = mpmath.mpf(1), x
    d0, d1 = mpmath.mpf(0), mpmath.mpf(1)
    for k in range(1, n):
        p0, p1 = p1, ((2 * k + 1) * x * p1 - k * p0) / (k + 1)
        d0, d1 = d1, d0 + (2 * k + 1) * p0
    return p1, d1


def _mp_reference(n: int, x0: float) -> tuple[float, float]:
    """The 40-digit root of P_n next to the float64 node x0 and its weight (mpf): Newton on the
    recurrence, independent of gqlib's code."""
    with mpmath.workdps(DPS):
        x = mpmath.mpf(x0)
        for _ in range(2):  # from a float64 node: 1e-16 -> ~n^2 1e-32 -> below 1e-40
            p, d = _mp_legendre(n, x)
            y, x = x, x - p / d
        # weight at the point where P' was evaluated (within 1e-30 of the root)
        return x, 2 / ((1 - y * y) * d * d)


def _sample(n: int) -> np.ndarray:
    """Indices of the upper half (x >= 0) to check: all for n <= 150, else the ends, the middle
    and an even spread."""
    half = np.arange(n // 2, n)
    if n <= 150:
        return half
    ends = n - 1 - np.arange(6)
    middle = n // 2 + np.arange(4)
    spread = np.linspace(n // 2, n - 1, 8).astype(int)
    return np.unique(np.concatenate([ends, middle, spread]))


def _errors_mp(n: int):
    x, w = gauss_legendre(n)
    node_err, weight_err = [], []
    for i in _sample(n):
        xr, wr = _mp_reference(n, float(x[i]))
        node_err.append(abs(float(xr - mpmath.mpf(float(x[i])))))
        weight_err.append(abs(float((mpmath.mpf(float(w[i])) - wr) / wr)))
    return np.array(node_err) / EPS, np.array(weight_err) / EPS


@pytest.mark.parametrize("n", N_FAST)
def test_against_mpmath(n):
    node_err, weight_err = _errors_mp(n)
    assert node_err.max() <= 4.0, f"node error {node_err.max():.2f} eps"
    assert weight_err.max() <= (40.0 if n <= 300 else 100.0), \
        f"weight error {weight_err.max():.2f} eps"
    assert np.mean(weight_err) <= 2.0, "weights should typically be within a few eps"


@pytest.mark.parametrize("n", [*range(CLOSED_FORM_MAX + 1, 21), 50, NEWTON_MAX])
def test_newton_regime_is_correctly_rounded(n):
    # Double-double Newton: every node and weight is the float64 rounding of the exact value.
    node_err, weight_err = _errors_mp(n)
    assert node_err.max() <= 0.5 and weight_err.max() <= 0.5


def _errors_ref(n: int, idx: np.ndarray):
    x, w = gauss_legendre(n)
    xr, wr = newton_refine(n, x[idx])  # double-double Newton on the recurrence, O(n) per node
    return np.abs(xr - x[idx]) / EPS, np.abs(wr - w[idx]) / wr / EPS, x, w


@pytest.mark.parametrize("n", N_FAST_DD)
def test_boundaries_against_extended_precision(n):
    idx = np.unique(np.concatenate([n - 1 - np.arange(3), n // 2 + np.arange(3),
                                    np.linspace(n // 2, n - 1, 5).astype(int)]))
    node_err, weight_err, x, w = _errors_ref(n, idx)
    assert node_err.max() <= 4.0 and weight_err.max() <= 100.0
    assert np.mean(weight_err) <= 4.0
    assert abs(math.fsum(w) - 2.0) <= 100 * EPS * 2.0


@pytest.mark.slow
@pytest.mark.parametrize("n", N_SLOW)
def test_large_n_against_extended_precision(n):
    idx = np.unique(np.concatenate([n - 1 - np.arange(8), n // 2 + np.arange(6),
                                    np.linspace(n // 2, n - 1, 12).astype(int)]))
    node_err, weight_err, x, w = _errors_ref(n, idx)
    assert node_err.max() <= 4.0 and weight_err.max() <= 100.0
    assert np.mean(weight_err) <= 4.0
    assert abs(math.fsum(w) - 2.0) <= 100 * EPS * 2.0
    if n == 10**4:  # and an mpmath spot check that does not share the double-double code
        for i in (n - 1, n - 2, n // 2, (3 * n) // 4):
            xr, wr = _mp_reference(n, float(x[i]))
            assert abs(float(xr) - x[i]) <= 4 * EPS
            assert abs(float((wr - mpmath.mpf(float(w[i]))) / wr)) <= 100 * EPS


@pytest.mark.slow
def test_ten_million_nodes():
    n = 10**7
    x, w = gauss_legendre(n)
    assert x.shape == w.shape == (n,) and x.dtype == np.float64
    assert np.array_equal(x, -x[::-1]) and np.array_equal(w, w[::-1])
    assert np.all(np.diff(x) > 0) and x[n // 2 - 1] < 0 < x[n // 2]
    assert abs(math.fsum(w) - 2.0) <= 100 * EPS * 2.0
    idx = np.array([n - 1, n - 2, n // 2, (3 * n) // 4])
    xr, wr = newton_refine(n, x[idx])
    assert np.max(np.abs(xr - x[idx])) <= 4 * EPS
    assert np.max(np.abs(wr - w[idx]) / wr) <= 100 * EPS


# ---------------------------------------------------------------- structure and sums

@pytest.mark.parametrize("n", [*range(1, 302), 999, 1000, 1001, 4096, 4097, 12345, 200001])
def test_structure(n):
    x, w = gauss_legendre(n)
    assert x.shape == w.shape == (n,)
    assert x.dtype == w.dtype == np.float64
    assert np.array_equal(x, -x[::-1]), "nodes must be exactly antisymmetric"
    assert np.array_equal(w, w[::-1]), "weights must be exactly symmetric"
    if n % 2:
        assert x[n // 2] == 0.0
    assert np.all(np.diff(x) > 0) and -1 < x[0] and x[-1] < 1
    assert np.all(w > 0)
    total = math.fsum(w)
    assert abs(total - 2.0) <= (1e-14 if n <= 300 else 100 * EPS * 2.0)


@pytest.mark.parametrize("n", [1, 2, 5, 64, 100, 101, 300, 1000, 5000])
@pytest.mark.parametrize("a, b", [(0.0, 1.0), (-3.0, 7.5), (1e6, 1e6 + 1e-3), (-1e300, 1e300)])
def test_mapped_weights_sum_to_length(n, a, b):
    t, v = gauss_legendre(n, a, b)
    length = 0.5 * b - 0.5 * a  # half-length: b - a may overflow
    tol = (1e-14 if n <= 300 else 100 * EPS) * 2.0
    assert abs(math.fsum(v / length) - 2.0) <= tol
    assert np.all(np.diff(t) >= 0) and a <= t[0] and t[-1] <= b


@pytest.mark.parametrize("n", range(1, NEWTON_MAX + 1))
def test_exact_on_monomials(n):
    # sum w x^j = 2/(j+1) for even j <= 2n-1 (odd: 0). x^j has relative error ~ j eps.
    x, w = gauss_legendre(n)
    for j in range(2 * n):
        q = math.fsum(w * x**j)
        if j % 2:
            assert abs(q) <= 2 * EPS, (j, q)
        else:
            exact = 2.0 / (j + 1)
            assert abs(q - exact) <= (j + 4) * EPS * exact, (j, q)


@pytest.mark.parametrize("n", [101, 150, 300, 1000])
def test_legendre_polynomials_integrate_to_zero(n):
    # Exactness beyond n = 100 without the ill-conditioned monomials: int P_m = 0 for
    # 1 <= m <= 2n - 1 (odd m vanish by symmetry; check even m).
    x, w = gauss_legendre(n)
    p0, p1 = np.ones_like(x), x.copy()
    worst = 0.0
    for m in range(1, 2 * n):
        if m % 2 == 0:
            worst = max(worst, abs(math.fsum(w * p1)))
        p0, p1 = p1, ((2 * m + 1) * x * p1 - m * p0) / (m + 1)
    assert worst <= 16 * EPS


@pytest.mark.parametrize("n", [101, 150, 300, 1000, 5000])
def test_smooth_functions(n):
    x, w = gauss_legendre(n)
    assert abs(math.fsum(w * np.exp(x)) - (math.e - 1 / math.e)) <= 8 * EPS
    omega = n / 4  # oscillatory, still resolved by the rule
    exact = 2 * math.sin(omega) / omega
    assert abs(math.fsum(w * np.cos(omega * x)) - exact) <= 16 * EPS
    exact = 0.4 * math.atan(5.0)  # Runge's function: converges like 1.22^(-2n)
    assert abs(math.fsum(w / (1 + 25 * x * x)) - exact) <= 16 * EPS
    t, v = gauss_legendre(n, 0.0, math.pi)
    assert abs(math.fsum(v * np.sin(t)) - 2.0) <= 16 * EPS


# ---------------------------------------------------------------- regimes and kernels

def test_thresholds_are_ordered():
    assert (CLOSED_FORM_MAX, NEWTON_MAX, CACHE_MAX, PARALLEL_MIN) == (3, 100, 4096, 10_000)
    assert NEWTON_MAX < _asymptotic._DROP_V6 < _asymptotic._DROP_V4


@pytest.mark.parametrize("n", [NEWTON_MAX + 1, 150, PARALLEL_MIN - 1, PARALLEL_MIN, 4097, 20001])
def test_serial_and_parallel_kernels_agree(n):
    xs, ws = np.empty(n), np.empty(n)
    xp, wp = np.empty(n), np.empty(n)
    _asymptotic.fill_serial(n, xs, ws)
    _asymptotic.fill_parallel(n, xp, wp)
    assert np.array_equal(xs, xp) and np.array_equal(ws, wp)


@pytest.mark.parametrize("n", [30, 61, NEWTON_MAX])
def test_asymptotic_formulas_are_close_below_their_regime(n):
    # The Newton regime starts from Bogaert's values: they must be good guesses even below 100.
    x, w = gauss_legendre(n)
    for k in range(1, n // 2 + 1):
        xk, wk = _asymptotic.bogaert_node(n, k)
        assert abs(xk - x[n - k]) <= 1e-12 and abs(wk - w[n - k]) <= 1e-11 * w[n - k]


def test_newton_refine_recovers_perturbed_nodes():
    n = 2000
    x, w = gauss_legendre(n)
    idx = np.array([n - 1, n - 5, n // 2, 3 * n // 4])
    xr, wr = newton_refine(n, x[idx] * (1 + 1e-9), f64_steps=10)
    assert np.max(np.abs(xr - x[idx])) <= 2 * EPS
    assert np.max(np.abs(wr - w[idx]) / w[idx]) <= 8 * EPS


@pytest.mark.parametrize("n", [2, 3])
def test_closed_forms_are_correctly_rounded(n):
    node_err, weight_err = _errors_mp(n)
    assert node_err.max() <= 0.5 and weight_err.max() <= 0.5


def test_plain_python_path_matches_jitted(tmp_path):
    # GQLIB_DISABLE_JIT=1 runs every kernel as Python: the same arithmetic, so the same rules.
    ns = [4, 17, 60, NEWTON_MAX, NEWTON_MAX + 1, 257, PARALLEL_MIN + 1]
    out = tmp_path / "plain.npz"
    code = ("import numpy as np; from gqlib.quadrature import gauss_legendre; "
            f"np.savez({str(out)!r}, **{{str(n): np.concatenate(gauss_legendre(n)) "
            f"for n in {ns}}})")
    env = dict(os.environ, GQLIB_DISABLE_JIT="1")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    plain = np.load(out)
    for n in ns:
        ref = np.concatenate(gauss_legendre(n))
        scale = np.where(ref == 0.0, 1.0, np.abs(ref))
        assert np.max(np.abs(plain[str(n)] - ref) / scale) <= 2 * EPS, n


# ---------------------------------------------------------------- Bessel tables and double-double

@pytest.mark.parametrize("k", [*range(1, 45), 100, 1234, 10**5, 5 * 10**6])
def test_bessel_zeros_and_j1_squared(k):
    with mpmath.workdps(40):
        j = mpmath.besseljzero(0, k)
        delta = j - mpmath.pi * (k - mpmath.mpf(1) / 4)
        b = mpmath.besselj(1, j) ** 2
    d = _bessel.j0_zero_offset(k)
    assert abs(d - float(delta)) <= 2 * EPS * abs(float(delta))
    nu = math.pi * (k - 0.25) + d
    assert abs(nu - float(j)) <= EPS * float(j)
    got = _bessel.j1_squared_at_j0_zero(k, nu)
    assert abs(got - float(b)) <= 4 * EPS * float(b)


def test_bessel_series_coefficients():
    # T(j) coefficients of DLMF 10.18.17 (mu = 0) and McMahon's, exactly as stated.
    for i, c in enumerate(_bessel._MODULUS, start=1):
        exact = Fraction(1)
        for m in range(1, i + 1):
            exact *= Fraction(2 * m - 1, 2 * m) * Fraction(-(2 * m - 1) ** 2, 4)
        assert c == float(exact)
    assert _bessel._MCMAHON[:4] == (1 / 8, -31 / 384, 3779 / 15360, -6277237 / 3440640)


def test_double_double_transformations_are_exact():
    rng = np.random.default_rng(0)
    for a, b in rng.standard_normal((200, 2)) * np.exp(rng.uniform(-30, 30, (200, 2))):
        a, b = float(a), float(b)
        s, e = _dd.two_sum(a, b)
        assert Fraction(s) + Fraction(e) == Fraction(a) + Fraction(b)
        p, e = _dd.two_prod(a, b)
        assert Fraction(p) + Fraction(e) == Fraction(a) * Fraction(b)
    third = _dd.dd_div_d(1.0, 0.0, 3.0)
    assert abs(Fraction(third[0]) + Fraction(third[1]) - Fraction(1, 3)) < Fraction(1, 10**31)
    assert _dd.dd_div_to_d(2.0, 0.0, 3.0, 0.0) == 2.0 / 3.0
    assert _dd.dd_div_to_d(1.0, 1e-17, 1.0, 0.0) == 1.0


# ---------------------------------------------------------------- cache and dtypes

def test_cache_returns_fresh_arrays():
    x1, w1 = gauss_legendre(17)
    x1[:] = 0.0
    w1[:] = 0.0
    x2, w2 = gauss_legendre(17)
    assert x2.flags.writeable and np.all(w2 > 0) and x2[0] < 0


def test_cache_is_per_dtype():
    _gauss_legendre._cached.cache_clear()
    for _ in range(3):
        gauss_legendre(12)
        gauss_legendre(12, dtype=np.float32)
    info = _gauss_legendre._cached.cache_info()
    assert info.misses == 2 and info.hits >= 4
    x64, w64 = gauss_legendre(12)
    x32, w32 = gauss_legendre(12, dtype="float32")
    assert x32.dtype == w32.dtype == np.float32
    assert np.array_equal(x32, x64.astype(np.float32)) and np.array_equal(x32, -x32[::-1])
    t32, v32 = gauss_legendre(12, 0.0, 3.0, dtype=np.float32)
    t64, v64 = gauss_legendre(12, 0.0, 3.0)
    assert np.array_equal(t32, t64.astype(np.float32)) and v32.dtype == np.float32


def test_uncached_sizes_match_recomputation():
    n = CACHE_MAX + 1
    x1, w1 = gauss_legendre(n)
    x2, w2 = gauss_legendre(n)
    assert x1 is not x2 and np.array_equal(x1, x2) and np.array_equal(w1, w2)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("n, exc", [(0, ValueError), (-3, ValueError), (2.5, TypeError),
                                    ("4", TypeError), (True, TypeError), (4.0, TypeError),
                                    (None, TypeError), (np.bool_(True), TypeError)])
def test_invalid_n(n, exc):
    with pytest.raises(exc, match="`n`"):
        gauss_legendre(n)
    with pytest.raises(exc, match="`n`"):
        composite(n, [0.0, 1.0])
    with pytest.raises(exc, match="`n`"):
        integrate(np.sin, 0.0, 1.0, n)


def test_numpy_integer_n_accepted():
    x, _ = gauss_legendre(np.int32(5))
    assert x.shape == (5,)


@pytest.mark.parametrize("a, b, name", [(1.0, 1.0, "`a` must be less"), (2.0, 1.0, "`a` must be less"),
                                        (np.nan, 1.0, "`a`"), (0.0, np.inf, "`b`"),
                                        (-np.inf, 0.0, "`a`"), (0.0, np.nan, "`b`")])
def test_invalid_bounds(a, b, name):
    with pytest.raises(ValueError, match=name):
        gauss_legendre(4, a, b)
    with pytest.raises(ValueError, match=name):
        integrate(np.sin, a, b, 4)
    with pytest.raises(ValueError, match=name):
        map_to_interval([0.0], [2.0], a, b)


@pytest.mark.parametrize("a", ["0", 1j, None, True])
def test_non_real_bounds(a):
    with pytest.raises(TypeError, match="`a`"):
        gauss_legendre(4, a, 1.0)


def test_invalid_dtype():
    with pytest.raises(ValueError, match="`dtype`"):
        gauss_legendre(4, dtype=np.int64)
    with pytest.raises(TypeError, match="`dtype`"):
        gauss_legendre(4, dtype="not a dtype")


# ---------------------------------------------------------------- map, composite, integrate

def test_map_to_interval_matches_direct_rule():
    x, w = gauss_legendre(9)
    t, v = map_to_interval(x, w, -2.0, 5.0)
    t2, v2 = gauss_legendre(9, -2.0, 5.0)
    assert np.array_equal(t, t2) and np.array_equal(v, v2)
    with pytest.raises(ValueError, match="same shape"):
        map_to_interval(x, w[:-1], 0.0, 1.0)


def test_composite_exact_on_piecewise_polynomials():
    bp = np.array([-1.0, -0.2, 0.5, 0.75, 2.0])
    n = 3
    t, v = composite(n, bp)
    assert t.shape == v.shape == (n * (len(bp) - 1),)
    assert np.all(np.diff(t) > 0)
    for i in range(len(bp) - 1):
        seg = t[i * n:(i + 1) * n]
        assert np.all((bp[i] < seg) & (seg < bp[i + 1]))
    # |t - 0.5|^5 is a polynomial of degree 5 = 2n - 1 on each piece
    exact = ((0.5 + 1.0) ** 6 + 1.5 ** 6) / 6
    assert abs(math.fsum(v * np.abs(t - 0.5) ** 5) - exact) <= 8 * EPS * exact
    assert abs(math.fsum(v) - 3.0) <= 4 * EPS
    t32, v32 = composite(n, bp, dtype=np.float32)
    assert t32.dtype == np.float32 and np.array_equal(t32, t.astype(np.float32))


@pytest.mark.parametrize("bp, match", [([0.0], "at least 2"), ([[0.0, 1.0]], "1-D"),
                                       ([0.0, 1.0, 1.0], r"breakpoints\[2\] = 1.0 is not after"),
                                       ([0.0, np.nan], "finite"), (["a", "b"], "real")])
def test_composite_invalid_breakpoints(bp, match):
    with pytest.raises((ValueError, TypeError), match=match):
        composite(3, bp)


def test_integrate():
    assert abs(integrate(np.exp, 0.0, 1.0, 12) - (math.e - 1)) <= 4 * EPS
    assert integrate(lambda t: t**3, 0.0, 2.0, 2) == pytest.approx(4.0, rel=4 * EPS)
    vec = integrate(lambda t: np.stack([np.ones_like(t), t], axis=1), 1.0, 3.0, 3)
    assert vec.shape == (2,) and np.allclose(vec, [2.0, 4.0], rtol=4 * EPS, atol=0)
    # composite: a kink at 0.5 is integrated exactly when it is a breakpoint
    kink = integrate(lambda t: np.abs(t - 0.5), 0.0, 1.0, 1, intervals=2)
    assert kink == pytest.approx(0.25, rel=4 * EPS)
    assert isinstance(integrate(np.sin, 0.0, 1.0, 3), float)


def test_integrate_rejects_unvectorised_f():
    with pytest.raises(ValueError, match="`f` must be vectorised"):
        integrate(lambda t: 1.0, 0.0, 1.0, 4)
    with pytest.raises(ValueError, match="`f` must be vectorised"):
        integrate(lambda t: t[:2], 0.0, 1.0, 4)
    with pytest.raises(ValueError, match="`intervals`"):
        integrate(np.sin, 0.0, 1.0, 4, intervals=0)


@pytest.mark.parametrize("module", [_gauss_legendre, _rules])
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
