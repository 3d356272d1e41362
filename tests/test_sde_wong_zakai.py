"""The Wong-Zakai random ODE solved by gqlib.solve converges to the Stratonovich SDE.

Theory (Wong & Zakai 1965; Kloeden & Platen 1992, 6.1; Ikeda & Watanabe 1989, VI.7): piecewise-linear
noise of width h gives mean-square error O(h^(1/2)) in general and O(h) at grid points for scalar
noise; the KL expansion truncated at N terms gives O((c/N)^(1/2)). References are fine Stratonovich
solves (midpoint, strong order 1 for commutative noise) on the same BrownianPath. Rates are Monte
Carlo estimates (fixed seeds) held to 0.2 (see test_sde_solvers.py).
"""

import numpy as np
import pytest

import gqlib
from gqlib.sde import (
    BrownianPath,
    KarhunenLoeveNoise,
    PiecewiseLinearNoise,
    SmoothLinearNoise,
    ito_to_stratonovich,
    sdeint,
    wong_zakai,
)

RATE_TOL = 0.2
RTOL = 1e-9


def slope(x, err):
    return float(np.polyfit(np.log(x), np.log(err), 1)[0])


def ode(field, y0, t, method="dop853"):
    return gqlib.solve(field, y0, t, method=method, rtol=RTOL, atol=RTOL, tstops=field.tstops).y


@pytest.mark.parametrize("noise_cls", [PiecewiseLinearNoise, SmoothLinearNoise])
def test_gbm_exact_at_grid_points(noise_cls):
    """dX = mu X dt + s X o dW: along either polygon the ODE solution is exp(mu t + s W_approx(t)),
    which equals the exact Stratonovich solution exp(mu t + s W(t)) wherever W_approx = W."""
    M, mu, s = 40, 0.5, 0.8
    path = BrownianPath(0.0, 1.0, shape=(M,), seed=7)
    noise = noise_cls(path, 2**-4)
    field = wong_zakai(lambda t, y: mu * y, lambda t, y: s * y, noise)
    ys = ode(field, np.ones(M), noise.grid)
    exact = np.exp(mu * noise.grid[:, None] + s * path(noise.grid))
    np.testing.assert_allclose(ys, exact, rtol=1e-7)


def test_gbm_scalar_noise_vector_state():
    M = 30
    mu, s = np.array([0.2, -0.4, 0.1]), np.array([0.5, 1.0, -0.7])
    path = BrownianPath(0.0, 2.0, shape=(M, 1), seed=8)
    noise = PiecewiseLinearNoise(path, 0.125)
    field = wong_zakai(lambda t, y: mu * y, lambda t, y: s * y, noise, "scalar")
    ys = ode(field, np.ones((M, 3)), noise.grid)
    exact = np.exp(mu * noise.grid[:, None, None] + s * path(noise.grid))
    np.testing.assert_allclose(ys, exact, rtol=1e-7)


@pytest.fixture(scope="module")
def nonlinear():
    """dX = -X dt + sin(X) o dW, 100 paths, and its fine Stratonovich solution at t = k/4."""
    M = 100
    path = BrownianPath(0.0, 1.0, shape=(M,), seed=11)
    def drift(t, y):
        return -y
    def diffusion(t, y):
        return np.sin(y)
    y0 = np.ones(M)
    tout = np.linspace(0.0, 1.0, 5)
    ref = sdeint(drift, diffusion, y0, tout, path, method="midpoint", dt=2**-13)
    return path, drift, diffusion, y0, tout, ref


@pytest.mark.parametrize("noise_cls", [PiecewiseLinearNoise, SmoothLinearNoise])
def test_scalar_noise_rate_one_at_grid_points(nonlinear, noise_cls):
    path, drift, diffusion, y0, tout, ref = nonlinear
    hs = [2.0**-k for k in range(3, 8)]
    errs = []
    for h in hs:
        ys = ode(wong_zakai(drift, diffusion, noise_cls(path, h)), y0, tout)
        errs.append(np.sqrt(np.mean((ys[1:] - ref[1:]) ** 2)))
    # measured: 1.02 (piecewise linear), 1.01 (smooth)
    assert abs(slope(hs, errs) - 1.0) <= RATE_TOL, errs
    assert errs[-1] < 1e-3


def test_karhunen_loeve_rate_half(nonlinear):
    path, drift, diffusion, y0, tout, ref = nonlinear
    Ns = [8, 16, 32, 64, 128]
    errs = []
    for N in Ns:
        ys = ode(wong_zakai(drift, diffusion, KarhunenLoeveNoise.from_path(path, N)), y0, tout)
        errs.append(np.sqrt(np.mean((ys[1:] - ref[1:]) ** 2)))
    # measured: -0.50; RMS error ~ 0.2 (c/N)^(1/2)
    assert abs(slope(Ns, errs) + 0.5) <= RATE_TOL, errs


A = np.array([[0.0, -0.7], [0.7, 0.1]])
B = np.array([[0.4, 0.2], [0.0, -0.3]])


