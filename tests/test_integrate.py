"""Solve and stepper behaviour: outputs, direction, tstops, errors, stats, dense output."""

import math
import subprocess
import sys

import numpy as np
import pytest
from problems import LINEAR, LOGISTIC, NONAUTONOMOUS
from scipy.integrate import solve_ivp

import gqlib
from gqlib.errors import GQLibError, NonFiniteState, StepSizeTooSmall, TooManySteps


def test_outputs_and_shapes():
    P = NONAUTONOMOUS
    t = np.linspace(P.t0, P.t1, 7)
    sol = gqlib.solve(P.f, P.y0, t, rtol=1e-10, atol=1e-12)
    assert sol.y.shape == (7, 2)
    assert isinstance(sol.y, np.ndarray)
    np.testing.assert_allclose(sol.y, P.exact(t), rtol=0, atol=1e-9)
    assert sol.stats["n_steps"] == sol.stats["n_accepted"] + sol.stats["n_rejected"]
    # FSAL dopri5: 6 new evaluations per attempt, plus f(t0) and Hairer's initial-step probe
    assert sol.stats["nfe"] == 6 * sol.stats["n_steps"] + 2


def test_decreasing_time_matches_increasing():
    P = NONAUTONOMOUS
    fwd = gqlib.solve(P.f, P.y0, [0.0, 1.0], rtol=1e-11, atol=1e-12)
    back = gqlib.solve(P.f, fwd.y[-1], [1.0, 0.5, 0.0], rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(back.y[-1], P.y0, atol=1e-9)
    np.testing.assert_allclose(back.y[1], P.exact(0.5), atol=1e-9)


@pytest.mark.parametrize("shape", [(), (3,), (2, 3)])
def test_state_shapes(shape):
    y0 = np.full(shape, 0.5)
    sol = gqlib.solve(lambda t, y: -y, y0, [0.0, 0.5, 1.0], dense_output=True)
    assert sol.y.shape == (3, *shape)
    np.testing.assert_allclose(sol.y[-1], 0.5 * np.exp(-1.0) * np.ones(shape), rtol=1e-7)
    assert sol(0.25).shape == shape
    tq = np.linspace(0, 1, 10).reshape(2, 5)
    assert sol(tq).shape == (2, 5, *shape)


def test_single_time_returns_initial_state():
    sol = gqlib.solve(lambda t, y: -y, np.ones(2), [3.0])
    assert sol.y.shape == (1, 2) and sol.stats["nfe"] == 0


def test_dense_output_matches_outputs_and_exact():
    P = LOGISTIC
    sol = gqlib.solve(P.f, P.y0, [P.t0, P.t1], rtol=1e-10, atol=1e-12, dense_output=True)
    tq = np.linspace(P.t0, P.t1, 101)
    np.testing.assert_allclose(sol(tq), P.exact(tq), atol=1e-8)
    np.testing.assert_allclose(sol(P.t1), sol.y[-1], atol=1e-14)
    with pytest.raises(ValueError, match="span"):
        sol(P.t1 + 1.0)
    no_dense = gqlib.solve(P.f, P.y0, [P.t0, P.t1])
    with pytest.raises(ValueError, match="dense_output=True"):
        no_dense(1.0)


def test_fixed_step_lands_on_outputs_and_tstops():
    times = []

    def f(t, y):
        times.append(t)
        return np.ones_like(y)

    sol = gqlib.solve(f, np.zeros(1), [0.0, 0.35, 1.0], method="rk4", step_size=0.1, tstops=[0.62])
    # every step is exact for a constant field, and outputs are hit exactly
    np.testing.assert_allclose(sol.y[:, 0], [0.0, 0.35, 1.0], atol=1e-15)
    assert sol.tstops == (0.62,)
    # one-sided evaluations around the tstop, never exactly on it
    assert 0.62 not in times
    assert math.nextafter(0.62, 0.0) in times and math.nextafter(0.62, 1.0) in times


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3", "dop853"])
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_tstops_make_discontinuous_fields_exact(method, direction):
    """f jumps at s: with tstops the solver never straddles s and is exact for piecewise-constant f."""
    s = 0.3 * direction

    def f(t, y):
        return np.where(direction * (t - s) < 0, 1.0, -2.0) * np.ones_like(y)

    t = [0.0, direction * 1.0]
    sol = gqlib.solve(f, np.zeros(1), t, method=method, rtol=1e-8, atol=1e-10, tstops=[s, 5.0])
    exact = direction * (abs(s) * 1.0 + (1.0 - abs(s)) * -2.0)
    assert abs(sol.y[-1, 0] - exact) < 1e-13
    assert sol.tstops == (s,)  # 5.0 lies outside the span and is dropped
    without = gqlib.solve(f, np.zeros(1), t, method=method, rtol=1e-8, atol=1e-10)
    assert without.stats["nfe"] > sol.stats["nfe"] or abs(without.y[-1, 0] - exact) > 1e-13


def test_tstops_fsal_reevaluated():
    calls = []

    def f(t, y):
        calls.append(t)
        return -y

    sol = gqlib.solve(f, np.ones(1), [0.0, 1.0], step_size=0.25, method="dopri5", tstops=[0.5])
    # 4 steps x 6 new stages + f(t0) + one re-evaluation after the tstop
    assert sol.stats["nfe"] == 4 * 6 + 1 + 1
    assert len(calls) == sol.stats["nfe"]


def test_arenstorf_matches_scipy_rk45_work_precision():
    """dopri5 reaches scipy RK45's accuracy with no more evaluations (rtol = atol)."""
    mu = 0.012277471
    mup = 1 - mu

    def f(t, y):
        y1, y2, v1, v2 = y
        d1 = ((y1 + mu) ** 2 + y2 ** 2) ** 1.5
        d2 = ((y1 - mup) ** 2 + y2 ** 2) ** 1.5
        return np.array([v1, v2, y1 + 2 * v2 - mup * (y1 + mu) / d1 - mu * (y1 - mup) / d2,
                         y2 - 2 * v1 - mup * y2 / d1 - mu * y2 / d2])

    y0 = np.array([0.994, 0.0, 0.0, -2.00158510637908252240537862224])
    T = 17.0652165601579625588917206249
    ref = solve_ivp(f, (0, T), y0, method="DOP853", rtol=1e-13, atol=1e-13).y[:, -1]
    for tol in (1e-6, 1e-9):
        sp = solve_ivp(f, (0, T), y0, method="RK45", rtol=tol, atol=tol)
        gq = gqlib.solve(f, y0, [0.0, T], rtol=tol, atol=tol)
        err_sp = np.max(np.abs(sp.y[:, -1] - ref))
        err_gq = np.max(np.abs(gq.y[-1] - ref))
        assert gq.stats["nfe"] <= sp.nfev, (tol, gq.stats, sp.nfev)
        # same steps as scipy; the orbit amplifies last-bit differences to ~1e-5 relative
        assert err_gq <= err_sp * 1.01, (tol, err_gq, err_sp)


def test_norms():
    P = LINEAR
    t = [0.0, 3.0]
    a = gqlib.solve(P.f, P.y0, t, norm="rms")
    b = gqlib.solve(P.f, P.y0, t, norm="max")
    c = gqlib.solve(P.f, P.y0, t, norm=lambda e: np.sqrt(np.mean(e * e)))
    assert a.stats == c.stats
    assert b.stats["nfe"] >= a.stats["nfe"]  # the max norm is never smaller than RMS
    seminorm = gqlib.solve(P.f, P.y0, t, norm=lambda e: np.abs(e[0]))
    assert seminorm.stats["nfe"] <= b.stats["nfe"]


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("t, match", [
    ([0.0, 1.0, 1.0], r"t\[2\] = 1.0 is not after t\[1\] = 1.0"),
    ([0.0, 2.0, 1.0], "strictly monotonic"),
    ([0.0, np.nan], "finite"),
    ([[0.0, 1.0]], "1-D"),
    ([], "non-empty"),
])
def test_bad_times(t, match):
    with pytest.raises(ValueError, match=match):
        gqlib.solve(lambda t, y: -y, np.ones(1), t)


def test_bad_arguments():
    f = lambda t, y: -y  # noqa: E731
    y0, t = np.ones(2), [0.0, 1.0]
    with pytest.raises(ValueError, match="valid methods: .*dopri5"):
        gqlib.solve(f, y0, t, method="rk45")
    for name in ("rtol", "atol"):
        for bad in (0.0, -1e-3, float("nan")):
            with pytest.raises(ValueError, match=f"`{name}`"):
                gqlib.solve(f, y0, t, **{name: bad})
    with pytest.raises(ValueError, match="step_size"):
        gqlib.solve(f, y0, t, step_size=-0.1)
    with pytest.raises(ValueError, match="step_size"):
        gqlib.solve(f, y0, t, method="rk4")  # fixed-step method without a step size
    with pytest.raises(TypeError, match="max_steps"):
        gqlib.solve(f, y0, t, max_steps=1.5)
    with pytest.raises(ValueError, match="norm"):
        gqlib.solve(f, y0, t, norm="l2")
    with pytest.raises(TypeError, match="y0.*floating"):
        gqlib.solve(f, np.array([True, False]), t)
    with pytest.raises(TypeError, match="y0.*floating"):
        gqlib.solve(f, np.array([1 + 1j]), t)
    with pytest.raises(ValueError, match=r"returned shape \(3,\).*\(2,\)"):
        gqlib.solve(lambda t, y: np.ones(3), y0, t)
    with pytest.raises(TypeError, match="dtype"):
        gqlib.solve(lambda t, y: y.astype(np.float32), y0, t)
    with pytest.raises(TypeError, match="callable"):
        gqlib.solve(None, y0, t)


def test_integer_lists_are_promoted():
    sol = gqlib.solve(lambda t, y: -y, [1, 2], [0, 1])
    assert sol.y.dtype == np.float64


def test_non_finite_state_raises_with_time():
    def f(t, y):
        return np.full_like(y, np.nan) if t > 0.5 else -y

    with pytest.raises(NonFiniteState) as exc:
        gqlib.solve(f, np.ones(1), [0.0, 1.0])
    assert 0.4 < exc.value.t <= 0.5 and exc.value.h > 0
    assert "t = " in str(exc.value)
    with pytest.raises(NonFiniteState):
        gqlib.solve(f, np.ones(1), [0.0, 1.0], method="rk4", step_size=0.1)


def test_step_size_underflow():
    """A jump of 1e20 in f without a tstop: no representable step meets the tolerance."""
    with pytest.raises(StepSizeTooSmall) as exc:
        gqlib.solve(lambda t, y: np.where(t < 0.5, 0.0, 1e20) * np.ones_like(y), np.ones(1),
                    [0.0, 1.0], atol=1e-12)
    assert abs(exc.value.t - 0.5) < 1e-12 and exc.value.h > 0
    assert isinstance(exc.value, GQLibError) and isinstance(exc.value, RuntimeError)
    assert not isinstance(exc.value, ValueError)


def test_blow_up_raises_near_singularity():
    """y' = y^2, y(0) = 1 blows up at t = 1: the solve fails there, saying where."""
    with pytest.raises((StepSizeTooSmall, NonFiniteState)) as exc:
        gqlib.solve(lambda t, y: y * y, np.ones(1), [0.0, 2.0])
    assert abs(exc.value.t - 1.0) < 1e-3


def test_too_many_steps():
    with pytest.raises(TooManySteps) as exc:
        gqlib.solve(lambda t, y: np.cos(50 * t) * np.ones_like(y), np.ones(1), [0.0, 10.0],
                    max_steps=20)
    assert 0.0 <= exc.value.t < 10.0 and "max_steps = 20" in str(exc.value)


# -- stepper API ---------------------------------------------------------------------------------
def test_stepper_reset_keeps_step_size():
    tab = gqlib.METHODS["dopri5"]
    st = gqlib.Stepper(lambda t, y: -y, 0.0, np.ones(2), 2.0, tab)
    seg = st.step(1.0)
    assert seg.t0 == 0.0 and 0 < seg.t1 <= 1.0
    np.testing.assert_allclose(seg(seg.t1), seg.y1, atol=1e-15)
    while st.t < 1.0:
        st.step(1.0)
    assert st.t == 1.0
    h = st.h
    nfe = st.stats["nfe"]
    st.reset(st.y + 1.0)  # a jump, as the adjoint does at output times
    seg = st.step()
    np.testing.assert_allclose(seg.y0, np.exp(-1.0) + 1.0)
    # the next step is taken with the kept step size and no initial-step search: f(t, y_new)
    # and six more stages of dopri5, nothing else
    assert st.stats["n_rejected"] == 0
    assert seg.h == pytest.approx(h, rel=1e-12)
    assert st.stats["nfe"] - nfe == 7


def test_stepper_reuses_hermite_endpoint_without_back_pointer():
    # fehlberg2: cubic Hermite dense output, not FSAL. The segment's f(t1, y1), once evaluated
    # for its interpolant, is the next step's first stage, unless the state was reset or t1
    # is a tstop (then each side is evaluated one-sidedly).
    calls = []

    def f(t, y):
        calls.append(t)
        return -y

    tab = gqlib.METHODS["fehlberg2"]
    st = gqlib.Stepper(f, 0.0, np.ones(2), 2.0, tab, step_size=0.1, tstops=[0.3])
    seg = st.step()
    assert not hasattr(seg, "_owner") and not seg.end_is_stop
    n = len(calls)
    _ = seg.Q                                   # + f(t1, y1)
    st.step()                                   # its stages 2 and 3 only
    assert len(calls) - n == 1 + 2
    seg = st.step()                             # lands on the tstop 0.3
    assert seg.t1 == 0.3 and seg.end_is_stop
    n = len(calls)
    _ = seg.Q
    assert calls[-1] == np.nextafter(0.3, -np.inf)  # from inside the step
    st.step()
    assert len(calls) - n == 1 + 3 and calls[n + 1] == np.nextafter(0.3, np.inf)  # onward
    seg = st.step()
    _ = seg.Q
    st.reset()                                  # f(t1, y1) known before the reset: dropped
    n = len(calls)
    st.step()
    assert len(calls) - n == 3
    seg = st.step()
    st.reset()                                  # reset first, interpolant after: as before,
    _ = seg.Q                                   # the state is still y1, so f(t1, y1) serves
    n = len(calls)
    st.step()
    assert len(calls) - n == 2


def test_tolerance_shape_is_checked():
    with pytest.raises(ValueError, match=r"`atol` of shape \(3,\) must broadcast"):
        gqlib.solve(lambda t, y: -y, np.ones(2), [0.0, 1.0], atol=np.full(3, 1e-9))
    with pytest.raises(ValueError, match="`rtol`"):
        gqlib.solve(lambda t, y: -y, np.ones(2), [0.0, 1.0], rtol=np.full((5, 2), 1e-6))
    sol = gqlib.solve(lambda t, y: -y, np.ones((2, 3)), [0.0, 1.0], atol=np.full(3, 1e-9))
    assert sol.y.shape == (2, 2, 3)


# -- framework independence ------------------------------------------------------------------------
def test_core_imports_without_torch_or_jax():
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'jax', 'jaxlib'):\n"
            "            raise ImportError('blocked ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import numpy as np, gqlib\n"
            "sol = gqlib.solve(lambda t, y: -y, np.ones(1), [0.0, 1.0])\n"
            "assert not any(m.split('.')[0] in ('torch', 'jax') for m in sys.modules)\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_observer_sees_every_attempt_and_its_outcome():
    numba = pytest.importorskip("numba")
    f = numba.njit(lambda t, y: -y)
    events = []
    sol = gqlib.solve(f, np.ones(2), [0.0, 3.0], first_step=2.0,
                      observer=lambda ev, t0, y0, h: events.append((ev, t0, h)))
    assert sol.driver == "array-api" and "observer" in sol.driver_reason  # not the compiled loop
    kinds = [e[0] for e in events]
    assert kinds.count("step") == sol.stats["n_steps"]
    assert kinds.count("accept") == sol.stats["n_accepted"]
    assert kinds.count("reject") == sol.stats["n_rejected"] > 0
    assert kinds[0::2] == ["step"] * sol.stats["n_steps"]  # each attempt, then its outcome
    assert [e[1:] for e in events[0::2]] == [e[1:] for e in events[1::2]]
    plain = gqlib.solve(f, np.ones(2), [0.0, 3.0], first_step=2.0)
    assert plain.driver == "numba" and np.allclose(plain.y, sol.y, rtol=1e-14)  # it only watches
    with pytest.raises(TypeError, match="`observer` must be callable"):
        gqlib.solve(lambda t, y: -y, np.ones(2), [0.0, 1.0], observer=3)


def test_on_step_sees_every_accepted_step_with_its_stages():
    seen = []
    sol = gqlib.solve(lambda t, y: -y, np.ones(2), [0.0, 1.0, 3.0], first_step=2.0,
                      on_step=seen.append)
    assert len(seen) == sol.stats["n_accepted"] and sol.stats["n_rejected"] > 0
    assert [s.t0 for s in seen[1:]] == [s.t1 for s in seen[:-1]] and seen[-1].t1 == 3.0
    for s in seen:  # the stages the step took: y1 = y0 + h sum b_j K_j
        assert len(s.K) == 7 and np.allclose(s.K[0], -s.y0, rtol=1e-15)
        b = gqlib.tableaux.get_method("dopri5").B
        assert np.allclose(s.y0 + s.h_step * sum(w * k for w, k in zip(b, s.K, strict=True)),
                           s.y1, rtol=1e-13)
    with pytest.raises(TypeError, match="`on_step` must be callable"):
        gqlib.solve(lambda t, y: -y, np.ones(2), [0.0, 1.0], on_step=3)
