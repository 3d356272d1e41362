"""The core's :class:`~gqlib.adjoint.CheckpointAdjoint` in XLA: the discrete adjoint of the
recorded Runge-Kutta steps.

Each accepted forward step is recomputed from its checkpoint ``(t0, h, t1, y0)`` inside
``jax.vjp`` (the same :class:`~gqlib.jax._rk.RK` step the forward ran, step sizes frozen) and
back-propagated: ``ybar_0, thetabar += vjp(step)(ybar_1, Qbar)``, where ``Qbar`` carries the
outputs the forward interpolated inside the step. One ``lax.while_loop`` over the steps, last
first; no decision is taken here (the forward took them all). As in the core
(:mod:`gqlib.adjoint._checkpoint`), ``dL/dt_i = g_i . f(t_i, y_i)`` and
``dL/dt_0 = -a(t_0) . f(t_0, y_0)``.

The core's stiffness check (:mod:`gqlib.adjoint._stiffness`) runs inside the loop: each
recomputed step returns, beside its VJP, its first stage ``(y0, f(t0, y0))`` and its stage ``j``
at ``c_j = 1`` (:func:`~gqlib.adjoint._stiffness.estimate_pair`); step ``k``'s
``rho = ||f(t1, y1) - f(t1, Y_j)|| / ||y1 - Y_j||`` pairs its stage ``j`` with step ``k + 1``'s
first stage (carried; none for the last step; the jax forward has no tstops), and Kadane's
running and best sums of ``log|R(-h rho)|`` are carried too. Past
:data:`~gqlib.adjoint.STIFF_GROWTH_LIMIT` a host callback warns with the core's message.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..adjoint._stiffness import STIFF_GROWTH_LIMIT, estimate_pair, stability_polynomial
from ._forward import concrete, time_dtype
from ._host import fail_cotangent, fail_non_finite, stiff_warning

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


def warn_stiff(method, over, growth, k0, k1, t_first, t_last):
    """Warn (via a host callback, the core's message) where the stiffness check's growth is past
    :data:`~gqlib.adjoint.STIFF_GROWTH_LIMIT` (``over``), naming steps ``k0..k1``."""
    cb = stiff_warning(method)
    args = (over, growth, k0, k1, t_first, t_last)
    if concrete(args):
        return jnp.asarray(cb(*[np.asarray(x) for x in args]))
    from jax.experimental import io_callback
    return io_callback(cb, jax.ShapeDtypeStruct((), jnp.bool_), *args, ordered=False)


def time_gradients(prob, t_out, ys, g, a0):
    """``dL/dt_i = g_i . f(t_i, y_i)`` (i >= 1), ``dL/dt_0 = -a(t_0) . f(t_0, y_0)``."""
    fs = jax.vmap(prob.F)(t_out, ys)
    dt = jnp.sum(g * fs, axis=1)
    return dt.at[0].set(-jnp.sum(a0 * fs[0])).astype(t_out.dtype)


def rebuild_dense(prob, rk, fw, active=True):
    """The forward's interpolants ``Q`` (``max_steps x D x degree``) rebuilt from its
    checkpoints: each accepted step's stages recomputed, no VJP (the core's
    ``_DiscretePass.dense_output``, for the stiff fallback); none (zeros) where ``active`` is
    False."""
    M, D = fw.ck_y.shape

    def body(k, Q):
        t0, h, t1, y0 = fw.ck_t0[k], fw.ck_h[k], fw.ck_t1[k], fw.ck_y[k]
        K, y1 = rk.stages(prob.F, t0, h, t1, y0, prob.F(t0, y0))
        f1 = None if rk.fsal or rk.P is not None else prob.F(t1, y1)
        return Q.at[k].set(rk.dense(prob.F, K, t0, h, t1, y0, y1, f1))
    return lax.fori_loop(0, jnp.where(active, fw.n_acc, 0), body, jnp.zeros((M, D, rk.degree), fw.ck_y.dtype))


def checkpoint_backward(prob, rk, fw, t_out, g, warn: bool = True):
    """``(dL/dy0, dL/dargs, dL/dt, stats)`` for output cotangents ``g`` (``N x D``); ``warn``:
    the stiffness warning past the limit (off where the caller falls back instead)."""
    N, D = g.shape
    d = jnp.where(t_out[-1] >= t_out[0], 1.0, -1.0).astype(t_out.dtype)
    dargs0 = tuple(jnp.zeros_like(x) for x in prob.dargs)
    degree = rk.degree

    pair = estimate_pair(rk.tab)  # the stage paired with the next step's first (None: no check)
    poly = [float(x) for x in stability_polynomial(rk.tab)]
    tdt = time_dtype()

    def step(t0, h, t1, y0, dargs, dense: bool):
        F = lambda t, y: prob.Fp(t, y, dargs)  # noqa: E731
        K, y1 = rk.stages(F, t0, h, t1, y0, F(t0, y0))
        # the stiffness estimate's stage values (not differentiated)
        aux = () if pair is None else jax.lax.stop_gradient(
            (K[0], rk.point(K, h, y0, pair), K[pair]))
        if not dense:
            return y1, aux
        f1 = None if rk.fsal or rk.P is not None else F(t1, y1)
        return (y1, rk.dense(F, K, t0, h, t1, y0, y1, f1)), aux

    def growth_step(st, aux, y0, hs, k):
        """Kadane's update with this step's ``log|R(-h rho)|`` (the core's StiffnessMonitor)."""
        has_next, f_next, y_next, run, best, run_k, lo, hi = st
        f0, yj, fj = aux
        num = jnp.sqrt(jnp.sum((f_next - fj) ** 2)).astype(tdt)
        den = jnp.sqrt(jnp.sum((y_next - yj) ** 2)).astype(tdt)
        rho = jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)
        hr = jnp.where(jnp.isfinite(rho), jnp.abs(hs).astype(tdt) * rho, 0.0)
        R = jnp.zeros((), tdt)
        for c in poly:  # Horner, as np.polyval
            R = R * (-hr) + c
        v = jnp.log(jnp.abs(R))
        v = jnp.where(jnp.isnan(v), 0.0, jnp.clip(v, -700.0, 700.0))
        fresh = run <= 0.0
        run_new = jnp.where(fresh, 0.0, run) + v
        run_k_new = jnp.where(fresh, k, run_k)
        better = run_new > best
        st_new = (run_new, jnp.where(better, run_new, best), run_k_new,
                  jnp.where(better, k, lo), jnp.where(better, run_k_new, hi))
        # the last step has no following first stage: no estimate
        st_out = tuple(jnp.where(has_next, n, o) for n, o in zip(st_new, (run, best, run_k, lo, hi),
                                                               strict=True))
        return (jnp.bool_(True), f0, y0) + st_out

    def body(c):
        k, j, a, dargs_bar, bad, bad_t, bad_h, nfe, stiff = c
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
            _, pull, aux = jax.vjp(lambda y, p: step(t0, h, t1, y, p, True), y0, prob.dargs,
                                   has_aux=True)
            return pull((a, Qbar)), aux

        def plain(_):
            _, pull, aux = jax.vjp(lambda y, p: step(t0, h, t1, y, p, False), y0, prob.dargs,
                                   has_aux=True)
            return pull(a), aux

        (ybar, pbar), aux = lax.cond(n_in > 0, with_dense, plain, None)
        if pair is not None:
            stiff = growth_step(stiff, aux, y0, hs, k)
        a = ybar + direct
        dargs_bar = jax.tree_util.tree_map(jnp.add, dargs_bar, pbar)
        nfe = nfe + rk.s
        # the adjoint and this step's parameter VJP: a NaN in df/dtheta alone (jnp.where's
        # NaN-gradient trap) leaves `a` finite and went silently into dL/dargs
        finite = jnp.all(jnp.isfinite(a))
        for x in jax.tree_util.tree_leaves(pbar):
            finite = finite & jnp.all(jnp.isfinite(x))
        newly = ~bad & ~finite
        bad_t, bad_h = jnp.where(newly, t0, bad_t), jnp.where(newly, hs, bad_h)
        return k - 1, j - n_in, a, dargs_bar, bad | newly, bad_t, bad_h, nfe, stiff

    zero_t, k_last = jnp.zeros((), tdt), fw.n_acc - 1
    stiff0 = () if pair is None else (jnp.bool_(False), jnp.zeros((D,), g.dtype),
                                      jnp.zeros((D,), g.dtype), zero_t, zero_t, k_last, k_last,
                                      k_last)
    init = (k_last, jnp.int32(N - 1), jnp.zeros((D,), g.dtype), dargs0, jnp.bool_(False),
            t_out[0], jnp.zeros((), t_out.dtype), jnp.int32(0), stiff0)
    k, j, a, dargs_bar, bad, bad_t, bad_h, nfe, stiff = lax.while_loop(
        lambda c: c[0] >= 0, body, init)
    ok = check_finite(bad, bad_t, bad_h, "the adjoint or the parameter gradient became "
                                         "non-finite in the discrete (checkpoint) backward pass")
    growth = None
    if pair is not None:
        growth, lo, hi = stiff[4], stiff[6], stiff[7]
    if pair is not None and warn:
        ok = ok | warn_stiff(rk.tab.name, growth > STIFF_GROWTH_LIMIT, growth, lo, hi,
                             fw.ck_t0[lo], fw.ck_t1[hi])
    a = jnp.where(ok, a, a)  # keep the checks alive
    dt = time_gradients(prob, t_out, fw.ys, g, a)
    stats = {"nfe_f": nfe + N, "nfe_vjp_y": nfe, "nfe_vjp_params": nfe, "n_nodes": 0,
             "stiff_growth": growth}
    return a + g[0], dargs_bar, dt, stats