def test_noncommutative_general_noise_converges_to_stratonovich():
    """dX = -0.2 X dt + A X o dW1 + B X o dW2 with AB != BA: rate 1/2, and to Stratonovich (not Ito)."""
    M = 200
    path = BrownianPath(0.0, 1.0, shape=(M, 2), seed=12)
    def drift(t, y):
        return -0.2 * y
    def sigma(t, y):
        return np.stack([y @ A.T, y @ B.T], axis=-1)
    y0 = np.tile([1.0, 0.5], (M, 1))
    tout = np.array([0.0, 0.5, 1.0])
    strat = sdeint(drift, sigma, y0, tout, path, method="midpoint", dt=2**-12,
                   noise_type="general")
    ito = sdeint(drift, sigma, y0, tout, path, method="euler_maruyama", dt=2**-12, sde_type="ito",
                 noise_type="general")
    hs = [2.0**-k for k in range(2, 8)]
    errs, errs_ito = [], []
    for h in hs:
        ys = ode(wong_zakai(drift, sigma, PiecewiseLinearNoise(path, h), "general"), y0, tout)
        errs.append(np.sqrt(np.mean((ys[1:] - strat[1:]) ** 2)))
        errs_ito.append(np.sqrt(np.mean((ys[1:] - ito[1:]) ** 2)))
    assert abs(slope(hs, errs) - 0.5) <= RATE_TOL, errs  # measured 0.51
    assert errs[-1] < 0.25 * errs_ito[-1]


def test_ito_sde_via_conversion():
    """An Ito SDE solved as a Wong-Zakai ODE after ito_to_stratonovich matches Milstein."""
    M = 50
    path = BrownianPath(0.0, 1.0, shape=(M,), seed=13)
    def mu(t, y):
        return 0.3 - y
    def sigma(t, y):
        return 0.5 * np.cos(y)
    y0 = np.zeros(M)
    ito = sdeint(mu, sigma, y0, [0.0, 1.0], path, method="milstein", dt=2**-12, sde_type="ito")
    field = wong_zakai(ito_to_stratonovich(mu, sigma, commutative=True), sigma,
                       PiecewiseLinearNoise(path, 2**-7))
    ys = ode(field, y0, np.array([0.0, 1.0]))
    assert np.sqrt(np.mean((ys[-1] - ito[-1]) ** 2)) < 2e-3


def test_field_attributes_and_torch():
    torch = pytest.importorskip("torch")
    path = BrownianPath(0.0, 1.0, shape=(2, 2), seed=14)
    noise = PiecewiseLinearNoise(path, 0.25)
    tout = np.array([0.0, 0.5, 1.0])
    f_np = wong_zakai(lambda t, y: -0.2 * y, lambda t, y: np.stack([y @ A.T, y @ B.T], -1), noise,
                      "general")
    At, Bt = torch.tensor(A.T), torch.tensor(B.T)
    f_t = wong_zakai(lambda t, y: -0.2 * y, lambda t, y: torch.stack([y @ At, y @ Bt], -1), noise,
                     "general")
    np.testing.assert_array_equal(f_np.tstops, [0.25, 0.5, 0.75])
    y0 = np.ones((2, 2))
    a = ode(f_np, y0, tout)
    b = ode(f_t, torch.tensor(y0), torch.tensor(tout))
    assert isinstance(b, torch.Tensor)
    np.testing.assert_allclose(b.numpy(), a, rtol=1e-12)
    assert f_np.nfe > 0 and "general" in repr(f_np)


def test_validation():
    path = BrownianPath(0.0, 1.0, shape=(3,), seed=0)
    noise = PiecewiseLinearNoise(path, 0.5)
    with pytest.raises(TypeError, match="`noise` must be a noise approximation"):
        wong_zakai(lambda t, y: y, lambda t, y: y, path)
    with pytest.raises(TypeError, match="`drift` must be callable"):
        wong_zakai(None, lambda t, y: y, noise)
    with pytest.raises(ValueError, match="`noise_type` must be one of"):
        wong_zakai(lambda t, y: y, lambda t, y: y, noise, "commutative")
    f = wong_zakai(lambda t, y: y, lambda t, y: y, noise)
    with pytest.raises(ValueError, match=r"noise shape \(3,\) does not match the state's shape \(4,\)"):
        f(0.1, np.ones(4))
    g = wong_zakai(lambda t, y: y, lambda t, y: y, noise, "scalar")
    with pytest.raises(ValueError, match="not a single channel"):
        g(0.1, np.ones(3))
    h = wong_zakai(lambda t, y: y, lambda t, y: np.ones((3, 2)), noise, "general")
    with pytest.raises(ValueError, match="does not match the diffusion's 2 channels"):
        h(0.1, np.ones(3))
    # a drift that changes shape after the first calls is caught, not broadcast (issue 14.6)
    late = wong_zakai(lambda t, y: y if t < 0.5 else y[:1], lambda t, y: y, noise)
    late(0.1, np.ones(3))
    with pytest.raises(ValueError, match=r"`drift` returned shape \(1,\); expected the state's"):
        late(0.6, np.ones(3))
