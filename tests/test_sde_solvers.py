"""sdeint: strong orders, noise types, namespaces, the numba path and validation.

Strong-order tests are Monte Carlo estimates (fixed seed, >= 1000 paths) and allow |slope - order|
<= 0.2 instead of the house 0.15: the sampling error of the mean error at each dt is a few percent,
and order-1 methods on GBM show a slight pre-asymptotic curvature (torchsde measures 0.48 and
0.98-0.99 on the same problem).
"""

import numpy as np
import pytest

from gqlib._jit import DISABLED, jit
from gqlib.errors import NonFiniteState, TooManySteps
from gqlib.sde import SDE_METHODS, BrownianPath, sdeint

MU, SIGMA = 1.0, 1.0
HS = [2.0**-k for k in range(4, 10)]
ORDER_TOL = 0.2


def slope(h, err):
    return float(np.polyfit(np.log(h), np.log(err), 1)[0])


@pytest.fixture(scope="module")
def gbm_path():
    return BrownianPath(0.0, 1.0, shape=(2000,), seed=1234)


def gbm_exact(path, sde_type, t=1.0):
    w = path(t)
    drift = MU - 0.5 * SIGMA**2 if sde_type == "ito" else MU
    return np.exp(drift * t + SIGMA * w)


@pytest.mark.parametrize("name", sorted(SDE_METHODS))
def test_strong_order_gbm(name, gbm_path):
    m = SDE_METHODS[name]
    exact = gbm_exact(gbm_path, m.sde_type)
    errs = []
    for h in HS:
        ys = sdeint(lambda t, y: MU * y, lambda t, y: SIGMA * y, np.ones(2000), [0.0, 1.0], gbm_path,
                    method=name, dt=h, sde_type=m.sde_type)
        errs.append(np.mean(np.abs(ys[-1] - exact)))
    p = slope(HS, errs)
    assert abs(p - m.strong_order) <= ORDER_TOL, (name, p, errs)


def test_strong_order_scalar_noise():
    """Vector state, one Brownian motion: dX_i = mu_i X_i dt + s_i X_i o dW (commuting)."""
    M = 1000
    mu, s = np.array([0.5, -0.3]), np.array([0.6, 1.1])
    path = BrownianPath(0.0, 1.0, shape=(M, 1), seed=77)
    y0 = np.ones((M, 2))
    for name, sde_type in [("milstein", "ito"), ("midpoint", "stratonovich"),
                           ("euler_maruyama", "ito")]:
        shift = -0.5 * s**2 if sde_type == "ito" else 0.0
        exact = np.exp(mu + shift + s * path(1.0))
        errs = []
        for h in HS:
            ys = sdeint(lambda t, y: mu * y, lambda t, y: s * y, y0, [0.0, 1.0], path, method=name,
                        dt=h, sde_type=sde_type, noise_type="scalar")
            errs.append(np.mean(np.abs(ys[-1] - exact)))
        assert abs(slope(HS, errs) - SDE_METHODS[name].strong_order) <= ORDER_TOL, (name, errs)


def test_noncommutative_diagonal_drops_to_half():
    """A diffusion reading the whole state is diagonal but not commutative: order 0.5."""
    M = 500
    path = BrownianPath(0.0, 1.0, shape=(M, 2), seed=3)
    def f(t, y):
        return -0.5 * y

    def g(t, y):
        s = y.sum(-1, keepdims=True)
        return 0.8 * np.concatenate([np.sin(s), np.cos(s)], -1)

    y0 = np.full((M, 2), 0.5)
    ref = sdeint(f, g, y0, [0.0, 1.0], path, method="midpoint", dt=2**-12)[-1]
    hs = [2.0**-k for k in range(3, 8)]
    errs = [np.sqrt(np.mean((sdeint(f, g, y0, [0.0, 1.0], path, method="midpoint", dt=h)[-1]
                             - ref) ** 2)) for h in hs]
    assert abs(slope(hs, errs) - 0.5) <= ORDER_TOL, errs


