"""The driver's decisions (gqlib/integrate/_policy.py) and the controllers built on them.

Each decision exists once: the substep count, the time validator, the initial step and the
status-to-error table are imported from ``_policy`` here, and every kernel gives the same bits
compiled and through ``.py_func``.
"""

import math

import numpy as np
import pytest

import gqlib
from gqlib._jit import DISABLED, is_jitted, plain
from gqlib.errors import NonFiniteState, StepSizeTooSmall, TooManySteps
from gqlib.integrate import ConstantStep, PIController
from gqlib.integrate import _policy as policy
from gqlib.integrate._policy import (
    STATUS_BELOW_MIN_STEP,
    STATUS_NON_FINITE,
    STATUS_NON_FINITE_FIXED,
    STATUS_STEP_TOO_SMALL,
    STATUS_TOO_MANY_STEPS,
    check_times,
    clamp_step,
    constant_propose,
    initial_step,
    initial_step_guess,
    next_target,
    pi_decide,
    pi_propose,
    status_error,
    substep_count,
)


def test_substep_count():
    assert substep_count.py_func(1.0, 0.1) == 10       # 1.0 / 0.1 = 10.000000000000002
    assert substep_count.py_func(1.0, 0.3) == 4
    assert substep_count.py_func(0.05, 0.1) == 1
    assert substep_count.py_func(1.0 + 1e-12, 0.25) == 4  # a rounding sliver adds no step
    assert substep_count.py_func(1.0 + 1e-6, 0.25) == 5


