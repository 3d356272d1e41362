"""Robustness under bad input and faults (issue 14): no silent wrong result, no hang, no alias.

Every case runs both drivers where both exist (a numba-jitted ``f`` takes the compiled loop, a
plain ``f`` the array-API Stepper); each case finishes in well under a second once compiled.
"""

import math

import numba
import numpy as np
import pytest

import gqlib
from gqlib.errors import NonFiniteState, StepSizeTooSmall, TooManySteps


@numba.njit
def decay_nb(t, y):
    return -y


def decay(t, y):
    return -y


@numba.njit
def nan_field_nb(t, y):
    return y * np.nan


def _both(f_py, f_nb, *args, **kw):
    """The solve through the array-API driver and the compiled one."""
    a = gqlib.solve(f_py, *args, **kw)
    b = gqlib.solve(f_nb, *args, **kw)
    assert a.driver != "numba" and b.driver == "numba"
    return a, b


# -- 1. large t: y advances by the step t really took -----------------------------------------
@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_large_t_to_tolerance(method):
    # ulp(1e12) = 1.2e-4: t0 + h rounds; before, y advanced by h (8e-4 relative off for bosh3)
    for sol in _both(decay, decay_nb, np.ones(1), [1e12, 1e12 + 1.0], method=method):
        assert abs(sol.y[-1, 0] / math.exp(-1.0) - 1.0) < 1e-6
        assert sol.t[-1] == 1e12 + 1.0


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_large_t_below_float_spacing(method):
    # ulp(3e15) = 0.5: the default tolerances need steps far below it (before: 1.25e-6 silently)
    for f in (decay, decay_nb):
        with pytest.raises(StepSizeTooSmall, match="below 10 float spacings") as info:
            gqlib.solve(f, np.ones(1), [3e15, 3e15 + 1.0], method=method)
        assert info.value.t >= 3e15
    # loose tolerances accept steps of whole ulps, and the state follows the time
    a, b = _both(decay, decay_nb, np.ones(1), [3e15, 3e15 + 1.0], method="dopri5", rtol=1e-3,
                 atol=1e-3)
    np.testing.assert_array_equal(a.y, b.y)
    assert abs(a.y[-1, 0] / math.exp(-1.0) - 1.0) < 1e-3


def test_large_t_fixed_step():
    # rk4 with step 0.1 at 1e12: every step is rounded to the float grid, y follows it
    for sol in _both(decay, decay_nb, np.ones(1), [1e12, 1e12 + 1.0], method="rk4",
                     step_size=0.1):
        assert abs(sol.y[-1, 0] / math.exp(-1.0) - 1.0) < 1e-5


# -- 2. NaN: detected at once, never a spin until max_steps ---------------------------------
@pytest.mark.parametrize("case", ["nan_y0", "nan_f", "first_step"])
def test_nan_raises_promptly(case):
    y0 = np.array([np.nan]) if case == "nan_y0" else np.ones(1)
    kw = {"first_step": 0.1} if case == "first_step" else {}
    got = []
    for f in ((decay, decay_nb) if case == "nan_y0" else (nan_field_nb.py_func, nan_field_nb)):
        with pytest.raises(NonFiniteState) as info:
            gqlib.solve(f, y0, [0.0, 1.0], max_steps=10**9, **kw)
        got.append((info.value.t, str(info.value)))
        assert info.value.t == 0.0
    assert got[0] == got[1]


def test_nan_rejections_are_few():
    calls = []

    def f(t, y):
        calls.append(t)
        return y * np.nan

    with pytest.raises(NonFiniteState):
        gqlib.solve(f, np.ones(1), [0.0, 1.0], first_step=0.1)
    stages = gqlib.METHODS["dopri5"].stages
    assert len(calls) <= 1 + 5 * stages  # f0, then five rejected attempts at most


def test_initial_step_overflow():
    # |f0 / scale| overflows the norm: was ZeroDivisionError in the initial step
    for f in (lambda t, y: -1e160 * y, numba.njit(lambda t, y: -1e160 * y)):
        with pytest.raises(StepSizeTooSmall) as info:
            gqlib.solve(f, np.ones(1), [0.0, 1.0])
        assert info.value.t == 0.0


# -- 7. fixed steps: more than max_steps (or 2**63) steps ------------------------------------
@pytest.mark.parametrize("step_size", [1e-20, 5e-324])
def test_fixed_step_count_overflow(step_size):
    # numba took one step of 1 (2**63 steps overflowed int64) and returned 0.375; Python raised
    # OverflowError for 5e-324
    for f in (decay, decay_nb):
        with pytest.raises(TooManySteps, match="step_size"):
            gqlib.solve(f, np.ones(1), [0.0, 1.0], method="rk4", step_size=step_size)


def test_substep_count_caps():
    from gqlib.integrate._policy import substep_count

    for kernel in (substep_count, substep_count.py_func):
        assert kernel(1.0, 1e-300) == 2 ** 62
        assert kernel(1.0, 5e-324) == 2 ** 62


# -- 9. errors from deep inside ---------------------------------------------------------------
@numba.njit
def raises_late_nb(t, y):
    if t > 0.5:
        raise KeyError("the field's own error")
    return -y


@numba.njit
def grows_late_nb(t, y):
    if t > 0.5:
        return np.zeros(y.shape[0] + 1)
    return -y


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # numba prints it
@pytest.mark.parametrize("shape", [(2,), (2, 2)])
def test_jitted_f_own_exception_reaches_the_caller(shape):
    # numba swallows an exception inside a first-class function; it used to be reported as
    # "returned an array of another size"
    with pytest.raises(KeyError, match="the field's own error"):
        gqlib.solve(raises_late_nb, np.ones(shape), [0.0, 1.0])
    with pytest.raises(ValueError, match=r"returned shape \(3,\); expected y0's shape \(2,\)"):
        gqlib.solve(grows_late_nb, np.ones(2), [0.0, 1.0])


def test_numba_per_element_rtol():
    rtol = np.array([1e-6, 1e-8])
    a, b = _both(decay, decay_nb, np.ones(2), [0.0, 1.0], rtol=rtol)
    np.testing.assert_array_equal(a.y, b.y)


def test_gauss_legendre_too_large_before_allocating():
    with pytest.raises(ValueError, match=r"`n` = 1000000000000 needs about .* GiB"):
        gqlib.gauss_legendre(10 ** 12)