def test_general_noise_matches_diagonal():
    """A diagonal diffusion written as a (d, d) matrix gives the same solution as diagonal noise."""
    M = 50
    path = BrownianPath(0.0, 1.0, shape=(M, 2), seed=5)
    def f(t, y):
        return np.sin(t) - y
    def g(t, y):
        return 0.5 * np.cos(y)
    def G(t, y):
        return g(t, y)[..., None] * np.eye(2)
    y0 = np.full((M, 2), 0.3)
    ts = np.linspace(0.0, 1.0, 5)
    for name in ("euler_heun", "midpoint", "reversible_heun"):
        a = sdeint(f, g, y0, ts, path, method=name, dt=0.01)
        b = sdeint(f, G, y0, ts, path, method=name, dt=0.01, noise_type="general")
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    a = sdeint(f, g, y0, ts, path, method="euler_maruyama", dt=0.01, sde_type="ito")
    b = sdeint(f, G, y0, ts, path, method="euler_maruyama", dt=0.01, sde_type="ito",
               noise_type="general")
    np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)


def test_output_times_and_step_grid():
    """Steps land on every output time; W-driven: a driftless additive SDE reproduces W exactly."""
    path = BrownianPath(0.0, 2.0, shape=(3,), seed=8)
    ts = np.array([0.0, 0.1, 0.35, 1.0, 1.7])
    for name in SDE_METHODS:
        sde_type = SDE_METHODS[name].sde_type
        ys = sdeint(lambda t, y: 0.0 * y, lambda t, y: 1.0 + 0.0 * y, np.zeros(3), ts, path,
                    method=name, dt=0.07, sde_type=sde_type)
        np.testing.assert_allclose(ys, path(ts), rtol=0, atol=1e-13)
    assert sdeint(lambda t, y: y, lambda t, y: y, np.ones(3), [0.5], path,
                  method="midpoint", dt=0.1).shape == (1, 3)


def test_milstein_jacobian_variant():
    M = 1000
    path = BrownianPath(0.0, 1.0, shape=(M,), seed=9)
    exact = gbm_exact(path, "ito")
    errs = []
    for h in HS:
        ys = sdeint(lambda t, y: MU * y, lambda t, y: SIGMA * y, np.ones(M), [0.0, 1.0], path,
                    method="milstein", dt=h, sde_type="ito",
                    diffusion_jacobian=lambda t, y: SIGMA + 0.0 * y)
        errs.append(np.mean(np.abs(ys[-1] - exact)))
    assert abs(slope(HS, errs) - 1.0) <= ORDER_TOL


@jit(cache=False)
def _jit_f(t, y):
    # One function pair serves the parity and the failure tests, so each kernel compiles once; the
    # state's row count picks the case. 2 rows: an explosive drift (explicit steps from y = 2
    # overflow at dt = 0.01, 150 y^2 dt > 2). 3 rows: a 1-row drift from t = 0.5, which a
    # broadcast would hide.
    if y.shape[0] == 2:
        return -50.0 * y * y * y
    if y.shape[0] == 3 and t > 0.5:
        return y[:1] * 0.0
    return np.sin(t) - 0.5 * y


@jit(cache=False)
def _jit_g(t, y):
    return 0.3 * np.cos(y) + 0.1


def _parity(name, noise_type):
    M = 64
    shape = (M, 2) if noise_type == "diagonal" else (M, 1)
    path = BrownianPath(0.0, 1.0, shape=shape, seed=4)
    y0 = np.full((M, 2), 0.2)
    ts = np.linspace(0.0, 1.0, 4)
    sde_type = SDE_METHODS[name].sde_type
    a = sdeint(_jit_f, _jit_g, y0, ts, path, method=name, dt=0.05, sde_type=sde_type,
               noise_type=noise_type)
    b = sdeint(_jit_f.py_func, _jit_g.py_func, y0, ts, path, method=name, dt=0.05,
               sde_type=sde_type, noise_type=noise_type)
    np.testing.assert_array_equal(a, b)


@pytest.mark.skipif(DISABLED, reason="numba disabled")
@pytest.mark.parametrize("name", sorted(SDE_METHODS))
def test_numba_path_parity(name):
    """Every compiled kernel (jitted drift and diffusion) equals the array-API loop bit for bit.

    Diagonal and scalar noise share one specialisation (2-D increments), so each kernel compiles
    once (about 1 s); this runs in the default test set so no kernel goes unchecked.
    """
    _parity(name, "diagonal")
    _parity(name, "scalar")


def _failure(drift, diffusion, name, y0, dt=0.01):
    path = BrownianPath(0.0, 1.0, shape=y0.shape, seed=6)
    return sdeint(drift, diffusion, y0, [0.0, 0.5, 1.0], path, method=name, dt=dt,
                  sde_type=SDE_METHODS[name].sde_type)


