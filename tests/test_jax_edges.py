"""gqlib.jax at the edges of JAX's transformations: closures, nested transforms, higher order.

What a second hunt for silently wrong gradients checked and found correct (descending and
non-uniform times, t0 = 1e4 / 1e8, gradients for t, PyTree / integer / float32 args, loss on
y(t0) only, vmap over y0 / args / t, float32 without x64, stiff / chaotic / discontinuous fields)
is in tests/test_jax_adjoints.py and tests/test_jax_odeint.py or was measured once (CHANGELOG);
this file holds what was wrong.
"""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402

import gqlib.jax as gj  # noqa: E402
from gqlib.errors import NonFiniteState  # noqa: E402

T = jnp.array([0.0, 0.4, 1.0, 1.7, 2.0])
Y0 = jnp.array([1.0, 2.0])


def field(y, t, k, x):
    return -k * y + 0.5 * jnp.sin(t) * y[::-1] + x


def loss_of(ys):
    return jnp.sum(ys[1:] ** 2)


X = jnp.array([[0.1, -0.2], [0.3, 0.0], [-0.4, 0.2]])  # per-member data
K = jnp.array([1.5, 0.5])


def _by_args(y0, k):
    """The reference: the batched data passed as args."""
    return sum(loss_of(gj.odeint(field, y0, T, k, x, rtol=1e-10, atol=1e-10)) for x in X)


def test_grad_of_vmap_over_data_closed_over():
    # func closes over a vmapped (batched but not differentiated) value: jax.closure_convert
    # hoists only values that may carry a tangent, so this one stayed in the closure and
    # escaped its trace: TypeError "No constant handler for type: BatchTracer".
    def loss(y0, k):
        return jnp.sum(jax.vmap(lambda x: loss_of(gj.odeint(
            lambda y, t: field(y, t, k, x), y0, T, rtol=1e-10, atol=1e-10)))(X))
    g = jax.grad(loss, argnums=(0, 1))(Y0, K)
    ref = jax.grad(_by_args, argnums=(0, 1))(Y0, K)
    for a, b in zip(g, ref, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12)


def test_traced_integer_closed_over_under_jit_and_grad():
    # a traced integer in the closure (a power, a count) was not hoisted: TypeError
    def loss(k, n):
        return loss_of(gj.odeint(lambda y, t: -k * y ** n, Y0, T, rtol=1e-10, atol=1e-10))

    def by_args(k, n):
        return loss_of(gj.odeint(lambda y, t, k, n: -k * y ** n, Y0, T, k, n, rtol=1e-10,
                                 atol=1e-10))
    g = jax.jit(jax.grad(loss))(K, 2)
    np.testing.assert_allclose(np.asarray(g), np.asarray(jax.jit(jax.grad(by_args))(K, 2)),
                               rtol=1e-12)


def _lin(y, t, k):
    return -k * y + 0.5 * jnp.sin(t) * y[::-1]


def test_second_derivatives_raise_clearly():
    # the step loops are host-steered while_loops: JAX cannot differentiate them again. It
    # raised its own errors, which told the user to write a custom_jvp ("Pure callbacks do
    # not support JVP") or to use lax.scan ("Reverse-mode differentiation does not work for
    # lax.while_loop"); never a number
    def loss(k, w=1.0):
        return w * loss_of(gj.odeint(_lin, Y0, T, k, rtol=1e-8, atol=1e-8))
    with pytest.raises(NotImplementedError, match="differentiable once, in reverse mode"):
        jax.hessian(loss)(K)
    with pytest.raises(NotImplementedError, match="differentiable once, in reverse mode"):
        jax.jit(jax.grad(lambda k: jnp.sum(jax.grad(loss)(k))))(K)
    # through the cotangent only (the forward is constant): the backward pass is the one
    # differentiated
    with pytest.raises(NotImplementedError, match="differentiable once, in reverse mode"):
        jax.jacrev(lambda w: jax.grad(loss)(K, w))(2.0)
    # forward mode stops at the custom VJP (JAX's own TypeError, which says so)
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(loss, (K,), (K,))


@pytest.mark.parametrize("row", [0, 2])
def test_a_non_finite_output_cotangent_raises_naming_the_loss(row):
    # as the core's gradient() and gqlib.torch: the loss's gradient dL/dys must be finite.
    # Before, an inf in row 0 (sqrt at 0 of y(t0)) came back as dL/dy0 = inf from checkpoint
    # and collocation (gq and interpolated raised NonFiniteState), and a NaN in a later row
    # raised NonFiniteState telling the user to check the vector field
    def loss(y0, k):
        ys = gj.odeint(_lin, y0, T[:3], k, rtol=1e-8, atol=1e-8)
        return jnp.sum(ys[1:] ** 2) + jnp.sum(jnp.sqrt(ys[row] - ys[row, 0]))
    with pytest.raises(ValueError, match=rf"must be finite; row {row} \(t = "):
        gj.reraise(jax.grad(loss, argnums=(0, 1)))(Y0, K)


