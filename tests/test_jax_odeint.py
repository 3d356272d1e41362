"""gqlib.jax.odeint: forward parity with the core, gradients, jit/vmap/disable_jit, errors."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import gqlib  # noqa: E402
import gqlib.jax as gj  # noqa: E402
from gqlib.errors import NonFiniteState, StepSizeTooSmall, TooManySteps  # noqa: E402

T = jnp.linspace(0.0, 2.0, 7)


def f_lin(y, t, k):
    return -k * y + jnp.sin(t)


def f_tree(y, t, p):
    return {"a": -p["w"] * y["a"] + jnp.tanh(y["b"]), "b": -p["c"] * y["b"] * jnp.cos(t)}


TREE_Y0 = {"a": jnp.array([1.0, -0.5]), "b": jnp.array(0.5)}
TREE_P = {"w": jnp.array([1.0, 2.0]), "c": jnp.array(0.3)}


# -- forward ----------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["dopri5", "tsit5", "dop853", "bosh3", "fehlberg2", "dopri8"])
def test_forward_takes_the_cores_steps(method):
    """Same steps as gqlib.solve (decisions from the core): equal NFE/attempts, equal ys."""
    y0 = np.array([1.0, 2.0])
    ys, st = gj.odeint(f_lin, jnp.asarray(y0), T, 1.5, rtol=1e-7, atol=1e-9, method=method,
                       return_stats=True)
    sol = gqlib.solve(lambda t, y: -1.5 * y + np.sin(t), y0, np.asarray(T), rtol=1e-7,
                      atol=1e-9, method=method)
    assert {k: int(v) for k, v in st.items()} == sol.stats
    # same steps; the interpolants differ only by round-off (dop853: degree 7)
    np.testing.assert_allclose(np.asarray(ys), sol.y, rtol=1e-11, atol=1e-13)


def test_options_first_step_max_norm_and_controller():
    y0 = np.array([1.0, 2.0])
    ctrl = gqlib.PIController(safety=0.8, beta2=0.04)
    kw = dict(rtol=1e-6, atol=1e-8, first_step=0.01, norm="max", controller=ctrl,
              max_step=0.3)
    ys, st = gj.odeint(f_lin, jnp.asarray(y0), T, 1.5, return_stats=True, **kw)
    sol = gqlib.solve(lambda t, y: -1.5 * y + np.sin(t), y0, np.asarray(T),
                      method="dopri5_shampine", **kw)  # gqlib.jax's default
    assert {k: int(v) for k, v in st.items()} == sol.stats
    np.testing.assert_allclose(np.asarray(ys), sol.y, rtol=1e-12)


def test_fixed_step_and_backwards_in_time():
    y0 = np.array([1.0])
    t = jnp.array([1.0, 0.7, 0.0])
    ys, st = gj.odeint(f_lin, jnp.asarray(y0), t, 1.5, method="rk4", step_size=0.1,
                       return_stats=True)
    sol = gqlib.solve(lambda t, y: -1.5 * y + np.sin(t), y0, np.asarray(t), method="rk4",
                      step_size=0.1)
    assert {k: int(v) for k, v in st.items()} == sol.stats
    np.testing.assert_allclose(np.asarray(ys), sol.y, rtol=1e-14)


def test_float32():
    with jax.enable_x64(False):
        y0 = jnp.array([1.0, 2.0], dtype=jnp.float32)
        t = jnp.linspace(0.0, 1.0, 4, dtype=jnp.float32)
        ys = jax.jit(lambda y: gj.odeint(lambda y, t: -y, y, t, rtol=1e-5, atol=1e-6))(y0)
        assert ys.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(ys[-1]), np.exp(-1.0) * np.array([1, 2]),
                                   rtol=2e-5)
        g = jax.grad(lambda y: gj.odeint(lambda y, t: -y, y, t, rtol=1e-5, atol=1e-6)[-1, 0])(y0)
        assert g.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(g), [np.exp(-1.0), 0.0], rtol=2e-5, atol=1e-7)


def test_float32_state_with_x64_times():
    y0 = jnp.array([1.0, 2.0], dtype=jnp.float32)
    ys = gj.odeint(lambda y, t: -y, y0, T, rtol=1e-5, atol=1e-6)
    assert ys.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(ys[-1]), np.exp(-2.0) * np.array([1, 2]), rtol=1e-4)


@pytest.mark.slow  # ~15 s: op-by-op dispatch compiles every primitive once
def test_disable_jit_and_jit_agree():
    y0, t = jnp.array([1.0, 2.0]), jnp.array([0.0, 0.1, 0.2])
    kw = dict(rtol=1e-3, atol=1e-3)
    ys = gj.odeint(f_lin, y0, t, 1.5, **kw)
    with jax.disable_jit():  # the loops run in Python, op by op: keep it short
        ys_eager = gj.odeint(f_lin, y0, t, 1.5, **kw)
        g_eager = jax.grad(lambda k: gj.odeint(f_lin, y0, t, k, **kw)[-1, 0])(1.5)
    np.testing.assert_allclose(np.asarray(ys_eager), np.asarray(ys), rtol=1e-12)
    g = jax.jit(jax.grad(lambda k: gj.odeint(f_lin, y0, t, k, **kw)[-1, 0]))(1.5)
    np.testing.assert_allclose(float(g_eager), float(g), rtol=1e-12)


def test_single_time():
    ys = gj.odeint(f_lin, jnp.ones(2), jnp.array([0.5]), 1.0)
    assert ys.shape == (1, 2)


# -- gradients --------------------------------------------------------------------------------
def test_check_grads_checkpoint():
    def loss(y0, k, t):
        return jnp.sum(gj.odeint(f_lin, y0, t, k, rtol=1e-10, atol=1e-10) ** 2)
    check_grads(loss, (jnp.array([1.0, 2.0]), 1.5, T), order=1, modes=["rev"])


def test_default_is_the_cores_auto_resolved_from_shapes():
    # "auto" (the core's default) resolves at trace time: checkpoint for a small parameter
    # count, its interpolated candidate where the parameters outnumber the state ratio times
    from gqlib.adjoint import DEFAULT_ADJOINT, AutoAdjoint
    assert DEFAULT_ADJOINT == "auto"

    def grad(adjoint):
        def loss(W):
            ys = gj.odeint(lambda y, t, W: jnp.tanh(W @ y), jnp.ones(3), T, W, adjoint=adjoint,
                           rtol=1e-10, atol=1e-10)
            return jnp.sum(ys ** 2)
        return jax.jit(jax.grad(loss))(0.5 * jnp.eye(3) + 0.1)

    default, checkpoint = grad(None), grad("checkpoint")
    np.testing.assert_array_equal(default, checkpoint)  # 9 parameters, state 3: checkpoint
    np.testing.assert_array_equal(grad(AutoAdjoint(ratio=1e-3)), grad("interpolated"))
    np.testing.assert_allclose(grad("interpolated"), checkpoint, rtol=1e-7)


def test_closure_over_traced_values():
    y0 = jnp.array([1.0, 2.0])

    def loss(k):
        return jnp.sum(gj.odeint(lambda y, t: -k * y, y0, T, rtol=1e-10, atol=1e-10)[-1])
    expected = -2.0 * 3.0 * np.exp(-3.0)
    np.testing.assert_allclose(float(jax.jit(jax.grad(loss))(1.5)), expected, rtol=1e-8)


@pytest.mark.slow  # ~10 s; PyTree states and args are in the default run's diffrax comparison
def test_pytree_state_and_args():
    def loss(y0, p):
        ys = gj.odeint(f_tree, y0, T, p, rtol=1e-10, atol=1e-10)
        return jnp.sum(ys["a"] ** 2) + jnp.sum(ys["b"])
    ys = gj.odeint(f_tree, TREE_Y0, T, TREE_P)
    assert ys["a"].shape == (7, 2) and ys["b"].shape == (7,)
    check_grads(loss, (TREE_Y0, TREE_P), order=1, modes=["rev"])


def test_integer_args_are_held_fixed():
    def f(y, t, k, n):
        return -k * y * n
    g = jax.grad(lambda k: gj.odeint(f, jnp.ones(1), T, k, jnp.array(2))[-1, 0])(0.5)
    np.testing.assert_allclose(float(g), -2.0 * 2.0 * np.exp(-2.0), rtol=1e-6)


def test_vmap_matches_single_solves():
    Y0 = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.1, 0.2]])
    solve = lambda y0: gj.odeint(f_lin, y0, T, 1.5, rtol=1e-10, atol=1e-10)  # noqa: E731
    vm = jax.jit(jax.vmap(solve))(Y0)
    for m in range(3):
        np.testing.assert_allclose(np.asarray(vm[m]), np.asarray(solve(Y0[m])), rtol=0,
                                   atol=1e-9)


def test_grad_through_vmap():
    Y0 = jnp.array([[1.0, 2.0], [3.0, -1.0]])

    def loss(k):
        return jnp.sum(jax.vmap(lambda y0: gj.odeint(f_lin, y0, T, k))(Y0) ** 2)

    def loop(k):
        return sum(jnp.sum(gj.odeint(f_lin, y0, T, k) ** 2) for y0 in Y0)
    np.testing.assert_allclose(float(jax.jit(jax.grad(loss))(1.5)), float(jax.grad(loop)(1.5)),
                               rtol=1e-12)


# -- errors -----------------------------------------------------------------------------------
def blowup(y, t):
    return y * y


def test_solve_failure_eager_has_the_gqlib_class():
    with pytest.raises(StepSizeTooSmall) as info:
        gj.odeint(blowup, jnp.array([1.0]), jnp.array([0.0, 2.0]))
    assert 0.99 < info.value.t < 1.01 and info.value.h < 1e-10


def test_solve_failure_under_disable_jit():
    with jax.disable_jit(), pytest.raises(NonFiniteState):
        gj.odeint(lambda y, t: y * jnp.nan, jnp.ones(1), jnp.array([0.0, 1.0]))


def test_solve_failure_under_jit_names_class_t_h_and_remedy():
    fn = jax.jit(lambda y0: gj.odeint(blowup, y0, jnp.array([0.0, 2.0])))
    with pytest.raises(Exception) as info:
        jax.block_until_ready(fn(jnp.array([1.0])))
    text = str(info.value)
    assert "StepSizeTooSmall" in text and "t = 1.0" in text and "h = " in text
    assert "stiff" in text
    with pytest.raises(StepSizeTooSmall):  # the documented wrapper restores the class
        gj.reraise(fn)(jnp.array([1.0]))


def test_too_many_steps():
    with pytest.raises(TooManySteps):
        gj.odeint(f_lin, jnp.ones(1), T, 1.0, max_steps=3)


def test_non_finite():
    with pytest.raises(NonFiniteState):
        gj.odeint(lambda y, t: y * jnp.nan, jnp.ones(1), T)


def test_backward_failure_has_the_gqlib_class():
    def f(y, t, k):  # finite forward; d/dy sqrt(y - y) = 0 / (2 sqrt(0)) is NaN
        return -k * y + jnp.sqrt(y - y)
    grad = jax.grad(lambda k: gj.odeint(f, jnp.array([1.0]), jnp.array([0.0, 0.5]), k,
                                        rtol=1e-3)[-1, 0])
    with pytest.raises(Exception, match="NonFiniteState.*t = "):
        jax.jit(grad)(1.0)
    with pytest.raises(NonFiniteState):
        gj.reraise(grad)(1.0)


@pytest.mark.slow  # ~6 s under disable_jit
def test_backward_failure_under_disable_jit_has_the_gqlib_class():
    def f(y, t, k):
        return -k * y + jnp.sqrt(y - y)
    with jax.disable_jit(), pytest.raises(NonFiniteState):
        jax.grad(lambda k: gj.odeint(f, jnp.array([1.0]), jnp.array([0.0, 0.1]), k,
                                     rtol=1e-2, atol=1e-2)[-1, 0])(1.0)


@pytest.mark.parametrize("kwargs, exc, word", [
    (dict(method="nope"), ValueError, "method"),
    (dict(adjoint="nope"), ValueError, "adjoint"),
    (dict(rtol=-1.0), ValueError, "rtol"),
    (dict(rtol=jnp.ones(1)), TypeError, "rtol"),
    (dict(max_steps=0), ValueError, "max_steps"),
    (dict(step_size=0.0), ValueError, "step_size"),
    (dict(method="rk4"), ValueError, "step_size"),
    (dict(return_stats=1), TypeError, "return_stats"),
])
def test_bad_options(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        gj.odeint(f_lin, jnp.ones(2), T, 1.0, **kwargs)


def test_bad_inputs():
    with pytest.raises(TypeError, match="y0"):
        gj.odeint(f_lin, jnp.ones(2, dtype=jnp.int32), T, 1.0)
    with pytest.raises(ValueError, match="strictly monotonic"):
        gj.odeint(f_lin, jnp.ones(2), jnp.array([0.0, 1.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="`t`"):
        gj.odeint(f_lin, jnp.ones(2), jnp.ones((2, 2)), 1.0)
    with pytest.raises(TypeError, match="func"):
        gj.odeint(lambda y, t: y.astype(jnp.float32), jnp.ones(2), T)
    with pytest.raises(ValueError, match="func"):
        gj.odeint(lambda y, t: y[:1], jnp.ones(2), T)
    with pytest.raises(TypeError, match="func"):
        gj.odeint(None, jnp.ones(2), T)


def test_traced_bad_times_are_validated_on_the_host():
    fn = gj.reraise(jax.jit(lambda t: gj.odeint(f_lin, jnp.ones(2), t, 1.0)))
    with pytest.raises(ValueError, match="strictly monotonic"):
        fn(jnp.array([0.0, 1.0, 0.5]))


def test_a_strategy_not_run_says_what_is():
    from gqlib.adjoint import CollocationAdjoint

    class Mine(CollocationAdjoint):
        pass
    with pytest.raises(NotImplementedError, match="Mine.*checkpoint.*gq.*collocation"):
        gj.odeint(f_lin, jnp.ones(2), T, 1.0, adjoint=Mine())


def test_collocation_past_max_panels_raises_too_many_steps():
    from gqlib.adjoint import CollocationAdjoint
    from gqlib.errors import TooManySteps

    def loss(k):
        return jnp.sum(gj.odeint(f_lin, jnp.ones(2), T, k,
                                 adjoint=CollocationAdjoint(max_panels=2)) ** 2)
    with pytest.raises(TooManySteps, match="max_panels = 2 collocation panels .t = "):
        gj.reraise(jax.grad(loss))(1.0)



def test_docstring_examples():
    import doctest

    import gqlib.jax._odeint as mod
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 4 and result.failed == 0


def test_backsolve_float32_args_with_float64_state():
    # review repro: backsolve's final jump mixed the float64 state block with the float32
    # parameter accumulator (lax.cond branches must agree); the gradient keeps W's dtype
    W = jnp.eye(2, dtype=jnp.float32)

    def loss(W, adjoint):
        ys = gj.odeint(lambda y, t, W: (-(W @ y)).astype(y.dtype), jnp.ones(2),
                       jnp.array([0.0, 0.5, 1.0]), W, adjoint=adjoint)
        return ys.sum()

    g = jax.grad(loss)(W, "backsolve")
    assert g.dtype == jnp.float32
    np.testing.assert_allclose(g, jax.grad(loss)(W, "checkpoint"), rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.int32])
def test_y0_dtype_at_the_door(dtype):
    # float16 reached the solver and failed as a NaN first step (misleading NonFiniteState)
    with pytest.raises(TypeError, match="float32 or float64"):
        gj.odeint(lambda y, t: -y, jnp.ones(2, dtype=dtype), jnp.linspace(0.0, 1.0, 3))