@pytest.mark.parametrize("name", sorted(SDE_METHODS))
def test_non_finite_state_raises_with_t_and_h(name):
    """Issue 14.5: no NaN is returned; the step that overflowed is named, the same by every path."""
    y0 = np.full((2, 2), 2.0)
    with pytest.raises(NonFiniteState, match=r"NaN or infinite in the step .*reduce `dt`") as py:
        _failure(_jit_f.py_func, _jit_g.py_func, name, y0)
    assert 0.0 < py.value.t < 0.5 and py.value.h == pytest.approx(0.01)
    if not DISABLED:
        with pytest.raises(NonFiniteState) as jitted:
            _failure(_jit_f, _jit_g, name, y0)
        assert (jitted.value.t, jitted.value.h) == (py.value.t, py.value.h)


@pytest.mark.parametrize("name", sorted(SDE_METHODS))
def test_output_shape_checked_at_every_call(name):
    """Issue 14.6: a drift that changes shape mid-solve raises instead of being broadcast."""
    y0 = np.full((3, 2), 0.1)
    fns = [(_jit_f.py_func, _jit_g.py_func)] + ([] if DISABLED else [(_jit_f, _jit_g)])
    for f, g in fns:
        with pytest.raises(ValueError, match=r"`drift` returned shape \(1, 2\) and dtype float64 at "
                                             r"t = 0.5\d*; at the first call it returned shape "
                                             r"\(3, 2\)"):
            _failure(f, g, name, y0)


def test_output_dtype_and_diffusion_checked_at_every_call():
    path = BrownianPath(0.0, 1.0, shape=(4,), seed=6)

    def g_late(t, y):
        return 0.1 * y if t < 0.3 else (0.1 * y).astype(np.float32)

    with pytest.raises(ValueError, match=r"`diffusion` returned shape \(4,\) and dtype float32"):
        sdeint(_f, g_late, np.ones(4), [0.0, 1.0], path, method="midpoint", dt=0.1)
    torch = pytest.importorskip("torch")

    def g_torch(t, y):
        return 0.1 * y if t < 0.3 else 0.1 * y[:1]

    with pytest.raises(ValueError, match=r"`diffusion` returned shape \(1,\)"):
        sdeint(_f, g_torch, torch.ones(4, dtype=torch.float64), [0.0, 1.0], path,
               method="reversible_heun", dt=0.1)


def test_non_finite_torch_names_the_step():
    """Outside NumPy the flags are read once per block of steps; the step named is the same."""
    torch = pytest.importorskip("torch")
    y0 = np.full((2, 2), 2.0)
    with pytest.raises(NonFiniteState) as ref:
        _failure(_jit_f.py_func, _jit_g.py_func, "midpoint", y0, dt=0.013)
    with pytest.raises(NonFiniteState) as tt:
        _failure(lambda t, y: -50.0 * y**3,
                 lambda t, y: 0.3 * torch.cos(y) + 0.1,
                 "midpoint", torch.tensor(y0), dt=0.013)
    assert (tt.value.t, tt.value.h) == (ref.value.t, ref.value.h)


def test_max_steps():
    """Issue 14.5: a step cap, checked before the grid is built (dt = 1e-8 ran over a minute)."""
    path = BrownianPath(0.0, 1.0, shape=(3,), seed=0)
    with pytest.raises(TooManySteps, match="more than `max_steps` = 100000 steps") as err:
        sdeint(_f, _g, np.ones(3), [0.0, 0.5, 1.0], path, method="midpoint", dt=1e-8)
    assert err.value.t == pytest.approx(1e-3) and err.value.h == pytest.approx(1e-8)
    with pytest.raises(TooManySteps) as err:
        sdeint(_f, _g, np.ones(3), [0.0, 0.5, 1.0], path, method="midpoint", dt=0.1, max_steps=7)
    assert err.value.t == pytest.approx(0.7) and err.value.h == pytest.approx(0.1)
    ys = sdeint(_f, _g, np.ones(3), [0.0, 0.5, 1.0], path, method="midpoint", dt=0.1, max_steps=10)
    assert ys.shape == (3, 3)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="`max_steps` must be a positive int"):
            sdeint(_f, _g, np.ones(3), [0.0, 1.0], path, method="midpoint", dt=0.1, max_steps=bad)