def test_an_empty_state_is_rejected_at_the_door():
    # as the core: it raised NonFiniteState "the initial step is not finite: y0 or f(t0, y0)
    # holds NaN or inf" (the RMS norm of nothing is NaN); an empty leaf beside others is fine
    with pytest.raises(ValueError, match="`y0` must have at least one element"):
        gj.odeint(lambda y, t: -y, jnp.zeros((0,)), T)
    with pytest.raises(ValueError, match="`y0` must have at least one element"):
        gj.odeint(lambda y, t: y, {"a": jnp.zeros((2, 0)), "b": jnp.zeros(0)}, T)


def test_collocation_sweeps_converge_on_a_forced_stiff_loss():
    """The core's SWEEP_LIMIT in XLA: panels whose sweeps contract but leave more than 1000
    tolerances are halved (before: 1.25e-3 off at rtol 1e-5 against checkpoint's 2.7e-5)."""
    P = jnp.array([-200.0, 0.5])

    def f(y, t, P):
        return P[0] * (y - jnp.cos(t)) - jnp.sin(t) + P[1] * y[::-1]

    def loss(P, adjoint, rtol):
        ys = gj.odeint(f, jnp.array([1.3, 0.2]), jnp.array([0.0, 2.0]), P, rtol=rtol,
                       atol=rtol / 100, adjoint=adjoint)
        return jnp.sum(ys[1] ** 2)

    ref = jax.grad(loss)(P, "checkpoint", 1e-12)
    err = {a: float(jnp.linalg.norm(jax.grad(loss)(P, a, 1e-5) - ref) / jnp.linalg.norm(ref))
           for a in ("checkpoint", "collocation")}
    assert err["collocation"] <= max(10 * err["checkpoint"], 1e-4), err


def test_a_nan_parameter_vjp_alone_raises_in_the_checkpoint_pass():
    # jnp.where's NaN-gradient trap: for t < 0.5 the forward selects 0, but the cotangent of p
    # is 0 * log(negative) = NaN while the adjoint a stays finite. The checkpoint pass (the
    # default's choice) checked only a and returned dL/dp = nan silently; the other passes raise
    def f(y, t, p):
        return -y + jnp.where(t > 0.5, p * jnp.log(t - 0.5 + 1e-300), 0.0)

    def loss(p):
        return jnp.sum(gj.odeint(f, jnp.ones(1), T[:3], p, rtol=1e-6, atol=1e-8)[-1] ** 2)
    with pytest.raises(NonFiniteState, match="parameter gradient.*checkpoint"):
        gj.reraise(jax.jit(jax.grad(loss)))(0.3)


@pytest.mark.timeout(60, method="thread")  # a hang inside XLA: no signal reaches it
def test_collocation_raises_on_a_nan_adjoint_instead_of_halving_forever():
    # a NaN adjoint (y-VJP NaN for y < 0.3 only: jnp.where's trap) made every panel fail the
    # sweeps' convergence test (`before <= 0` is False for NaN, where the core's `not before
    # > 0` passes it to the finiteness check): the panel was halved to the time resolution and
    # then taken without advancing, forever (a hang; the core raises NonFiniteState)
    def f(y, t, k):
        return jnp.stack([-k * y[0], 0.1 * jnp.where(y[0] > 0.3, jnp.sqrt(y[0] - 0.3), 0.0)])

    def loss(k):
        return jnp.sum(gj.odeint(f, Y0 / 2, T[:3], k, rtol=1e-6, atol=1e-8,
                                 adjoint="collocation")[-1] ** 2)
    with pytest.raises(NonFiniteState, match="collocation"):
        gj.reraise(jax.jit(jax.grad(loss)))(1.5)


def test_a_nan_in_a_backward_solve_names_that_solve():
    # audit: a NaN y-VJP (jnp.where's trap) failed the backward solve's first step with the
    # forward's message, "y0 or f(t0, y0) holds NaN", pointing at the user's y0
    def f(y, t, k):
        return jnp.stack([-k * y[0], 0.1 * jnp.where(y[0] > 0.3, jnp.sqrt(y[0] - 0.3), 0.0)])

    def loss(k):
        return jnp.sum(gj.odeint(f, Y0 / 2, T[:3], k, rtol=1e-6, atol=1e-8, adjoint="gq")[-1] ** 2)
    with pytest.raises(NonFiniteState, match="the backward solve of GQAdjoint failed"):
        gj.reraise(jax.jit(jax.grad(loss)))(1.5)
