"""Parity of the numba driver with the array-API driver (gqlib/integrate/_numba_driver.py).

The same problems are solved by both drivers: the compiled one (``solve`` with a jitted ``f``) and
the array-API one (``solve`` with ``f.py_func``). They must take the same accepted steps (bit for
bit), report the same stats and agree on the outputs to ~1e-13 relative, in adaptive and fixed-step
mode, with tstops, in both directions of time and with dense output; and fail alike.
"""

import math

import numpy as np
import pytest

import gqlib
from gqlib._jit import DISABLED
from gqlib.errors import NonFiniteState, StepSizeTooSmall, TooManySteps
from gqlib.integrate._numba_driver import fallback_reason

pytestmark = pytest.mark.skipif(DISABLED, reason="numba disabled (GQLIB_DISABLE_JIT)")

numba = pytest.importorskip("numba")


@numba.njit
def nonlinear(t, y):
    # non-autonomous and nonlinear: a wrong stage time or a mixed-up stage shows
    return -y + np.sin(t) * y * y


@numba.njit
def lorenz(t, y):
    out = np.empty(3)
    out[0] = 10.0 * (y[1] - y[0])
    out[1] = y[0] * (28.0 - y[2]) - y[1]
    out[2] = y[0] * y[1] - 8.0 / 3.0 * y[2]
    return out


@numba.njit
def kinked(t, y):
    # discontinuous in t at 0.7 and 1.3: the tstops of the tests
    k = 1.0 if t < 0.7 else (-2.0 if t < 1.3 else 0.5)
    return k * np.cos(3.0 * t) * y + 0.1 * t


@numba.njit
def matrix_field(t, y):  # a (2, 2) state: runs through the reshaping adapter
    return np.array([[-y[0, 1], y[0, 0]], [-0.5 * y[1, 0], math.sin(t) * y[1, 1]]])


@numba.njit
def nan_after_half(t, y):
    if t > 0.5:
        return y * np.nan
    return -y


@numba.njit
def blow_up(t, y):  # y' = y^2, y(0) = 1: y = 1 / (1 - t), singular at t = 1
    return y * y


Y_NL = np.array([0.5, -0.3, 1.2])
Y_LORENZ = np.array([1.0, 1.0, 1.0])
ADAPTIVE = ["dopri5", "tsit5", "dop853", "dopri8", "bosh3", "fehlberg2", "adaptive_heun"]
FIXED = ["euler", "midpoint", "heun3", "rk4", "rk38", "dopri5"]


def _both(f, y0, t, **kw):
    sol_nb = gqlib.solve(f, y0, t, **kw)
    sol_py = gqlib.solve(f.py_func, y0, t, **kw)
    return sol_nb, sol_py


def _assert_parity(sol_nb, sol_py, rtol=1e-13):
    assert sol_nb.stats == sol_py.stats
    assert sol_nb.y.shape == sol_py.y.shape
    scale = np.maximum(np.abs(sol_py.y), 1e-300)
    assert np.all(np.abs(sol_nb.y - sol_py.y) <= rtol * scale + 1e-300), \
        np.max(np.abs(sol_nb.y - sol_py.y) / scale)
    assert sol_nb.tstops == sol_py.tstops
    if sol_py.dense is not None:
        dn, dp = sol_nb.dense, sol_py.dense
        # the same accepted steps, bit for bit
        np.testing.assert_array_equal(dn.t0, dp.t0)
        np.testing.assert_array_equal(dn.h, dp.h)
        np.testing.assert_array_equal(dn.y0, dp.y0)
        np.testing.assert_allclose(dn.Q, dp.Q, rtol=1e-13, atol=1e-300)
        tq = np.linspace(dp.t_first, dp.t_last, 57)
        np.testing.assert_allclose(sol_nb(tq), sol_py(tq), rtol=1e-13, atol=1e-14)


