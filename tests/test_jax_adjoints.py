"""gqlib.jax's adjoint strategies against diffrax (Dopri8 at 1e-12) and by check_grads."""

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402

import gqlib.jax as gj  # noqa: E402
from gqlib.adjoint import BacksolveAdjoint, CollocationAdjoint, GQAdjoint  # noqa: E402

T = jnp.array([0.0, 0.4, 1.0, 1.7, 2.0])


def field(y, t, p):
    """A nonlinear, non-autonomous field on a PyTree state with PyTree parameters."""
    a, b = y["a"], y["b"]
    da = jnp.tanh(p["W"] @ a + p["c"] * jnp.sin(t)) - 0.3 * a * b
    db = -p["k"] * b + 0.1 * jnp.sum(a ** 2)
    return {"a": da, "b": db}


Y0 = {"a": jnp.array([0.5, -0.3, 0.8]), "b": jnp.array(0.7)}
P = {"W": jnp.array([[-0.5, 0.8, 0.1], [-0.7, -0.2, 0.4], [0.3, -0.6, -0.4]]),
     "c": jnp.array([0.3, -0.2, 0.5]), "k": jnp.array(0.9)}


def loss_of(ys):
    return jnp.sum(ys["a"] ** 2 * jnp.arange(1.0, 4.0)) + jnp.sum(jnp.cos(ys["b"]))


STRATEGIES = ["checkpoint", "gq", GQAdjoint(nodes="paper"), "backsolve",
              BacksolveAdjoint(seminorm=True), "interpolated", "collocation",
              CollocationAdjoint(nodes=2, sweeps=2, max_panel=0.3)]
IDS = ["checkpoint", "gq", "gq-paper", "backsolve", "backsolve-seminorm", "interpolated",
       "collocation", "collocation-split"]
# each strategy compiles its own forward and backward loops (5-15 s on 2 busy cores): the
# default run checks every strategy against diffrax and gq fully; the rest run in `make test-all`
_slow = pytest.mark.slow


def _some(keep):
    return [pytest.param(s, id=i, marks=() if i in keep else _slow)
            for s, i in zip(STRATEGIES, IDS, strict=True)]


@pytest.fixture(scope="module")
def diffrax_grads():
    diffrax = pytest.importorskip("diffrax")

    def loss(y0, p, t):
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(lambda t, y, p: field(y, t, p)), diffrax.Dopri8(), t[0], t[-1],
            None, y0, args=p, saveat=diffrax.SaveAt(ts=t),
            stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12),
            max_steps=100_000)
        return loss_of(sol.ys)
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(Y0, P, T)


