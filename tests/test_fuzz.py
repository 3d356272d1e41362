"""Fuzzing every entry point with adversarial input (issue 14).

Hypothesis, derandomized and with few examples, drives ``solve`` (NumPy and numba drivers),
``gauss_legendre``, ``adjoint.gradient``, ``gqlib.torch.odeint`` and ``sde.sdeint`` with NaN/inf,
huge and tiny magnitudes, large t offsets, bad shapes and dtypes, zero or negative step sizes and
empty arrays. Each outcome must be one of: a finite, correctly shaped result; a
:class:`gqlib.errors.GQLibError`; a ``ValueError``/``TypeError``. Never a NaN, never another
exception type. ``max_steps`` is kept small everywhere so that no case can run long, and
pytest-timeout fails any case that takes more than 10 s.
"""

import math
import warnings

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import gqlib
from gqlib.errors import GQLibError

# each case (a test function with all its examples) within 10 s; numba compiles first, in the
# fixture below (a cold numba cache takes ~12 s for the driver kernel, docs/bench_solvers.md)
pytestmark = pytest.mark.timeout(10, func_only=True)

FUZZ = settings(derandomize=True, max_examples=100, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

NASTY = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, -1e308, 1e-308, 5e-324, 1e160, 1e-160]
nasty = st.sampled_from(NASTY)
plain = st.floats(-10.0, 10.0, allow_nan=False)
number = st.one_of(plain, nasty)
offset = st.sampled_from([0.0, -5.0, 1e6, 1e12, 3e15, 1e300, math.nan, math.inf])
span = st.one_of(st.floats(-3.0, 3.0, allow_nan=False), st.sampled_from([0.0, 1e-300, 1e300,
                                                                          math.nan, math.inf]))
shape = st.sampled_from([(), (0,), (1,), (3,), (2, 2), (2, 0)])
dtype = st.sampled_from([np.float64, np.float64, np.float32, np.float16, np.int64, np.complex128,
                         np.bool_, object])


def _array(values, shp, dt):
    n = int(np.prod(shp)) if shp else 1
    vals = (list(values) * (n + 1))[:n]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return np.array(vals, dtype=dt).reshape(shp)
        except (ValueError, TypeError, OverflowError):
            return np.array(vals).reshape(shp)


def outcome(call):
    """Run ``call``: return its result, or None for an allowed exception (a gqlib error or an
    input error). Anything else propagates and fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow RuntimeWarnings, GradientAccuracyWarning
        try:
            result = call()
        except (GQLibError, ValueError, TypeError) as e:
            event(type(e).__name__)
            return None
    event("result")
    return result


def assert_finite(a, shp):
    a = np.asarray(a)
    assert a.shape == tuple(shp), (a.shape, shp)
    assert np.all(np.isfinite(a)), a


# -- fields: Python and numba-jitted twins ------------------------------------------------------
def decay(t, y):
    return -y


def blowup(t, y):  # y' = y^2: a singularity at t = 1/y0
    return y * y


def huge(t, y):  # |f0/scale| overflows the initial-step norm
    return -1e160 * y


def nan_late(t, y):  # -inf from t = 0.25 on; dtype-stable, so numba compiles it for float32 too
    return -y if t < 0.25 else np.log(y - y)


FIELDS = {"decay": decay, "blowup": blowup, "huge": huge, "nan_late": nan_late}
JITTED = {name: numba.njit(f) for name, f in FIELDS.items()}


@pytest.fixture(autouse=True, scope="module")
def _compiled():
    """The numba driver kernel, the jitted fields' signatures and the kernel adapters of the
    drawn shapes, compiled outside the timeout (each is a compile of ~0.3 s, more under load)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for f in JITTED.values():
            for dt in (np.float64, np.float32):
                for shp in ((1,), (2,), (3,), (2, 2)):
                    try:
                        gqlib.solve(f, np.ones(shp, dtype=dt), [0.0, 0.5], max_steps=50)
                    except (GQLibError, ValueError, TypeError):
                        pass


# -- solve --------------------------------------------------------------------------------------
def mostly(good, bad):
    """``good`` three times in four, else a draw from ``bad``: most cases corrupt few arguments."""
    return st.one_of(st.just(good), st.just(good), st.just(good), bad)


values = st.lists(st.one_of(plain, plain, plain, nasty), min_size=1, max_size=4)


@FUZZ
@given(field=st.sampled_from(sorted(FIELDS)), jit=st.booleans(), y0=values,
       shp=mostly((2,), shape), dt=mostly(np.float64, dtype), t0=mostly(0.0, offset),
       dspan=mostly(1.0, span), n_out=mostly(3, st.integers(0, 4)),
       method=st.sampled_from(["dopri5", "bosh3", "rk4", "euler", "tsit5", "nope"]),
       step_size=mostly(None, st.sampled_from([0.1, 0.0, -0.1, math.nan, math.inf, 1e-20])),
       rtol=mostly(1e-6, st.sampled_from([0.0, -1.0, math.nan, 1e300, 1e-300])),
       dense=st.booleans())
