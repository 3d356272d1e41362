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
def _decay_torch(t0, method, dtype):
    torch = pytest.importorskip("torch")
    from gqlib.torch import odeint
    t = torch.tensor([t0, t0 + 1.0], dtype=torch.float64)
    return odeint(lambda t, y: -y, torch.ones(1, dtype=getattr(torch, dtype)), t,
                  method=method)[-1, 0].item()


@pytest.mark.parametrize("t0, method", [(1e12, "dopri5"), (1e12, "bosh3"), (2e15, "dopri5"),
                                        (2e15, "tsit5"), (2e15, "dop853")])
def test_large_t_to_tolerance(t0, method):
    # ulp(1e12) = 1.2e-4: t0 + h rounds; before, y advanced by h (8e-4 relative off for bosh3).
    # ulp(2e15) = 0.25, below the step the default tolerances want (dopri5: 0.15): before, a
    # StepSizeTooSmall; now four steps of one spacing, each err = 8.6 <= 2**5 (tsit5 4.5)
    a, b = _both(decay, decay_nb, np.ones(1), [t0, t0 + 1.0], method=method)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.stats == b.stats
    bound = 1e-6 if t0 < 1e13 else 1e-5  # measured: 1.5e-7 (bosh3 1e12), 4.1e-7 (dopri5 2e15)
    assert abs(a.y[-1, 0] / math.exp(-1.0) - 1.0) < bound
    assert a.t[-1] == t0 + 1.0
    assert abs(_decay_torch(t0, method, "float64") / math.exp(-1.0) - 1.0) < bound
    assert abs(_decay_torch(t0, method, "float32") / math.exp(-1.0) - 1.0) < 1e-5


def test_large_t_one_spacing_steps():
    # at 2e15 dopri5 steps exactly one float spacing at a time: four steps, none rejected
    sol = gqlib.solve(decay, np.ones(1), [2e15, 2e15 + 1.0], method="dopri5", dense_output=True)
    assert sol.stats["n_accepted"] == 4 and sol.stats["n_rejected"] == 0
    assert abs(sol(2e15 + 0.5)[0] / math.exp(-0.5) - 1.0) < 1e-5


@pytest.mark.parametrize("t0, method", [(3e15, "bosh3"), (2e15, "bosh3"), (3e15, "dopri5")])
def test_large_t_below_float_spacing(t0, method):
    # one float spacing is too long for the error test (bosh3 at 3e15: err = 12891 > 2**3, the
    # best it could do is 7.8e-3 relative; before: 1.25e-6 silently): a step size underflow
    for f in (decay, decay_nb):
        with pytest.raises(StepSizeTooSmall, match="float spacing of t") as info:
            gqlib.solve(f, np.ones(1), [t0, t0 + 1.0], method=method)
        assert info.value.t == t0 and 0 < info.value.h < 0.5
    with pytest.raises(StepSizeTooSmall, match="float spacing of t"):
        _decay_torch(t0, method, "float64")


@pytest.mark.parametrize("w", [0.3, 0.5, 1.0, 1.5])
def test_large_t_rejection_near_landing_shrinks(w):
    """Within the last spacings before a landing point a rejected step shrinks by at least one
    spacing: a proposal of 0.44 at 2e15 rounds back to the rejected 0.5 (w = 0.5 spun for
    max_steps before, then TooManySteps)."""
    def f(t, y):
        return np.array([y[1], -w * w * y[0]])

    events = []
    sol = gqlib.solve(f, np.array([1.0, 0.0]), [2e15, 2e15 + 2.0], rtol=1e-6, atol=1e-8,
                      max_steps=2000, observer=lambda e, t0, y0, h: events.append(e))
    assert events.count("reject") <= 2
    assert abs(sol.y[-1, 0] - math.cos(2.0 * w)) < 1e-5


def test_large_t_far_from_landing_raises_at_once():
    """Steps of one spacing are taken only within a few spacings of the landing point: an
    oscillator over [2e15, 2e15 + 200] (800 spacings) raises instead of accepting hundreds of
    steps with err up to 2**(q+1) (1.8e-2 relative error at rtol 1e-6 with a 1024-spacing span)."""
    def f(t, y):
        return np.array([y[1], -2.25 * y[0]])

    for field in (f, numba.njit(f)):
        with pytest.raises(StepSizeTooSmall):
            gqlib.solve(field, np.array([1.0, 0.0]), [2e15, 2e15 + 200.0], rtol=1e-6, atol=1e-8)