def _rel(x, ref):
    x, ref = np.asarray(x), np.asarray(ref)
    return float(np.max(np.abs(x - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("adjoint", STRATEGIES[:-1], ids=IDS[:-1])
def test_gradients_equal_diffrax(adjoint, diffrax_grads):
    def loss(y0, p, t):
        return loss_of(gj.odeint(field, y0, t, p, rtol=1e-10, atol=1e-10, adjoint=adjoint))
    grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(Y0, P, T)
    flat, _ = jax.tree_util.tree_flatten(grads)
    ref, _ = jax.tree_util.tree_flatten(diffrax_grads)
    for g, r in zip(flat, ref, strict=True):
        assert _rel(g, r) < 1e-6, (adjoint, g, r)


def lin(y, t, k):
    return -k * y + 0.5 * jnp.sin(t) * y[::-1]


@pytest.mark.parametrize("adjoint", _some({"checkpoint", "gq", "backsolve", "interpolated",
                                           "collocation"}))
def test_check_grads(adjoint):
    def loss(y0, k, t):
        return jnp.sum(gj.odeint(lin, y0, t, k, rtol=1e-10, atol=1e-10, adjoint=adjoint) ** 2)
    check_grads(loss, (jnp.array([1.0, 2.0]), jnp.array([1.5, 0.5]), T), order=1,
                modes=["rev"])


@pytest.mark.parametrize("adjoint", _some(set())[1:])  # checkpoint: test_jax_odeint.py
def test_grad_through_vmap(adjoint):
    Y = jnp.array([[1.0, 2.0], [3.0, -1.0]])
    solve = lambda y0, k: gj.odeint(lin, y0, T, k, rtol=1e-10, atol=1e-10,  # noqa: E731
                                    adjoint=adjoint)
    g_vmap = jax.jit(jax.grad(lambda k: jnp.sum(jax.vmap(lambda y: solve(y, k))(Y) ** 2)))
    g_loop = jax.grad(lambda k: sum(jnp.sum(solve(y, k) ** 2) for y in Y))
    k = jnp.array([1.5, 0.5])
    np.testing.assert_allclose(np.asarray(g_vmap(k)), np.asarray(g_loop(k)), rtol=1e-12)


# -- the same decisions as the core -------------------------------------------------------------
@pytest.mark.parametrize("reverse", [False, pytest.param(True, marks=_slow)])
@pytest.mark.parametrize("adjoint", [*_some({"gq", "collocation-split"}), pytest.param(
    GQAdjoint(rtol=1e-9, atol=1e-11), id="gq-tight-backward")])
def test_same_gradient_as_the_core(adjoint, reverse):
    """At a loose tolerance (where strategies differ by ~rtol) the adapter's gradient equals the
    core's gradient() on a NumPy field to round-off: same steps, restarts, node counts, nodes.
    gq-tight-backward: the restart jumps are ~1e3 backward tolerances, which the node rule
    reads past (the segments moved back by them), in both."""
    from adjoint_fields import TanhField

    import gqlib
    from gqlib.adjoint import gradient

    rng = np.random.default_rng(3)
    W, b = 0.8 * rng.standard_normal((3, 3)), 0.3 * rng.standard_normal(3)
    field_np = TanhField(W, b)
    y0 = np.array([0.5, -0.2, 0.9])
    t = np.array([0.0, 0.5, 1.3, 2.0])
    if reverse:  # integrate backwards in time
        t = t[::-1].copy()
    G = rng.standard_normal((4, 3))
    kw = dict(rtol=1e-6, atol=1e-8)
    strategy = gqlib.adjoint.as_strategy(adjoint)
    need = strategy.forward_record
    sol = gqlib.solve(field_np, y0, t, checkpoints=need == "checkpoints",
                      dense_output=need == "dense", method="dopri5_shampine",  # gqlib.jax's
                      **kw)
    ref = gradient(field_np, sol, G, adjoint=strategy)

    def f(y, t, W, b):
        return (1.0 + 0.5 * jnp.sin(2.0 * t)) * jnp.tanh(W @ y + b) - 0.1 * y

    def loss(y0, W, b, t):
        return jnp.sum(gj.odeint(f, y0, t, W, b, adjoint=adjoint, **kw) * G)
    gy0, gW, gb, gt = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(
        jnp.asarray(y0), jnp.asarray(W), jnp.asarray(b), jnp.asarray(t))
    for got, want in ((gy0, ref.y0), (np.concatenate([np.ravel(gW), gb]), ref.params),
                      (gt, ref.t)):
        assert _rel(got, want) < 1e-10, (adjoint, got, want)


def test_a_short_node_rule_warns_as_in_the_core():
    """nodes=1 cannot resolve the backward state at rtol 1e-8: the core's warning, from the
    adapter's quadrature too; the adaptive rule does not warn."""
    from gqlib.errors import GradientAccuracyWarning

    def loss(k, adjoint):
        return jnp.sum(gj.odeint(lin, jnp.array([1.0, 2.0]), T, k, rtol=1e-8, atol=1e-8,
                                 adjoint=adjoint) ** 2)
    k = jnp.array([1.5, 0.5])
    with pytest.warns(GradientAccuracyWarning, match="nodes=1 put 1 Gauss-Legendre"):
        jax.block_until_ready(jax.grad(loss)(k, GQAdjoint(nodes=1)))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientAccuracyWarning)
        jax.block_until_ready(jax.grad(loss)(k, "gq"))


@_slow  # 5.5 s, mostly compilation
def test_collocation_subdivides_stiff_steps_beyond_the_stability_limit():
    """The core's stiff case (tests/test_adjoint_collocation.py): dopri5 steps reach
    |h lambda| = 6.5 on eigenvalues -1 ... -200, where the default sweeps amplified the stiff
    part of the adjoint; dL/dA was 4.2e-4 off the exact gradient (measured 3.0e-8 with the
    panels halved where the sweeps do not contract), also under vmap."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from adjoint_trust import dissipative, linear_reference
    lin, y0, t = dissipative(200.0, n_out=3)
    ref_y0, ref_p = linear_reference(lin, y0, t)

    def loss(y0, A):
        ys = gj.odeint(lambda y, t, A: A @ y, y0, jnp.asarray(t), A, rtol=1e-6, atol=1e-8,
                       method="dopri5", adjoint="collocation")
        return jnp.sum(ys[1:] ** 2)
    grad = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(0, None)))
    gy, gA = grad(jnp.stack([jnp.asarray(y0), 2.0 * jnp.asarray(y0)]), jnp.asarray(lin.A))
    for k, scale in enumerate((1.0, 2.0)):  # L is quadratic in y0
        err = np.linalg.norm(np.ravel(gA[k]) - scale ** 2 * ref_p) / np.linalg.norm(
            scale ** 2 * ref_p)
        assert err < 1e-6, (k, err)
        assert np.linalg.norm(gy[k] - scale * ref_y0) < 1e-6 * np.linalg.norm(scale * ref_y0)


def test_a_low_order_interpolant_warns_as_in_the_core():
    """The core's GradientAccuracyWarning for dopri8's dense output (tests/test_adjoint.py):
    gqlib.jax's interpolated adjoint was 440 x rtol off at rtol 1e-11 (dL/dA 4.4e-9), silently;
    "auto" takes the discrete adjoint there instead."""
    import warnings

    from gqlib.errors import GradientAccuracyWarning
    y0, A = jnp.ones(2), jnp.array([[-0.5, 0.2], [0.1, -0.3]])
    t = jnp.array([0.0, 1.0])
    with pytest.warns(GradientAccuracyWarning, match="dense output of 'dopri8'"):
        gj.odeint(lambda y, t, A: A @ y, y0, t, A, method="dopri8", adjoint="interpolated")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientAccuracyWarning)
        gj.odeint(lambda y, t, A: A @ y, y0, t, A, method="dop853", adjoint="interpolated")
    from gqlib.adjoint import AutoAdjoint
    from gqlib.jax._odeint import _auto_choice
    big = jnp.zeros(1000)
    assert _auto_choice(AutoAdjoint(ratio=10), y0, big, "dopri5").name == "interpolated"
    assert _auto_choice(AutoAdjoint(ratio=10), y0, big, "dopri8").name == "checkpoint"


def lotka_volterra(y, t, p):
    return jnp.stack([p[0] * y[0] - p[1] * y[0] * y[1], p[2] * y[0] * y[1] - p[3] * y[1]])


@pytest.mark.parametrize("adjoint", ["interpolated", "gq", pytest.param(
    CollocationAdjoint(nodes=2, sweeps=1), id="collocation-1-sweep")])
def test_the_gradient_scales_with_the_loss(adjoint):
    """The backward solve runs on dL/dy / max|dL/dy|, so its atol means the same at any loss
    scale: grad(1e-8 L) / 1e-8 equals grad(L) to round-off (measured <= 9.9e-16 relative, both
    strategies, every argument). Before, the adjoint of a loss times 1e-8 sat under atol: the
    interpolated gradient was 139 % off (dL/dy0; dL/dp 150 %), gq's 1.9e-5, silently.
    Collocation holds a / max|dL/dy| to the sweeps' convergence test (rtol 1e-4, one sweep:
    was 6.3e-3 off at a loss times 1e-8)."""
    tol = 1e-4 if isinstance(adjoint, CollocationAdjoint) else 1e-6

    def loss(y0, p, t, c):
        return c * jnp.sum(gj.odeint(lotka_volterra, y0, t, p, rtol=tol, atol=tol,
                                     adjoint=adjoint) ** 2)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    args = jnp.array([1.0, 0.5]), jnp.array([1.5, 1.0, 1.0, 3.0]), jnp.array([0.0, 1.5, 3.0])
    ref, small = grad(*args, 1.0), grad(*args, 1e-8)
    errs = [_rel(np.asarray(got) / 1e-8, want) for got, want in zip(small, ref, strict=True)]
    assert max(errs) < 1e-12, errs
