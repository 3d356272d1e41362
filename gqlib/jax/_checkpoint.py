"""The core's :class:`~gqlib.adjoint.CheckpointAdjoint` in XLA: the discrete adjoint of the
recorded Runge-Kutta steps.

Each accepted forward step is recomputed from its checkpoint ``(t0, h, t1, y0)`` inside
``jax.vjp`` (the same :class:`~gqlib.jax._rk.RK` step the forward ran, step sizes frozen) and
back-propagated: ``ybar_0, thetabar += vjp(step)(ybar_1, Qbar)``, where ``Qbar`` carries the
outputs the forward interpolated inside the step. One ``lax.while_loop`` over the steps, last
first; no decision is taken here (the forward took them all). As in the core
(:mod:`gqlib.adjoint._checkpoint`), ``dL/dt_i = g_i . f(t_i, y_i)`` and
``dL/dt_0 = -a(t_0) . f(t_0, y_0)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._forward import concrete
from ._host import fail_cotangent, fail_non_finite

__all__ = ["checkpoint_backward", "time_gradients", "check_finite", "check_cotangent"]


def check_finite(bad, t, h, what):
    """Raise NonFiniteState (via a host callback) when ``bad``, with the t and h recorded."""
    if concrete((bad, t, h)):  # jax.disable_jit(): errors keep their class
        return jnp.asarray(fail_non_finite(what)(np.asarray(bad), np.asarray(t), np.asarray(h)))
    # io_callback: a side effect, never removed as dead code
    from jax.experimental import io_callback
    return io_callback(fail_non_finite(what), jax.ShapeDtypeStruct((), jnp.bool_), bad, t, h,
                       ordered=False)


def check_cotangent(g, t_out):
    """Raise the core's ValueError (via a host callback) when the output cotangent ``g``
    (``N x D``, the loss's gradient) holds NaN or inf, naming the first such row: the backward
    passes would carry it into the adjoint (or, in row 0, straight into dL/dy0)."""
    rows = ~jnp.all(jnp.isfinite(g), axis=1)
    i = jnp.argmax(rows).astype(jnp.int32)
    args = (jnp.any(rows), i, t_out[i])
    if concrete(args):
        return jnp.asarray(fail_cotangent(*[np.asarray(a) for a in args]))
    from jax.experimental import io_callback
    return io_callback(fail_cotangent, jax.ShapeDtypeStruct((), jnp.bool_), *args,
                       ordered=False)


def time_gradients(prob, t_out, ys, g, a0):
    """``dL/dt_i = g_i . f(t_i, y_i)`` (i >= 1), ``dL/dt_0 = -a(t_0) . f(t_0, y_0)``."""
    fs = jax.vmap(prob.F)(t_out, ys)
    dt = jnp.sum(g * fs, axis=1)
    return dt.at[0].set(-jnp.sum(a0 * fs[0])).astype(t_out.dtype)


def checkpoint_backward(prob, rk, fw, t_out, g):
    """``(dL/dy0, dL/dargs, dL/dt, stats)`` for output cotangents ``g`` (``N x D``)."""
    N, D = g.shape
    d = jnp.where(t_out[-1] >= t_out[0], 1.0, -1.0).astype(t_out.dtype)
    dargs0 = tuple(jnp.zeros_like(x) for x in prob.dargs)
    degree = rk.degree

    def step(t0, h, t1, y0, dargs, dense: bool):
        F = lambda t, y: prob.Fp(t, y, dargs)  # noqa: E731
        K, y1 = rk.stages(F, t0, h, t1, y0, F(t0, y0))
        if not dense:
            return y1
        f1 = None if rk.fsal or rk.P is not None else F(t1, y1)
        return y1, rk.dense(F, K, t0, h, t1, y0, y1, f1)

    def body(c):
        k, j, a, dargs_bar, bad, bad_t, bad_h, nfe = c
        t0, h, t1, y0 = fw.ck_t0[k], fw.ck_h[k], fw.ck_t1[k], fw.ck_y[k]
        at = (j >= 1) & (t_out[j] == t1)
        a = a + jnp.where(at, g[j], 0.0)
        j = j - at.astype(jnp.int32)
        # outputs strictly inside this step: j - n_in + 1 .. j
        idx = jnp.arange(N)
        inside = (idx >= 1) & (idx <= j) & (d * (t_out - t0) > 0)
        n_in = jnp.sum(inside).astype(jnp.int32)
        hs = (t1 - t0)
        theta = jnp.where(inside, (t_out - t0) / hs, 0.0)
        powers = theta[:, None] ** jnp.arange(1, degree + 1, dtype=theta.dtype)  # (N, deg)
        gm = jnp.where(inside[:, None], g, 0.0)
        Qbar = hs.astype(g.dtype) * (gm.T @ powers.astype(g.dtype))                 # (D, deg)
        direct = jnp.sum(gm, axis=0)

        def with_dense(_):
            _, pull = jax.vjp(lambda y, p: step(t0, h, t1, y, p, True), y0, prob.dargs)
            return pull((a, Qbar))

        def plain(_):
            _, pull = jax.vjp(lambda y, p: step(t0, h, t1, y, p, False), y0, prob.dargs)
            return pull(a)

        ybar, pbar = lax.cond(n_in > 0, with_dense, plain, None)
        a = ybar + direct
        dargs_bar = jax.tree_util.tree_map(jnp.add, dargs_bar, pbar)
        nfe = nfe + rk.s
        newly = ~bad & ~jnp.all(jnp.isfinite(a))
        bad_t, bad_h = jnp.where(newly, t0, bad_t), jnp.where(newly, hs, bad_h)
        return k - 1, j - n_in, a, dargs_bar, bad | newly, bad_t, bad_h, nfe

    init = (fw.n_acc - 1, jnp.int32(N - 1), jnp.zeros((D,), g.dtype), dargs0, jnp.bool_(False),
            t_out[0], jnp.zeros((), t_out.dtype), jnp.int32(0))
    k, j, a, dargs_bar, bad, bad_t, bad_h, nfe = lax.while_loop(
        lambda c: c[0] >= 0, body, init)
    ok = check_finite(bad, bad_t, bad_h, "the adjoint became non-finite in the discrete "
                                         "(checkpoint) backward pass")
    a = jnp.where(ok, a, a)  # keep the check alive
    dt = time_gradients(prob, t_out, fw.ys, g, a)
    stats = {"nfe_f": nfe + N, "nfe_vjp_y": nfe, "nfe_vjp_params": nfe, "n_nodes": 0}
    return a + g[0], dargs_bar, dt, stats