def test_selection():
    assert fallback_reason(lorenz, Y_LORENZ, "rms") is None
    assert fallback_reason(lorenz, Y_LORENZ, "max") is None
    assert "jitted" in fallback_reason(lorenz.py_func, Y_LORENZ, "rms")
    assert "callable" in fallback_reason(lorenz, Y_LORENZ, lambda x: np.max(np.abs(x)))
    assert "float64" in fallback_reason(lorenz, Y_LORENZ.astype(np.float32), "rms")
    assert "dimension" in fallback_reason(lorenz, np.array(1.0), "rms")  # 0-d state
    sol = gqlib.solve(lorenz, Y_LORENZ, [0.0, 1.0], norm=lambda x: np.max(np.abs(x)))
    assert sol.driver == "array-api" and "callable" in sol.driver_reason
    sol = gqlib.solve(lorenz, Y_LORENZ, [0.0, 1.0], min_step=1e-6, max_step=0.1)
    assert sol.driver == "numba" and sol.driver_reason is None


@pytest.mark.parametrize("method", ADAPTIVE)
def test_adaptive_parity(method):
    t = np.linspace(0.0, 3.0, 7)
    _assert_parity(*_both(nonlinear, Y_NL, t, method=method, rtol=1e-6, atol=1e-8,
                          dense_output=True))


@pytest.mark.parametrize("method", ["dopri5", "dop853"])
def test_lorenz_parity(method):
    t = np.linspace(0.0, 20.0, 41)
    sol_nb, sol_py = _both(lorenz, Y_LORENZ, t, method=method, rtol=1e-8, atol=1e-8)
    _assert_parity(sol_nb, sol_py)
    assert sol_nb.stats["n_rejected"] > 0  # the controller's reject branch is exercised


def test_lorenz_nfe_matches_scipy_rk45():
    # scipy's RK45 takes the same steps (same controller, initial step and tableau) on this run
    sol = gqlib.solve(lorenz, Y_LORENZ, [0.0, 20.0], rtol=1e-8, atol=1e-8)
    assert sol.stats["nfe"] == 10928


@pytest.mark.parametrize("method", FIXED)
def test_fixed_step_parity(method):
    t = np.array([0.0, 0.3, 1.0, 2.05])
    _assert_parity(*_both(nonlinear, Y_NL, t, method=method, step_size=0.07, dense_output=True))


@pytest.mark.parametrize("method", ["dopri5", "dop853", "fehlberg2", "bosh3", "rk4"])
@pytest.mark.parametrize("backwards", [False, True])
def test_tstops_parity(method, backwards):
    t = np.linspace(0.0, 2.0, 5)
    if backwards:
        t = t[::-1]
    kw = {"step_size": 0.09} if method == "rk4" else {"rtol": 1e-7, "atol": 1e-9}
    sol_nb, sol_py = _both(kinked, Y_NL, t, method=method, tstops=[0.7, 1.3, 5.0],
                           dense_output=True, **kw)
    _assert_parity(sol_nb, sol_py)
    ends = sol_py.dense.t0 + sol_py.dense.h
    assert 0.7 in ends and 1.3 in ends  # steps land on the tstops


@pytest.mark.parametrize("method", ["dopri5", "dop853", "adaptive_heun"])
def test_decreasing_time_and_max_norm(method):
    t = np.linspace(2.5, -0.5, 9)
    _assert_parity(*_both(nonlinear, np.array([0.3, 0.1, 0.25]), t, method=method, rtol=1e-5, atol=1e-7, norm="max",
                          dense_output=True))


def test_given_first_step_and_interpolated_outputs():
    # outputs inside steps: interpolated with the method's dense output (no extra landing)
    t = np.linspace(0.0, 20.0, 400)
    sol_nb, sol_py = _both(lorenz, Y_LORENZ, t, method="dop853", rtol=1e-9, atol=1e-9,
                           first_step=1e-3, dense_output=True)
    _assert_parity(sol_nb, sol_py, rtol=1e-12)  # Q @ theta: loop vs BLAS rounding, amplified
    ends = set(sol_py.dense.t0 + sol_py.dense.h)
    assert sum(ti not in ends for ti in t) > 300


def test_state_shape_and_tolerance_arrays():
    y0 = np.array([[1.0, 0.5], [0.2, -0.7]])
    sol_nb, sol_py = _both(matrix_field, y0, [0.0, 1.0, 4.0], rtol=np.array([1e-6, 1e-7]),
                           atol=1e-9, dense_output=True)
    assert sol_nb.y.shape == (3, 2, 2)
    _assert_parity(sol_nb, sol_py)