def test_large_t_loose_tolerances():
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


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "rk4"])
def test_overflow_from_finite_stages_raises(method):
    """y1 = inf from finite stages makes the error scale infinite (err = 0): the outputs'
    one check per solve names the first non-finite output (the numba kernel checks each step)."""
    kw = {"step_size": 0.25} if method == "rk4" else {}

    def f(t, y):
        return np.full_like(y, 1e308)

    for field in (f, numba.njit(f)):
        with pytest.raises(NonFiniteState) as info, np.errstate(over="ignore", invalid="ignore"):
            gqlib.solve(field, np.full(2, 1e308), [0.0, 1.0, 2.0], method=method, **kw)
        assert info.value.t <= 1.0  # y overflows within the first step or two


def test_numba_interpolated_overflow_raises():
    # outputs read from the dense output of the numba kernel are checked as the NumPy driver's
    # y = y0 + A sin(2 pi t) / (2 pi) (review repro): the dense output's intermediate terms
    # overflow between step ends that are finite
    @numba.njit
    def f(t, y):
        return np.array([2e307 * math.cos(2.0 * math.pi * t)])

    for field in (f.py_func, f):
        with pytest.raises(NonFiniteState, match="output time"), \
                np.errstate(over="ignore", invalid="ignore"):
            gqlib.solve(field, np.full(1, 1.7e308), np.linspace(0.0, 1.0, 41))


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


# -- 2. NaN in gqlib.torch and the adjoints: raise, never hang ------------------------------
torch = pytest.importorskip("torch")
from gqlib.adjoint import FunctionField, gradient  # noqa: E402
from gqlib.torch import odeint  # noqa: E402

STRATEGIES = ["gq", "backsolve", "interpolated", "collocation", "checkpoint"]
T3 = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)


@pytest.mark.parametrize("adjoint", [None, *STRATEGIES])
def test_torch_nan_weight_raises(adjoint):
    # max_num_steps defaults to 2**31 - 1 in gqlib.torch: a NaN used to spin for ever
    lin = torch.nn.Linear(2, 2).double()
    with torch.no_grad():
        lin.weight[0, 0] = float("nan")
    kw = {} if adjoint is None else {"adjoint_params": tuple(lin.parameters())}
    with pytest.raises(NonFiniteState, match="not finite") as info:
        odeint(lambda t, y: lin(y), torch.ones(2, dtype=torch.float64), T3, adjoint=adjoint, **kw)
    assert info.value.t == 0.0


@pytest.mark.parametrize("adjoint", STRATEGIES)
def test_torch_nan_upstream_gradient_raises(adjoint):
    lin = torch.nn.Linear(2, 2).double()
    y = odeint(lambda t, y: torch.tanh(lin(y)), torch.ones(2, dtype=torch.float64), T3,
               adjoint=adjoint, adjoint_params=tuple(lin.parameters()))
    with pytest.raises(ValueError, match=r"`grad_y` must be finite; grad_y\[2\]"):
        (y[-1] * torch.tensor(float("nan"))).sum().backward()


@pytest.mark.parametrize("y0, exc, text", [
    (torch.ones(2, dtype=torch.float16), TypeError, "float32 or float64"),
    (torch.ones(0, dtype=torch.float64), ValueError, "at least one element"),
    (np.ones(2, dtype=np.float16), TypeError, "float32 or float64"),
    (np.ones((2, 0)), ValueError, "at least one element"),
])
def test_bad_y0_at_the_door(y0, exc, text):
    with pytest.raises(exc, match=text):
        if torch.is_tensor(y0):
            odeint(lambda t, y: -y, y0, T3)
        else:
            gqlib.solve(decay, y0, [0.0, 1.0])


# -- 4. aliasing ----------------------------------------------------------------------------
def test_solution_times_are_a_copy():
    t = np.array([0.0, 1.0])
    sol = gqlib.solve(decay, np.ones(1), t)
    t[1] = 5.0
    assert sol.t[1] == 1.0 and sol.t is not t


def test_single_time_gradient_is_not_a_view():
    field = FunctionField(decay, lambda t, y, a: -a)
    sol = gqlib.solve(field, np.ones(2), [0.0])
    grad_y = np.ones((1, 2))
    g = gradient(field, sol, grad_y)
    grad_y[0, 0] = 7.0
    assert g.y0[0] == 1.0


# -- 6. output shapes on every call ---------------------------------------------------------
def test_solve_checks_every_output_shape():
    def f(t, y):  # right shape at first, then one element that broadcasts silently
        return -y if t < 0.3 else -y[:1]

    with pytest.raises(ValueError, match=r"returned shape \(1,\) at t = .*expected the state's"):
        gqlib.solve(f, np.ones(2), [0.0, 1.0])


def test_torch_direct_checks_every_output_shape():
    def func(t, y):
        return -y if t < 0.3 else -y[:1]

    with pytest.raises(ValueError, match=r"returned shape \(1,\)"):
        odeint(func, torch.ones(2, dtype=torch.float64), T3)


