"""The forward solve as one ``lax.while_loop``: stages, error norm and dense output in XLA,
every decision from the core on the host (:mod:`gqlib.jax._host`), one callback per attempt.

The loop follows the core's solve driver (``gqlib.integrate._solve._drive`` over a
:class:`~gqlib.integrate.Stepper`): it steps towards ``t[-1]`` (or onto each output time when the
method's interpolant is weaker than the method, :func:`~gqlib.integrate._policy.lands_on_outputs`),
interpolates the outputs inside each accepted step with the method's continuous extension, and
records each accepted step ``(t0, h, t1, y0)`` in fixed-size buffers of ``max_steps`` rows for
the backward passes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._host import batched

__all__ = ["host", "concrete", "time_dtype", "forward", "Forward"]


def time_dtype():
    """float64 when ``jax_enable_x64`` is on (the core's time type), else float32."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def host(fn, core_ndims, out_dtypes, *args):
    """``jax.pure_callback`` of a NumPy-only decision, batch-aware under ``vmap``."""
    out_np = [np.dtype(d) for d in out_dtypes]
    cb = batched(fn, core_ndims, out_np)
    if concrete(args):  # jax.disable_jit(): call the host directly, so errors keep their class
        return tuple(jnp.asarray(o) for o in cb(*[np.asarray(a) for a in args]))
    shapes = tuple(jax.ShapeDtypeStruct((), d) for d in out_np)
    return jax.pure_callback(cb, shapes, *args, vmap_method="broadcast_all")


def concrete(args) -> bool:
    """True when no argument is traced (under ``jax.disable_jit()``)."""
    return not any(isinstance(a, jax.core.Tracer) for a in jax.tree_util.tree_leaves(args))


class Forward(NamedTuple):
    ys: jax.Array          # (N, D)
    ck_t0: jax.Array       # (M,) start of accepted step k
    ck_h: jax.Array        # (M,) its step size (the one its stages used)
    ck_t1: jax.Array       # (M,) its end
    ck_y: jax.Array        # (M, D) its initial state
    n_acc: jax.Array       # accepted steps
    stats: dict


def forward(F, y0, t_out, rk, dec, *, lands: bool, record: bool, max_steps: int) -> Forward:
    """Solve ``y' = F(t, y)`` (flat state) from ``t_out[0]``, returning y at every output time."""
    tdt = time_dtype()
    ydt = y0.dtype
    N, D = t_out.shape[0], y0.shape[0]
    M = max_steps if record else 1
    t0, t_end = t_out[0], t_out[-1]
    d = jnp.where(t_end >= t0, 1.0, -1.0).astype(tdt)
    adaptive = dec.step_size is None
    f0 = F(t0, y0)
    nfe = jnp.int32(1)
    i32, b_, f_ = np.int32, np.bool_, np.dtype(tdt)
    d1 = df = jnp.zeros((), tdt)
    if adaptive and dec.first_step is None:
        scale = rk.atol + jnp.abs(y0) * rk.rtol
        d0 = rk.norm(y0 / scale).astype(tdt)
        d1 = rk.norm(f0 / scale).astype(tdt)
        (h0,) = host(dec.start_guess, (0, 1, 0, 0), (f_,), True, t_out, d0, d1)
        f1 = F(t0 + d * h0, y0 + (d * h0).astype(ydt) * f0)
        df = rk.norm((f1 - f0) / scale).astype(tdt)
        nfe = nfe + 1
    else:
        (h0,) = host(dec.start_guess, (0, 1, 0, 0), (f_,), True, t_out, jnp.zeros((), tdt),
                     jnp.zeros((), tdt))
    target0 = t_out[1] if lands else t_end
    h_ctrl, h, landing = host(dec.start_step, (0,) * 7, (f_, f_, b_), True, t0, t_end, target0,
                              h0, d1, df)

    state = dict(
        t=t0, y=y0, f0=f0, h=h, landing=landing, h_ctrl=h_ctrl,
        err_prev=jnp.asarray(dec.err_prev0, tdt), after_reject=jnp.bool_(False),
        n_bad=jnp.int32(0), i=jnp.int32(1), ys=jnp.zeros((N, D), ydt).at[0].set(y0),
        n_steps=jnp.int32(0), n_acc=jnp.int32(0), nfe=nfe,
        ck_t0=jnp.zeros((M,), tdt), ck_h=jnp.zeros((M,), tdt), ck_t1=jnp.zeros((M,), tdt),
        ck_y=jnp.zeros((M, D), ydt))
    last = rk.s - 1

    def cond(s):
        return s["i"] < N

    def body(s):
        t, y, h, landing, i = s["t"], s["y"], s["h"], s["landing"], s["i"]
        target = t_out[i] if lands else t_end
        t1 = jnp.where(landing, target, t + h)
        K, y1 = rk.stages(F, t, h, t1, y, s["f0"])
        nfe = s["nfe"] + (rk.s - 1)
        if adaptive:
            err = rk.error(K, h, y, y1).astype(tdt)
        else:
            err = jnp.where(jnp.all(jnp.isfinite(y1)), 0.0, jnp.inf).astype(tdt)
        if lands:
            target_acc = t_out[jnp.minimum(i + landing.astype(jnp.int32), N - 1)]
        else:
            target_acc = t_end
        n_steps = s["n_steps"] + 1
        accept, h_ctrl, err_prev, after_reject, n_bad, h_next, landing_next = host(
            dec.step, (0,) * 14, (b_, f_, f_, b_, i32, f_, b_), i < N, err, h, s["h_ctrl"],
            landing, t, t1, t_end, target_acc, target, n_steps, s["err_prev"],
            s["after_reject"], s["n_bad"])
        s = dict(s, h=h_next, landing=landing_next, h_ctrl=h_ctrl, err_prev=err_prev,
                 after_reject=after_reject, n_bad=n_bad, n_steps=n_steps, nfe=nfe)

        def on_accept(s):
            k = s["n_acc"]
            if record:
                s = dict(s, ck_t0=s["ck_t0"].at[k].set(t), ck_h=s["ck_h"].at[k].set(h),
                         ck_t1=s["ck_t1"].at[k].set(t1), ck_y=s["ck_y"].at[k].set(y))
            # outputs strictly inside the step are interpolated, one at its end is y1
            j_in = i
            n_in = jnp.sum((jnp.arange(N) >= i) & (d * (t_out - t1) < 0)).astype(jnp.int32)
            has_in = n_in > 0
            done = (t1 == t_end)
            nfe = s["nfe"]
            if rk.fsal:
                f1 = K[last]
            else:
                need = jnp.logical_or(~done, has_in & (rk.P is None))
                f1 = lax.cond(need, lambda: F(t1, y1), lambda: jnp.zeros_like(y1))
                nfe = nfe + need.astype(jnp.int32)
            Q = lax.cond(has_in, lambda: rk.dense(F, K, t, h, t1, y, y1, f1),
                         lambda: jnp.zeros((D, rk.degree), ydt))
            nfe = nfe + has_in.astype(jnp.int32) * rk.dense_evals
            hs = t1 - t

            def write(c):
                j, ys = c
                theta = (t_out[j] - t) / hs
                return j + 1, ys.at[j].set(rk.evaluate(y, hs, Q, theta))

            j, ys = lax.while_loop(lambda c: c[0] < j_in + n_in, write, (j_in, s["ys"]))
            at_end = (j < N) & (t_out[jnp.minimum(j, N - 1)] == t1)
            ys = lax.cond(at_end, lambda: ys.at[j].set(y1), lambda: ys)
            j = j + at_end.astype(jnp.int32)
            return dict(s, t=t1, y=y1, f0=f1, i=j, ys=ys, n_acc=k + 1, nfe=nfe)

        return lax.cond(accept, on_accept, lambda s: s, s)

    s = lax.while_loop(cond, body, state)
    stats = {"nfe": s["nfe"], "n_steps": s["n_steps"], "n_accepted": s["n_acc"],
             "n_rejected": s["n_steps"] - s["n_acc"]}
    return Forward(s["ys"], s["ck_t0"], s["ck_h"], s["ck_t1"], s["ck_y"], s["n_acc"], stats)