def test_solve(field, jit, y0, shp, dt, t0, dspan, n_out, method, step_size, rtol, dense):
    f = JITTED[field] if jit else FIELDS[field]
    if step_size is None and method in ("rk4", "euler"):
        step_size = 0.1  # fixed-step methods need one; its corruption is drawn separately
    y0 = _array(y0, shp, dt)
    with np.errstate(all="ignore"):
        t = t0 + dspan * np.linspace(0.0, 1.0, n_out)
    sol = outcome(lambda: gqlib.solve(f, y0, t, method=method, step_size=step_size, rtol=rtol,
                                      max_steps=300, dense_output=dense))
    if sol is None:
        return
    assert_finite(sol.y, (len(t), *y0.shape))
    assert_finite(sol.t, (len(t),))
    if (field == "decay" and method != "euler" and abs(dspan) <= 3 and abs(t0) <= 1e12
            and np.all(np.abs(y0) < 1e100) and step_size is None and rtol == 1e-6):
        # the exact solution: y0 exp(-(t - t0)); loose, tolerances are at most 1e-6
        exact = y0.astype(np.float64) * np.exp(-(sol.t - sol.t[0]))[(...,) + (None,) * y0.ndim]
        np.testing.assert_allclose(sol.y, exact, rtol=1e-3,
                                   atol=1e-6 * np.max(np.abs(y0)) + 1e-8)  # solve atol 1e-9


# -- gauss_legendre -----------------------------------------------------------------------------
@FUZZ
@given(n=st.one_of(st.integers(-3, 200), st.sampled_from([2.5, math.nan, "3", 10 ** 12, 2 ** 70,
                                                           np.int64(7), None, 3.0])),
       a=mostly(-1.0, number), b=mostly(1.0, number), dt=st.sampled_from([np.float64, np.float32, np.float16, np.int64]))
def test_gauss_legendre(n, a, b, dt):
    rule = outcome(lambda: gqlib.gauss_legendre(n, a, b, dtype=dt))
    if rule is None:
        return
    x, w = rule
    k = int(n)
    assert_finite(x, (k,))
    assert_finite(w, (k,))
    if np.isfinite(b - a) and abs(b - a) < 1e300:
        assert math.isclose(float(np.sum(w, dtype=np.float64)), b - a, rel_tol=1e-3,
                            abs_tol=1e3 * float(np.finfo(w.dtype).tiny))


# -- gradient -----------------------------------------------------------------------------------
from gqlib.adjoint import FunctionField, gradient  # noqa: E402


@FUZZ
@given(k=number, y0=st.lists(number, min_size=1, max_size=3), n_out=st.integers(1, 3),
       g=st.lists(number, min_size=1, max_size=4), gshape=st.sampled_from(["right", "short",
                                                                             "flat", "empty"]),
       adjoint=st.sampled_from(["gq", "backsolve", "interpolated", "collocation", "checkpoint",
                                "nope"]),
       extra=st.sampled_from([{}, {}, {"min_step": -1.0}, {"max_step": 0.0}, {"controller": "x"},
                              {"rtol": math.nan}, {"step_size": 0.0}, {"max_steps": 50}]))
def test_gradient(k, y0, n_out, g, gshape, adjoint, extra):
    field = FunctionField(lambda t, y: -k * y, lambda t, y, a: -k * a,
                          lambda t, y, a: np.array([-np.sum(a * y)]))
    y0 = np.array(y0, dtype=np.float64)
    t = np.linspace(0.0, 1.0, n_out)
    sol = outcome(lambda: gqlib.solve(field, y0, t, checkpoints=True, dense_output=True,
                                      max_steps=300))
    if sol is None:
        return
    shp = {"right": (n_out, *y0.shape), "short": (max(n_out - 1, 0), *y0.shape),
           "flat": (n_out * y0.size,), "empty": (0,)}[gshape]
    grad_y = _array(g, shp, np.float64)
    res = outcome(lambda: gradient(field, sol, grad_y, adjoint=adjoint, **extra))
    if res is None:
        return
    assert_finite(res.y0, y0.shape)
    if res.params is not None and n_out > 1:  # n_out == 1: test_bug_single_time_nan_params
        assert np.all(np.isfinite(np.asarray(res.params)))
    if gshape == "right" and extra == {} and abs(k) <= 10 and np.all(np.abs(grad_y) < 1e100):
        # linear: dL/dy0 = sum_i exp(-k t_i) grad_y[i]
        exact = np.sum(np.exp(-k * t)[:, None] * grad_y, axis=0)
        np.testing.assert_allclose(res.y0, exact, rtol=1e-4, atol=1e-6 * np.max(np.abs(grad_y)))


# -- gqlib.torch.odeint -------------------------------------------------------------------------
torch = pytest.importorskip("torch")
from gqlib.torch import odeint  # noqa: E402

TDTYPES = [torch.float64, torch.float32, torch.float16, torch.int64, torch.complex128]