def _field(vjp_y=None, vjp_params=None):
    return FunctionField(lambda t, y: -0.5 * y, vjp_y or (lambda t, y, a: -0.5 * a),
                         vjp_params or (lambda t, y, a: np.array([-np.sum(a * y)])))


@pytest.mark.parametrize("adjoint", ["interpolated", "collocation", "gq"])
def test_vjp_y_shape_checked_on_every_call(adjoint):
    calls = []

    def vjp_y(t, y, a):
        calls.append(t)
        return -0.5 * a if len(calls) < 3 else -0.5 * a[:1]

    field = _field(vjp_y=vjp_y)
    sol = gqlib.solve(field, np.ones(2), [0.0, 1.0], dense_output=True)
    with pytest.raises(ValueError, match=r"`vjp_y\(t, y, a\)` returned shape \(1,\)"):
        gradient(field, sol, np.ones((2, 2)), adjoint=adjoint)


# -- 8. a NaN parameter gradient -------------------------------------------------------------
@pytest.mark.parametrize("adjoint", ["gq", "interpolated", "collocation"])
def test_nan_parameter_gradient_raises(adjoint):
    def vjp_params(t, y, a):
        return np.array([np.nan if t > 0.5 else -np.sum(a * y)])

    field = _field(vjp_params=vjp_params)
    sol = gqlib.solve(field, np.ones(2), [0.0, 1.0], dense_output=True)
    with pytest.raises(NonFiniteState, match="parameter gradient"):
        gradient(field, sol, np.ones((2, 2)), adjoint=adjoint)


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


def test_dense_output_at_nan_time_says_nan():
    sol = gqlib.solve(decay, np.ones(1), [0.0, 1.0], dense_output=True)
    with pytest.raises(ValueError, match="NaN"):
        sol.dense._at(float("nan"))


# -- 10. bad input at the door: the Stepper, gradient's grad_y, convergence ----------------------
def _stepper(**kw):
    args = dict(f=decay, t0=0.0, y0=np.ones(1), t_end=1.0, tableau=gqlib.METHODS["dopri5"])
    args.update(kw)
    return gqlib.Stepper(args.pop("f"), args.pop("t0"), args.pop("y0"), args.pop("t_end"),
                         args.pop("tableau"), **args)


@pytest.mark.parametrize("kw, exc, text", [
    (dict(t0=math.nan), ValueError, "`t0` must be finite"),
    (dict(t_end=math.inf), ValueError, "`t_end` must be finite"),
    (dict(rtol=-1.0), ValueError, "`rtol` must be positive"),
    (dict(atol=np.ones(3)), ValueError, "`atol` of shape"),
    (dict(y0=np.ones(1, dtype=np.int64)), TypeError, "`y0` must have a real floating dtype"),
])
def test_stepper_validates_at_the_door(kw, exc, text):
    with pytest.raises(exc, match=text):
        _stepper(**kw)


def test_stepper_step_and_reset_validate():
    st = _stepper()
    with pytest.raises(ValueError, match="`t_limit` must be finite"):
        st.step(math.nan)
    st.step(0.5)
    with pytest.raises(ValueError, match=r"`y` must have the state's shape \(1,\)"):
        st.reset(np.ones(3))
    t_reset = st.t
    st.reset(np.full(1, 2.0))  # the right shape is taken
    while st.t < 1.0:
        st.step()
    assert st.y[0] == pytest.approx(2.0 * math.exp(t_reset - 1.0), rel=1e-6)


@pytest.mark.parametrize("grad_y", [np.ones((2, 2)) * 1j, np.ones((2, 2), dtype=bool)])
def test_gradient_rejects_non_real_grad_y(grad_y):
    field = FunctionField(decay, lambda t, y, a: -a)
    sol = gqlib.solve(field, np.ones(2), [0.0, 1.0], dense_output=True)
    with pytest.raises(TypeError, match="`grad_y` must hold real numbers"):
        gradient(field, sol, grad_y, adjoint="gq")


def test_convergence_rejects_degenerate_input():
    with pytest.raises(ValueError, match="two different step sizes"):
        gqlib.convergence.observed_order([0.1, 0.1], [1e-3, 1e-3])
    with pytest.raises(ValueError, match="at least two step sizes"):
        gqlib.convergence.refinement_study(lambda h: h ** 2, [])


# -- 11. a field that writes into its input -----------------------------------------------------
def _writes_into_y(t, y):
    out = -y
    y += 0.01  # the solver's own state, when y is one
    return out


@numba.njit
def _writes_into_y_nb(t, y):
    out = -y
    y += 0.01
    return out


@pytest.mark.parametrize("kw", [{}, dict(method="rk4", step_size=0.01),
                                dict(method="bosh3", rtol=1e-8)])