def test_check_times():
    np.testing.assert_array_equal(check_times([0, 1, 3]), [0.0, 1.0, 3.0])
    np.testing.assert_array_equal(check_times([2.0, 1.0]), [2.0, 1.0])
    with pytest.raises(ValueError, match=r"strictly increasing; t\[1\] = 1.0 is not after"):
        check_times([2.0, 1.0], increasing=True)
    with pytest.raises(ValueError, match=r"strictly monotonic; t\[2\] = 1.0"):
        check_times([0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        check_times([0.0, np.nan])
    with pytest.raises(TypeError, match="real numbers"):
        check_times(np.array([1j, 2j]))
    with pytest.raises(ValueError, match="1-D"):
        check_times(np.zeros((2, 2)), "grid")


def test_check_times_reads_tensors_on_the_host():
    torch = pytest.importorskip("torch")
    t = torch.linspace(0.0, 1.0, 3, dtype=torch.float32, requires_grad=True)
    out = check_times(t)
    assert out.dtype == np.float64 and isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("status, cls, text", [
    (STATUS_STEP_TOO_SMALL, StepSizeTooSmall, "step size underflow"),
    (STATUS_NON_FINITE, NonFiniteState, "shrinking the step did not help"),
    (STATUS_TOO_MANY_STEPS, TooManySteps, "max_steps = 7 step attempts"),
    (STATUS_NON_FINITE_FIXED, NonFiniteState, "fixed step"),
    (STATUS_BELOW_MIN_STEP, StepSizeTooSmall, "below min_step = 0.25"),
])
def test_status_table(status, cls, text):
    err = status_error(status, t=1.5, h=0.25, max_steps=7, min_step=0.25)
    assert type(err) is cls and (err.t, err.h) == (1.5, 0.25)
    assert text in str(err) and err.remedy in str(err)


@pytest.mark.skipif(DISABLED, reason="numba disabled (GQLIB_DISABLE_JIT)")
def test_kernels_compiled_and_plain_agree():
    # the numba loop runs the compiled kernels, the Stepper their plain twins: same bits
    P = {k: plain(k) for k in (initial_step_guess, initial_step, pi_decide, pi_propose,
                               constant_propose, substep_count, clamp_step, next_target)}
    rng = np.random.default_rng(0)
    for _ in range(300):
        d0, d1, d2 = 10.0 ** rng.uniform(-8, 3, 3)
        span, gap = rng.uniform(0.01, 10.0), rng.choice([math.inf, rng.uniform(0.001, 1.0)])
        assert initial_step_guess(d0, d1, span, gap) == P[initial_step_guess](d0, d1, span, gap)
        h0 = P[initial_step_guess](d0, d1, span, gap)
        for q in (1, 4, 7):
            assert initial_step(h0, d1, d2, span, q) == P[initial_step](h0, d1, d2, span, q)
        assert initial_step(0.0, d1, d2, span, 4) == 0.0
        err = float(rng.choice([0.0, math.inf, math.nan, 10.0 ** rng.uniform(-6, 3)]))
        h, h_ctrl, t0 = rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(-5, 5)
        args = (err, h, h_ctrl, bool(rng.integers(2)), t0, 10.0 ** rng.uniform(-4, 0),
                bool(rng.integers(2)), int(rng.integers(6)), 0.9, 0.2, 10.0,
                float(rng.choice([0.2, 1.0])), 0.2, 0.04,
                float(rng.choice([0.0, 0.01])), float(rng.choice([math.inf, 0.5])),
                int(rng.choice([1, 4, 7])), float(t0 + rng.choice([-1.0, 1e-15, 1.0])))
        got, want = pi_decide(*args), P[pi_decide](*args)
        assert got[:3] == want[:3] and got[4:] == want[4:]
        assert got[3] == want[3] or (math.isnan(got[3]) and math.isnan(want[3]))
        remaining = rng.uniform(-2, 2)
        t0 = float(rng.choice([t0, 1e12 * t0, 3e15]))
        target = t0 + remaining
        d = 1.0 if target >= t0 else -1.0
        assert pi_propose(h_ctrl, t0, target, d) == P[pi_propose](h_ctrl, t0, target, d)
        assert constant_propose(0.07, t0, target) == P[constant_propose](0.07, t0, target)
        assert substep_count(abs(remaining), 0.07) == P[substep_count](abs(remaining), 0.07)
        assert substep_count(abs(remaining), 1e-300) == P[substep_count](abs(remaining), 1e-300)
        assert clamp_step(h, 0.1, 0.5) == P[clamp_step](h, 0.1, 0.5)
    stops = np.array([0.5, 1.0, 1.5])
    for t, target, nxt in ((0.0, 2.0, 0), (0.5, 0.7, 0), (1.2, 1.5, 1), (1.6, 3.0, 2)):
        assert next_target(t, target, 2.0, 1.0, stops, nxt) == \
            P[next_target](t, target, 2.0, 1.0, list(stops), nxt)


def test_plain_twins_never_enter_numba():
    twin = plain(pi_decide)
    for name in ("pi_factor", "clamp_step", "_pymax", "_spacing"):
        assert not is_jitted(twin.__globals__[name])
        assert twin.__globals__[name] is plain(getattr(policy, name))
    assert not is_jitted(plain(clamp_step).__globals__["_pymin"])
    assert pi_decide.py_func.__globals__["pi_factor"] is policy.pi_factor  # module untouched


def test_next_target():
    stops = [0.5, 1.0]
    assert next_target.py_func(0.0, 3.0, 2.0, 1.0, stops, 0) == (0.5, True, 0)
    assert next_target.py_func(0.5, 0.8, 2.0, 1.0, stops, 0) == (0.8, False, 1)
    assert next_target.py_func(0.8, 1.0, 2.0, 1.0, stops, 1) == (1.0, True, 1)
    assert next_target.py_func(1.0, 5.0, 2.0, 1.0, stops, 1) == (2.0, False, 2)


def test_pi_controller_api():
    with pytest.raises(TypeError):
        PIController(4)  # the error order comes from the method when the solve starts
    c = PIController(beta2=0.04)
    assert c.error_order is None and c.beta1 is None
    run = c.start(4, min_step=1e-3, max_step=0.5)
    assert run is not c and c.error_order is None  # the template keeps no solve's state
    assert run.error_order == 4 and run.beta1 == pytest.approx(0.2 - 0.03)
    assert PIController().start(7).beta1 == 1.0 / 8
    assert PIController(beta1=0.1).start(4).beta1 == 0.1
    assert run.clamp(1e-6) == 1e-3 and run.clamp(2.0) == 0.5
    accept, status, hnew = run.decide(2.0, 0.1, 0.1, False, 0.0)
    assert not accept and status == 0 and run.after_reject and hnew < 0.1
    assert c.start(4).after_reject is False  # memory starts afresh
    with pytest.raises(ValueError, match="error estimate"):
        c.start(None)
    with pytest.raises(ValueError, match="safety"):
        PIController(safety=1.5)
    with pytest.raises(ValueError, match="min_factor"):
        PIController(min_factor=2.0)
    with pytest.raises(TypeError, match="shrink_after_accept"):
        PIController(shrink_after_accept=1)
    with pytest.raises(TypeError, match="beta2"):
        PIController(beta2="0.04")


def test_constant_step():
    c = ConstantStep(0.3)
    assert c.propose(c.step_size, 0.0, 1.0, 1.0) == (0.25, False)
    assert c.propose(c.step_size, 0.0, -0.2, -1.0) == (-0.2, True)
    assert c.decide(0.0, 0.25, 0.3, False, 0.0) == (True, 0, 0.3)
    assert c.decide(math.inf, 0.25, 0.3, False, 0.0)[:2] == (False, STATUS_NON_FINITE_FIXED)


def test_dop853_with_default_controller_matches_no_controller():
    # the mismatch PIController(4) with dop853 (error order 7) can no longer be written
    y0 = np.array([1.0, 0.5])

    def f(t, y):
        return np.array([y[1], -y[0]])

    a = gqlib.solve(f, y0, [0.0, 10.0], method="dop853", controller=PIController())
    b = gqlib.solve(f, y0, [0.0, 10.0], method="dop853")
    assert a.stats == b.stats
    np.testing.assert_array_equal(a.y, b.y)


@pytest.mark.parametrize("shrink", [True, False])
def test_no_shrinking_after_an_accepted_step(shrink):
    """``shrink_after_accept=False`` (torchdiffeq's and diffrax's rule): an accepted step is
    followed by one at least as long; a rejected one still shrinks by the controller's factor."""
    c = PIController(shrink_after_accept=shrink).start(4)
    accept, _, hnew = c.decide(0.9, 0.1, 0.1, False, 0.0)  # factor 0.9 * 0.9^-0.2 < 1
    assert accept and (hnew < 0.1 if shrink else hnew == 0.1)
    accept, _, hnew = c.decide(1e-6, 0.1, 0.1, False, 0.0)
    assert accept and hnew == pytest.approx(1.0)  # growth is unchanged (max_factor 10)
    accept, _, hnew = c.decide(4.0, 0.1, 0.1, False, 0.0)
    assert not accept and hnew < 0.1


@pytest.mark.slow  # compiles a numba kernel and a jax solve (~20 s on 2 busy cores)
def test_no_shrinking_after_accept_same_steps_in_every_driver():
    """``shrink_after_accept=False`` reaches the numba kernel and the jax driver: the same
    accepted and rejected steps and the same outputs as the Python stepper (a Lorenz run where
    the rule changes the step count), and the default controller's steps are unchanged."""
    numba = pytest.importorskip("numba")

    def lorenz(t, y):
        return np.array([10.0 * (y[1] - y[0]), y[0] * (28.0 - y[2]) - y[1],
                         y[0] * y[1] - 8.0 / 3.0 * y[2]])

    y0, t = np.array([1.0, 1.0, 1.0]), np.linspace(0.0, 5.0, 6)
    kw = dict(method="dopri5_shampine", rtol=1e-7, atol=1e-9)
    runs = {}
    for shrink in (True, False):
        ctrl = PIController(shrink_after_accept=shrink)
        py = gqlib.solve(lorenz, y0, t, controller=ctrl, observer=lambda *a: None, **kw)
        runs[shrink] = py
        if not DISABLED:
            nb = gqlib.solve(numba.njit(lorenz), y0, t, controller=ctrl, **kw)
            assert nb.driver == "numba" and nb.stats == py.stats
            np.testing.assert_allclose(nb.y, py.y, rtol=1e-13, atol=1e-13)
    assert runs[True].stats != runs[False].stats  # the rule changes the steps here
    default = gqlib.solve(lorenz, y0, t, observer=lambda *a: None, **kw)
    assert default.stats == runs[True].stats
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return
    from gqlib.jax import odeint as jodeint

    jax.config.update("jax_enable_x64", True)

    def jlorenz(y, t):
        return jnp.stack([10.0 * (y[1] - y[0]), y[0] * (28.0 - y[2]) - y[1],
                          y[0] * y[1] - 8.0 / 3.0 * y[2]])

    for shrink in (True, False):
        ys, st = jodeint(jlorenz, jnp.asarray(y0), jnp.asarray(t), return_stats=True,
                         controller=PIController(shrink_after_accept=shrink), **kw)
        py = runs[shrink].stats
        assert (int(st["n_accepted"]), int(st["n_rejected"])) == \
            (py["n_accepted"], py["n_rejected"]), shrink
        np.testing.assert_allclose(np.asarray(ys), runs[shrink].y, rtol=1e-10, atol=1e-10)