@FUZZ
@given(k=mostly(1.0, number), y0=values, shp=mostly((2,), shape),
       dt=mostly(torch.float64, st.sampled_from(TDTYPES)), t0=mostly(0.0, offset),
       dspan=mostly(1.0, span), n_out=mostly(3, st.integers(0, 4)),
       method=st.sampled_from(["dopri5", "rk4", "euler", "bosh3", "nope"]),
       options=mostly({}, st.sampled_from([{"step_size": 0.0}, {"step_size": -0.1},
                                           {"step_size": math.nan}, {"step_size": 1e-20},
                                           {"first_step": 0.0}, {"max_num_steps": 0}])),
       adjoint=st.sampled_from([None, "gq", "backsolve", "interpolated", "collocation",
                                "checkpoint"]),
       backward=st.booleans())
def test_torch_odeint(k, y0, shp, dt, t0, dspan, n_out, method, options, adjoint, backward):
    lin = torch.nn.Linear(1, 1).double()
    with torch.no_grad():
        lin.weight.fill_(-k)
        lin.bias.zero_()
    y0 = torch.as_tensor(_array(y0, shp, np.float64)).to(dt)

    def func(t, y):
        return lin.weight[0, 0].to(y.dtype) * y

    with np.errstate(all="ignore"):
        t = torch.as_tensor(t0 + dspan * np.linspace(0.0, 1.0, n_out), dtype=torch.float64)
    opts = {"max_num_steps": 300, **options}
    kw = {} if adjoint is None else {"adjoint_params": tuple(lin.parameters())}
    if backward and y0.dtype.is_floating_point:
        y0.requires_grad_(True)

    def call():
        ys = odeint(func, y0, t, method=method, options=opts, adjoint=adjoint, **kw)
        assert_finite(ys.detach().numpy(), (len(t), *y0.shape))
        if backward and ys.requires_grad:
            ys.sum().backward()
            if adjoint is None and not (abs(k) < 1e100 and torch.all(y0.abs() < 1e100)):
                return ys  # torch's own autograd through the steps: its gradient may overflow
            for p in [y0, *lin.parameters()]:
                if p.grad is not None:
                    assert_finite(p.grad.numpy(), p.shape)
        return ys

    outcome(call)


# -- gqlib.sde.sdeint ---------------------------------------------------------------------------
from gqlib.sde import SDE_METHODS, BrownianPath, sdeint  # noqa: E402

PATH = BrownianPath(0.0, 1.0, (2,), seed=0)


@FUZZ
@given(mu=mostly(-1.0, number), sigma=mostly(0.5, number), y0=values, shp=mostly((2,), shape),
       dt=mostly(np.float64, dtype), t0=mostly(0.0, offset), dspan=mostly(1.0, span),
       n_out=mostly(3, st.integers(0, 4)),
       method=st.sampled_from(sorted(SDE_METHODS) + ["nope"]),
       step=mostly(0.1, st.sampled_from([0.0, -0.1, math.nan, math.inf, 1e-9, 5e-324])),
       sde_type=mostly(None, st.sampled_from(["stratonovich", "ito", "bad"])))
def test_sdeint(mu, sigma, y0, shp, dt, t0, dspan, n_out, method, step, sde_type):
    if sde_type is None:  # the method's own type, else a drawn (possibly mismatched) one
        sde_type = getattr(SDE_METHODS.get(method), "sde_type", "stratonovich")
    y0 = _array(y0, shp, dt)
    with np.errstate(all="ignore"):
        t = t0 + dspan * np.linspace(0.0, 1.0, n_out)
    ys = outcome(lambda: sdeint(lambda t, y: mu * y, lambda t, y: sigma * y, y0, t, PATH,
                                method=method, dt=step, sde_type=sde_type, max_steps=300))
    if ys is not None:
        assert_finite(ys, (len(t), *y0.shape))


# -- bugs the fuzzers found, fixed: regression tests -----------------------------------------
@pytest.mark.parametrize("driver", ["numpy", "numba", "torch"])
def test_bug_single_time_nonfinite_y0(driver):
    with pytest.raises((GQLibError, ValueError)):
        if driver == "torch":
            odeint(lambda t, y: -y, torch.tensor([math.nan], dtype=torch.float64),
                   torch.tensor([0.0], dtype=torch.float64))
        else:
            gqlib.solve(JITTED["decay"] if driver == "numba" else decay, np.array([math.nan]),
                        [0.0])


def test_bug_gauss_legendre_float32_overflow():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            x, w = gqlib.gauss_legendre(3, -1.0, 1e39, dtype=np.float32)
        except ValueError:
            return
    assert np.all(np.isfinite(x)) and np.all(np.isfinite(w))


@pytest.mark.parametrize("adjoint", ["gq", "checkpoint"])
def test_bug_single_time_nan_params(adjoint):
    field = FunctionField(decay, lambda t, y, a: -a, lambda t, y, a: np.array([math.nan]))
    sol = gqlib.solve(field, np.ones(1), [0.0], checkpoints=True)
    with pytest.raises(GQLibError):
        gradient(field, sol, np.ones((1, 1)), adjoint=adjoint)
