"""Noise approximations: interpolation, derivatives, KL expansion and its projection accuracy."""

import math

import numpy as np
import pytest

from gqlib._backend import to_host_array
from gqlib.sde import BrownianPath, KarhunenLoeveNoise, PiecewiseLinearNoise, SmoothLinearNoise
from gqlib.sde._noise import _uniform_grid


def _fd(noise, ts):
    """Central-difference derivative of noise.W at ts."""
    e = 1e-6
    return (noise.W(ts + e) - noise.W(ts - e)) / (2 * e)


def test_grid_last_cell_and_no_sliver():
    g = _uniform_grid(0.0, 1.0, 0.3)
    np.testing.assert_allclose(g, [0.0, 0.3, 0.6, 0.9, 1.0])
    g = _uniform_grid(0.0, 1.0, 0.1)  # 1/0.1 = 10.000000000000002 must not add a sliver
    assert g.size == 11 and g[-1] == 1.0
    with pytest.raises(ValueError, match="`h`"):
        _uniform_grid(0.0, 1.0, -0.1)


def test_piecewise_linear():
    p = BrownianPath(0.0, 1.0, shape=(3,), seed=5)
    n = PiecewiseLinearNoise(p, 0.3)
    np.testing.assert_allclose(n.tstops, [0.3, 0.6, 0.9])
    np.testing.assert_allclose(n.W(n.grid), p(n.grid), rtol=0, atol=1e-15)
    for a, b in zip(n.grid[:-1], n.grid[1:], strict=True):
        slope = (p(b) - p(a)) / (b - a)
        for t in (a, 0.5 * (a + b), np.nextafter(b, a)):
            np.testing.assert_allclose(n.dW(float(t)), slope, rtol=1e-12)
    # right-continuous at interior grid points; the last cell owns t1
    np.testing.assert_array_equal(n.dW(0.3), n.slopes[1])
    np.testing.assert_array_equal(n.dW(1.0), n.slopes[-1])
    ts = np.linspace(0.01, 0.99, 17)
    np.testing.assert_allclose(n.dW(ts), np.stack([n.dW(float(t)) for t in ts]), rtol=1e-15)
    np.testing.assert_allclose(n.W(ts), np.stack([n.W(float(t)) for t in ts]), rtol=1e-14)
    np.testing.assert_allclose(_fd(n, ts[ts % 0.3 > 1e-3]), n.dW(ts[ts % 0.3 > 1e-3]), rtol=1e-7)
    with pytest.raises(TypeError, match="`path`"):
        PiecewiseLinearNoise(np.zeros(3), 0.1)