def test_torch_namespace_and_autograd():
    torch = pytest.importorskip("torch")
    M = 20
    path = BrownianPath(0.0, 1.0, shape=(M,), seed=2)
    ts = [0.0, 0.5, 1.0]
    ref = sdeint(lambda t, y: -y, lambda t, y: 0.5 * np.sin(y), np.ones(M), ts, path,
                 method="reversible_heun", dt=0.05)
    theta = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    y0 = torch.ones(M, dtype=torch.float64)
    ys = sdeint(lambda t, y: -theta * y, lambda t, y: 0.5 * torch.sin(y), y0, torch.tensor(ts,
                dtype=torch.float64), path, method="reversible_heun", dt=0.05)
    assert isinstance(ys, torch.Tensor) and ys.shape == (3, M)
    np.testing.assert_allclose(ys.detach().numpy(), ref, rtol=1e-13)
    ys[-1].sum().backward()
    assert theta.grad is not None and torch.isfinite(theta.grad)
    y32 = sdeint(lambda t, y: -y, lambda t, y: 0.5 * torch.sin(y), torch.ones(M), ts, path,
                 method="midpoint", dt=0.05)
    assert y32.dtype == torch.float32
    ys = sdeint(lambda t, y: -y, lambda t, y: 0.5 * np.sin(y), np.ones(M, dtype=np.float32), ts,
                path, method="midpoint", dt=0.05)
    assert ys.dtype == np.float32


def _f(t, y):
    return -y


def _g(t, y):
    return 0.5 * y


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(method="rk4"), ValueError, "unknown `method` 'rk4'; valid: euler_heun, euler_maruyama"),
        (dict(method="euler_maruyama"), ValueError,
         "'euler_maruyama' solves ito SDEs but `sde_type` is 'stratonovich'"),
        (dict(method="midpoint", sde_type="ito"), ValueError,
         "'midpoint' solves stratonovich SDEs but `sde_type` is 'ito'; .* euler_maruyama, milstein"),
        (dict(method="milstein", sde_type="ito", noise_type="general"), ValueError,
         "'milstein' supports noise types diagonal, scalar but `noise_type` is 'general'"),
        (dict(method="midpoint", sde_type="strato"), ValueError, "`sde_type` must be one of"),
        (dict(method="midpoint", noise_type="additive"), ValueError, "`noise_type` must be one of"),
        (dict(method="midpoint", dt=0.0), ValueError, "`dt` must be positive"),
        (dict(method="midpoint", dt=-1.0), ValueError, "`dt` must be positive"),
        (dict(method="midpoint", t=[0.0, 0.5, 0.5]), ValueError,
         r"`t` must be strictly increasing; t\[2\] = 0.5 is not after t\[1\] = 0.5"),
        (dict(method="midpoint", t=[0.0, 1.5]), ValueError, "`t` must lie within the path"),
        (dict(method="midpoint", t=[[0.0, 1.0]]), ValueError, "`t` must be a 1-D array"),
        (dict(method="midpoint", y0=np.ones(4)), ValueError, r"`path` shape \(3,\) does not match"),
        (dict(method="midpoint", y0=np.ones(3, dtype=int)), TypeError, "`y0` must be a real floating"),
        (dict(method="midpoint", y0=np.array([1.0, np.nan, 0.0])), ValueError, "`y0` must be finite"),
        (dict(method="midpoint", path=np.zeros(3)), TypeError, "`path` must be a BrownianPath"),
        (dict(method="midpoint", drift=3.0), TypeError, "`drift` must be callable"),
        (dict(method="midpoint", diffusion=lambda t, y: np.ones(2)), ValueError,
         r"`diffusion` returned shape \(2,\)"),
        (dict(method="midpoint", noise_type="general"), ValueError,
         "general noise needs the state's shape"),
    ],
)
def test_validation(kwargs, exc, match):
    args = dict(drift=_f, diffusion=_g, y0=np.ones(3), t=[0.0, 1.0],
                path=BrownianPath(0.0, 1.0, shape=(3,), seed=0), dt=0.1)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        sdeint(args.pop("drift"), args.pop("diffusion"), args.pop("y0"), args.pop("t"),
               args.pop("path"), **args)


def test_methods_are_data():
    for name, m in SDE_METHODS.items():
        assert m.name == name
        assert m.sde_type in ("ito", "stratonovich")
        assert m.strong_order_general == 0.5
        assert m.noise_types <= {"diagonal", "scalar", "general"}
        assert m.reference
    assert SDE_METHODS["euler_maruyama"].strong_order == 0.5
    assert "general" not in SDE_METHODS["milstein"].noise_types