def test_too_many_steps():
    for f in (lorenz, lorenz.py_func):
        with pytest.raises(TooManySteps) as info:
            gqlib.solve(f, Y_LORENZ, [0.0, 20.0], rtol=1e-8, atol=1e-8, max_steps=50)
        if f is lorenz:
            t_nb, h_nb = info.value.t, info.value.h
        else:
            assert (info.value.t, info.value.h) == (t_nb, h_nb)
    assert 0.0 < t_nb < 20.0 and h_nb > 0.0


@pytest.mark.parametrize("step_size", [None, 0.1])
def test_non_finite(step_size):
    got = []
    for f in (nan_after_half, nan_after_half.py_func):
        with pytest.raises(NonFiniteState) as info:
            gqlib.solve(f, Y_NL, [0.0, 2.0], step_size=step_size)
        got.append((info.value.t, info.value.h, str(info.value)))
    assert got[0] == got[1]
    assert 0.4 <= got[0][0] <= 0.5


def test_singularity_fails_alike():
    got = []
    for f in (blow_up, blow_up.py_func):
        with pytest.raises((StepSizeTooSmall, NonFiniteState)) as info:
            gqlib.solve(f, np.array([1.0]), [0.0, 2.0], rtol=1e-10, atol=1e-12)
        got.append((type(info.value), info.value.t, info.value.h))
    assert got[0] == got[1]
    assert 0.99 < got[0][1] <= 1.0


@numba.njit
def shrinking(t, y):
    if t > 0.5:
        return np.zeros(y.shape[0] - 1)
    return -y


def test_wrong_size_inside_the_loop():
    with pytest.raises(ValueError, match=r"returned shape \(2,\); expected y0's shape \(3,\)"):
        gqlib.solve(shrinking, Y_NL, [0.0, 1.0])


@numba.njit("float64[:](float64, float64[:])")
def declared(t, y):  # an explicit signature (any layout): runs through the adapter
    return -y + np.sin(t) * y * y


def test_explicit_signature():
    _assert_parity(*_both(declared, Y_NL, [0.0, 1.0, 2.0], dense_output=True))


@pytest.mark.parametrize("norm", ["rms", "max"])
def test_large_state_pairwise_norm(norm):
    # n > 128: NumPy's pairwise summation recurses; the RMS norm must round alike
    y0 = np.random.default_rng(3).uniform(0.05, 0.5, 300)
    _assert_parity(*_both(nonlinear, y0, [0.0, 2.0], method="dop853", rtol=1e-9, atol=1e-11,
                          norm=norm, dense_output=True))


# -- options that once sent solve down the slow path: now compiled, step for step alike ----------
@pytest.mark.parametrize("method", ["dopri5", "dop853", "bosh3"])
def test_max_step_parity(method):
    t = np.linspace(0.0, 3.0, 4)
    sol_nb, sol_py = _both(nonlinear, Y_NL, t, method=method, rtol=1e-6, atol=1e-8,
                           max_step=0.02, first_step=1.0, dense_output=True)
    assert sol_nb.driver == "numba"
    _assert_parity(sol_nb, sol_py)
    # a step landing on an output may exceed max_step by the landing slack (1e-12 relative)
    assert np.max(np.abs(sol_nb.dense.h)) <= 0.02 * (1.0 + 1e-12)
    free = gqlib.solve(nonlinear, Y_NL, t, method=method, rtol=1e-6, atol=1e-8,
                       dense_output=True)
    assert np.max(np.abs(free.dense.h)) > 0.04  # the clamp binds


@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_min_step_parity(method):
    t = np.linspace(0.0, 20.0, 5)
    sol_nb, sol_py = _both(lorenz, Y_LORENZ, t, method=method, rtol=1e-6, atol=1e-6,
                           min_step=2e-3, tstops=[3.3], dense_output=True)
    assert sol_nb.driver == "numba"
    _assert_parity(sol_nb, sol_py)
    interior = np.abs(sol_nb.dense.h)[:-1]
    landed = np.isin(sol_nb.dense.t0[1:], np.concatenate([t, [3.3]]))  # steps cut by a landing
    assert np.all(interior[~landed] >= 2e-3)


def test_min_step_failure_alike():
    # y' = y^2 blows up at t = 1: the error test asks for steps below min_step
    got = []
    for f in (blow_up, blow_up.py_func):
        with pytest.raises(StepSizeTooSmall, match="below min_step = 0.001") as info:
            gqlib.solve(f, np.array([1.0]), [0.0, 2.0], rtol=1e-8, atol=1e-10, min_step=1e-3)
        got.append((info.value.t, info.value.h, str(info.value)))
    assert got[0] == got[1]
    assert 0.9 < got[0][0] < 1.0 and got[0][1] == 1e-3