def test_smooth_linear():
    p = BrownianPath(0.0, 2.0, shape=(2,), seed=6)
    for smoothness in (1, 2, 4):
        n = SmoothLinearNoise(p, 0.25, smoothness)
        assert n.tstops.size == 0
        np.testing.assert_allclose(n.W(n.grid), p(n.grid), rtol=0, atol=1e-15)
        np.testing.assert_array_equal(n.dW(n.grid), 0.0)
        ts = np.linspace(0.013, 1.987, 41)
        np.testing.assert_allclose(_fd(n, ts), n.dW(ts), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(n.dW(ts), np.stack([n.dW(float(t)) for t in ts]), rtol=1e-14)
        # Each cell's integral of dW is its increment (Gauss-Legendre, exact for the polynomial).
        x, w = np.polynomial.legendre.leggauss(smoothness + 3)
        for a, b in zip(n.grid[:-1], n.grid[1:], strict=True):
            q = 0.5 * (b - a) * np.tensordot(w, n.dW(0.5 * (a + b) + 0.5 * (b - a) * x), axes=1)
            np.testing.assert_allclose(q, p(b) - p(a), rtol=1e-12, atol=1e-14)
    # peak speed 11!/(5!^2 4^5) x the chord for the default (smoothness 4)
    n = SmoothLinearNoise(p, 0.25)
    np.testing.assert_allclose(n.dW(0.125), 39916800 / (14400 * 1024) * (p(0.25) - p(0.0)) / 0.25, rtol=1e-13)


def test_kl_formulas_and_sample():
    n = KarhunenLoeveNoise.sample(0.5, 2.5, n_terms=7, shape=(3,), seed=0)
    assert n.xi.shape == (7, 3) and n.shape == (3,) and n.tstops.size == 0
    np.testing.assert_array_equal(n.xi, np.random.default_rng(0).standard_normal((7, 3)))
    np.testing.assert_array_equal(n.W(0.5), 0.0)
    c, t = 2.0, 1.3
    s = (t - 0.5) / c
    om = (np.arange(1, 8) - 0.5) * np.pi
    np.testing.assert_allclose(n.W(t), math.sqrt(2 * c) * (np.sin(om * s) / om) @ n.xi, rtol=1e-14)
    np.testing.assert_allclose(n.dW(t), math.sqrt(2 / c) * np.cos(om * s) @ n.xi, rtol=1e-14)
    ts = np.linspace(0.6, 2.4, 11)
    np.testing.assert_allclose(_fd(n, ts), n.dW(ts), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(n.dW(ts), np.stack([n.dW(float(u)) for u in ts]), rtol=1e-13)
    with pytest.raises(ValueError, match="`n_terms`"):
        KarhunenLoeveNoise.sample(0, 1, 0)
    with pytest.raises(ValueError, match="`t1` must be after `t0`"):
        KarhunenLoeveNoise(1.0, 0.0, np.ones((2, 1)))


def test_kl_projection_is_exact_at_full_depth():
    """from_path at levels = depth equals an independent quadrature of the integrated-by-parts form

    xi_n = sqrt(2/c) omega_n int_0^1 sin(omega_n s) W(t0 + c s) ds  (W(t0) = 0, cos(omega_n) = 0),
    with W linear on each leaf: 6-point Gauss-Legendre per leaf is exact to rounding."""
    p = BrownianPath(0.5, 2.5, shape=(3,), seed=8, tol=2.0 * 2**-9)
    N = 12
    xi = KarhunenLoeveNoise.from_path(p, N, levels=p.depth).xi
    c = 2.0
    m = 2**p.depth
    x, w = np.polynomial.legendre.leggauss(6)
    s = (np.arange(m)[:, None] + 0.5 * (x + 1)) / m  # (m, 6) nodes in s
    W = p(0.5 + c * s.ravel()).reshape(m * 6, 3)
    om = (np.arange(1, N + 1) - 0.5) * np.pi
    weights = np.tile(w / (2 * m), m)
    ref = math.sqrt(2 / c) * om[:, None] * ((np.sin(np.outer(om, s.ravel())) * weights) @ W)
    np.testing.assert_allclose(xi, ref, rtol=0, atol=1e-11)


def test_kl_projection_accuracy_matches_prediction():
    """Coarse grids miss the unresolved bridge: sd(xi_n error) = omega_n / (sqrt(12) 2**levels)."""
    M = 2000
    p = BrownianPath(0.0, 3.0, shape=(M,), seed=5, tol=3.0 * 2**-12)
    N = 30
    exact = KarhunenLoeveNoise.from_path(p, N, levels=12).xi
    coarse = KarhunenLoeveNoise.from_path(p, N, levels=8).xi
    # The difference is the bridge between levels 8 and 12: variance factor 1 - 4**-4.
    pred = (np.arange(N) + 0.5) * np.pi / (math.sqrt(12) * 2**8) * math.sqrt(1 - 4.0**-4)
    ratio = (coarse - exact).std(axis=1) / pred
    # sd of a sample sd ~ 1/sqrt(2M) = 1.6%
    assert np.all(np.abs(ratio - 1.0) < 0.075), ratio
    assert KarhunenLoeveNoise.from_path(p, 20).xi.shape == (20, M)
    with pytest.raises(ValueError, match="`levels`"):
        KarhunenLoeveNoise.from_path(p, 4, levels=20)


def test_kl_projection_law_and_truncation_error():
    """xi from a path are iid N(0,1); E int (W - W_N)^2 dt = c^2 sum_{n>N} omega_n^-2."""
    M = 2500
    c = 2.0
    p = BrownianPath(0.0, c, shape=(M,), seed=21, tol=c * 2**-14)
    N = 16
    n = KarhunenLoeveNoise.from_path(p, N)
    xi = n.xi
    assert np.all(np.abs(xi.mean(axis=1)) < 4.5 / math.sqrt(M))
    cov = np.cov(xi)
    assert np.all(np.abs(np.diag(cov) - 1) < 4.5 * math.sqrt(2 / M))
    assert np.all(np.abs(cov[~np.eye(N, dtype=bool)]) < 4.5 / math.sqrt(M))
    ts = (np.arange(512) + 0.5) * c / 512  # midpoint rule in t
    sq = np.mean((n.W(ts) - p(ts)) ** 2, axis=0) * c
    om = (np.arange(N + 1, 200000) - 0.5) * np.pi
    expect = c**2 * np.sum(om**-2.0)
    # The per-path integral is a weighted chi-square; its mean over M paths is within ~5% here.
    assert abs(sq.mean() / expect - 1) < 0.1, (sq.mean(), expect)


@pytest.mark.parametrize("kind", ["pl", "smooth", "kl"])
def test_namespace_conversion(kind):
    torch = pytest.importorskip("torch")
    p = BrownianPath(0.0, 1.0, shape=(4,), seed=2)
    n = {"pl": lambda: PiecewiseLinearNoise(p, 0.1), "smooth": lambda: SmoothLinearNoise(p, 0.1),
         "kl": lambda: KarhunenLoeveNoise.from_path(p, 9)}[kind]()
    for dtype in (torch.float32, torch.float64):
        y = torch.zeros(4, dtype=dtype)
        for fn in (n.dW, n.W):
            out = fn(0.37, like=y)
            assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.shape == (4,)
            ref = fn(0.37)
            tol = (1e-6 if dtype == torch.float32 else 1e-13) * np.abs(ref).max()
            np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=tol)
    assert n.dW(np.float64(0.37), like=np.zeros(4, dtype=np.float32)).dtype == np.float32
    # a 0-d tensor time is a scalar time
    np.testing.assert_allclose(n.dW(torch.tensor(0.37, dtype=torch.float64)).numpy(), n.dW(0.37))


def test_to_host_array_is_duck_typed():
    class Graph:
        """An array-like with an autograd graph to leave (duck-typed ``detach``)."""

        def __init__(self, a):
            self.a = a

        def detach(self):
            return self.a

    np.testing.assert_array_equal(to_host_array(Graph(np.arange(3.0))), [0.0, 1.0, 2.0])
    assert to_host_array([1.0, 2.0]).shape == (2,)
    torch = pytest.importorskip("torch")
    x = torch.ones(3, dtype=torch.float64, requires_grad=True)
    np.testing.assert_array_equal(to_host_array(2 * x), [2.0, 2.0, 2.0])
    if torch.cuda.is_available():
        np.testing.assert_array_equal(to_host_array(2 * x.cuda()), [2.0, 2.0, 2.0])


_KINDS = {"pl": lambda p: PiecewiseLinearNoise(p, 0.25), "smooth": lambda p: SmoothLinearNoise(p, 0.25),
          "kl": lambda p: KarhunenLoeveNoise.from_path(p, 6)}


@pytest.mark.parametrize("kind", sorted(_KINDS))
def test_outside_span_and_nan_raise(kind):
    """No silent clamping: a time past either end (beyond rounding) or NaN raises."""
    n = _KINDS[kind](BrownianPath(0.5, 1.5, shape=(2,), seed=4))
    for fn in (n.dW, n.W):
        for bad in (1.5 + 1e-9, 0.4, float("nan"), np.float64(2.0)):
            with pytest.raises(ValueError, match=r"`t` = .* is outside the noise's interval "
                                                 r"\[0.5, 1.5\]"):
                fn(bad)
        with pytest.raises(ValueError, match=r"`t` = nan is outside"):
            fn(np.array([0.7, np.nan]))
        with pytest.raises(ValueError, match=r"`t` = 1.75 is outside"):
            fn(np.array([0.7, 1.75, 0.1]))
        # one ulp past an end (a solver's nudge) is the boundary value
        np.testing.assert_array_equal(fn(np.nextafter(1.5, 2.0)), fn(1.5))
        np.testing.assert_array_equal(fn(np.nextafter(0.5, 0.0)), fn(0.5))


def test_wong_zakai_solve_past_the_path_raises():
    import gqlib
    from gqlib.sde import wong_zakai

    path = BrownianPath(0.0, 1.0, shape=(3,), seed=1)
    for noise in (PiecewiseLinearNoise(path, 0.25), KarhunenLoeveNoise.from_path(path, 5)):
        field = wong_zakai(lambda t, y: -y, lambda t, y: 0.5 * y, noise)
        ok = gqlib.solve(field, np.ones(3), [0.0, 1.0], tstops=field.tstops, rtol=1e-6, atol=1e-6)
        assert np.all(np.isfinite(ok.y))
        with pytest.raises(ValueError, match=r"`t` = .* is outside the noise's interval \[0.0, 1.0\]"):
            gqlib.solve(field, np.ones(3), [0.0, 1.5], tstops=field.tstops, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(_KINDS))
def test_values_never_alias_buffers(kind):
    p = BrownianPath(0.0, 1.0, shape=(3,), seed=5)
    n = _KINDS[kind](p)
    for fn in (n.dW, n.W):
        ref = fn(0.3).copy()
        out = fn(0.3)
        out[...] = 123.0
        np.testing.assert_array_equal(fn(0.3), ref)
        vec = fn(np.array([0.3, 0.6]))
        vec[...] = 7.0
        np.testing.assert_array_equal(fn(0.3), ref)
    for name in ("grid", "values", "slopes", "increments", "xi", "tstops"):
        buf = getattr(n, name, None)
        if buf is not None and buf.size:
            with pytest.raises(ValueError, match="read-only"):
                buf[...] = 0.0


def test_aliasing_torch_and_inputs():
    torch = pytest.importorskip("torch")
    n = PiecewiseLinearNoise(BrownianPath(0.0, 1.0, shape=(3,), seed=5), 0.25)
    for dtype in (torch.float64, torch.float32):
        y = torch.zeros(3, dtype=dtype)
        ref = n.dW(0.3, like=y).clone()
        n.dW(0.3, like=y).mul_(0.0)
        torch.testing.assert_close(n.dW(0.3, like=y), ref, rtol=0, atol=0)
    xi = np.ones((4, 2))
    kl = KarhunenLoeveNoise(0.0, 1.0, xi)
    xi[...] = 5.0  # the caller's array stays writable and the noise keeps its own copy
    np.testing.assert_array_equal(kl.xi, 1.0)