def test_a_field_writing_into_the_state_raises(kw):
    """The Python driver hands f its own state at a step's first stage: an in-place write there
    would move the solution silently (it ended at 0.3716 for exp(-1) = 0.3679)."""
    with pytest.raises(ValueError, match=r"modified its input `y` in place at t = 0\.0"):
        gqlib.solve(_writes_into_y, np.ones(2), [0.0, 1.0], **kw)


def test_the_numba_kernel_hands_f_temporaries():
    """The compiled loop calls f on work buffers (and the first call on a copy): a write into
    them cannot reach the state, and the solution is the field's."""
    sol = gqlib.solve(_writes_into_y_nb, np.ones(2), [0.0, 1.0], rtol=1e-10, atol=1e-12)
    assert sol.driver == "numba"
    np.testing.assert_allclose(sol.y[-1], np.exp(-1.0), rtol=1e-9)


@pytest.mark.parametrize("adjoint", [None, "checkpoint", "gq"])
def test_torch_func_writing_into_y_raises(adjoint):
    torch = pytest.importorskip("torch")
    import gqlib.torch as gt

    net = torch.nn.Linear(2, 2).double()

    def func(t, y):
        out = net(y)
        y.mul_(1.0)  # even a no-op write moves the version counter
        return out

    y0 = torch.ones(3, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="modified its input `y`"):
        ys = gt.odeint(func, y0, torch.linspace(0.0, 1.0, 3, dtype=torch.float64),
                       adjoint=adjoint, adjoint_params=tuple(net.parameters()) if adjoint else None)
        ys.sum().backward()


# -- 12. the VJPs' dtypes and the parameter gradient's shape, on every path ------------------------
STRATEGIES = ["checkpoint", "gq", "backsolve", "interpolated", "collocation"]


class _FusedVJP:
    """A field with only the fused ``vjp(t, y, a) -> (vjp_y, vjp_params)`` for its products."""

    def __init__(self, vjp):
        self.vjp = vjp

    def __call__(self, t, y):
        return -0.5 * y

    def vjp_y(self, t, y, a):
        return self.vjp(t, y, a)[0]

    def vjp_params(self, t, y, a):
        return self.vjp(t, y, a)[1]


@pytest.mark.parametrize("adjoint", STRATEGIES)
@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.complex128])
def test_vjp_y_dtype_checked(adjoint, dtype):
    # an integer vjp_y truncated the adjoint: checkpoint, gq, backsolve and collocation
    # returned dL/dy0 = [2, 2] and dL/dk = -1.574 for the true [1.607, 1.607] and -1.213; a
    # complex one gave collocation a complex gradient; float32 for a float64 state was taken
    # by all but interpolated, whose backward solve named `f` for it
    field = _field(vjp_y=lambda t, y, a: (-0.5 * a).astype(dtype))
    sol = gqlib.solve(field, np.ones(2), [0.0, 1.0], dense_output=True)
    with pytest.raises(TypeError, match=r"`vjp_y\(t, y, a\)` returned dtype"):
        gradient(field, sol, np.ones((2, 2)), adjoint=adjoint)


@pytest.mark.parametrize("adjoint", STRATEGIES)
def test_fused_vjp_outputs_checked(adjoint):
    # the fused vjp's vjp_y was not checked: a (1,)-shaped one broadcast silently
    field = _FusedVJP(lambda t, y, a: (-0.5 * a[:1], np.array([-np.sum(a * y)])))
    sol = gqlib.solve(field, np.ones(2), [0.0, 1.0], dense_output=True)
    with pytest.raises(ValueError, match=r"vjp_y\(t, y, a\)` returned shape \(1,\)"):
        gradient(field, sol, np.ones((2, 2)), adjoint=adjoint)


@pytest.mark.parametrize("adjoint", STRATEGIES)
@pytest.mark.parametrize("bad", ["2-D", "length changes"])
def test_vjp_params_shape_checked(adjoint, bad):
    # a (P, 1) parameter gradient came back (P, 1) from four strategies and flat from
    # backsolve; one whose length changed between calls broadcast into the sum: dL/dk[1]
    # came out -0.98 for the true -1.99 (checkpoint), -0.95 (gq, interpolated, collocation)
    K = np.array([1.5, 0.5])
    if bad == "2-D":
        vjp_params = lambda t, y, a: (-a * y)[:, None]  # noqa: E731
    else:
        vjp_params = lambda t, y, a: (-a * y)[: 1 + int(t > 0.5)]  # noqa: E731
    field = FunctionField(lambda t, y: -K * y, lambda t, y, a: -K * a, vjp_params)
    sol = gqlib.solve(field, np.array([1.0, 2.0]), [0.0, 0.5, 1.0], dense_output=True)
    with pytest.raises(ValueError, match=r"`vjp_params\(t, y, a\)` returned shape"):
        gradient(field, sol, np.ones((3, 2)), adjoint=adjoint)