@pytest.mark.parametrize("controller", [
    gqlib.PIController(safety=0.8, min_factor=0.3, max_factor=4.0),
    gqlib.PIController(beta2=0.04),                 # Hairer's DOPRI5 gains
    gqlib.PIController(beta1=0.17, beta2=0.05),
])
@pytest.mark.parametrize("method", ["dopri5", "dop853"])
def test_controller_parity(controller, method):
    t = np.linspace(0.0, 20.0, 21)
    sol_nb, sol_py = _both(lorenz, Y_LORENZ, t, method=method, rtol=1e-7, atol=1e-9,
                           controller=controller, dense_output=True)
    assert sol_nb.driver == "numba"
    _assert_parity(sol_nb, sol_py)
    default = gqlib.solve(lorenz, Y_LORENZ, t, method=method, rtol=1e-7, atol=1e-9)
    assert sol_nb.stats != default.stats  # the settings reach the kernel


@pytest.mark.parametrize("method", ["dopri5", "dop853", "bosh3"])
def test_default_controller_is_told_the_error_order(method):
    # PIController() carries no order: solve tells it the method's, so an explicit default
    # controller takes exactly the default steps with every method
    t = np.linspace(0.0, 5.0, 3)
    for f in (lorenz, lorenz.py_func):
        a = gqlib.solve(f, Y_LORENZ, t, method=method, controller=gqlib.PIController())
        b = gqlib.solve(f, Y_LORENZ, t, method=method)
        assert a.stats == b.stats
        np.testing.assert_array_equal(a.y, b.y)


def test_per_element_tolerance_parity():
    t = np.linspace(0.0, 10.0, 6)
    rtol = np.array([1e-6, 1e-8, 1e-7])
    atol = np.array([1e-9, 1e-6, 1e-8])
    for method in ("dopri5", "dop853"):
        sol_nb, sol_py = _both(lorenz, Y_LORENZ, t, method=method, rtol=rtol, atol=atol,
                               max_step=0.2, dense_output=True)
        assert sol_nb.driver == "numba"
        _assert_parity(sol_nb, sol_py)
        scalar = gqlib.solve(lorenz, Y_LORENZ, t, method=method, rtol=1e-7, atol=1e-8)
        assert sol_nb.stats != scalar.stats


@pytest.mark.parametrize("backwards", [False, True])
def test_all_options_together_parity(backwards):
    t = np.linspace(0.0, 2.0, 5)
    if backwards:
        t = t[::-1]
    ctrl = gqlib.PIController(safety=0.85, beta2=0.03)
    _assert_parity(*_both(kinked, Y_NL, t, method="dop853", rtol=np.array([1e-8, 1e-7, 1e-8]),
                          atol=1e-10, tstops=[0.7, 1.3], controller=ctrl, min_step=1e-4,
                          max_step=0.1, norm="max", dense_output=True))


# -- one fast case of every mode of the compiled loop, in the default run -------------------------
MODES = [  # (method, step_size): P + FSAL, P + extra stages + E_low, Hermite + FSAL,
    ("dopri5", None), ("dop853", None), ("bosh3", None),  # Hermite without FSAL, landing on
    ("fehlberg2", None), ("dopri8", None),                # every output (dense order 4 < 8),
    ("rk4", 0.09), ("dopri5", 0.09),                      # fixed steps: Hermite, and P
]


@pytest.mark.parametrize("method, step_size", MODES)
@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("backwards", [False, True])
@pytest.mark.parametrize("stops", [None, [0.7]])
def test_every_mode(method, step_size, dense, backwards, stops):
    t = np.array([0.0, 0.45, 1.0])
    if backwards:
        t = 1.0 - t
    norm = "max" if (dense ^ backwards) else "rms"
    sol_nb, sol_py = _both(kinked, Y_NL, t, method=method, step_size=step_size, rtol=1e-6,
                           atol=1e-8, tstops=stops, dense_output=dense, norm=norm)
    assert sol_nb.driver == "numba" and sol_py.driver == "array-api"
    _assert_parity(sol_nb, sol_py)
