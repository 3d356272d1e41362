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

__all__ = ["host", "concrete", "time_dtype", "forward", "Forward", "start", "attempt",
           "controller_memory"]


def time_dtype():
    """float64 when ``jax_enable_x64`` is on (the core's time type), else float32."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def host(fn, core_ndims, out_dtypes, *args, out_shapes=None):
    """``jax.pure_callback`` of a NumPy-only decision, batch-aware under ``vmap``."""
    out_np = [np.dtype(d) for d in out_dtypes]
    out_shapes = out_shapes or [()] * len(out_np)
    cb = batched(fn, core_ndims, out_np, out_shapes)
    if concrete(args):  # jax.disable_jit(): call the host directly, so errors keep their class
        return tuple(jnp.asarray(o) for o in cb(*[np.asarray(a) for a in args]))
    shapes = tuple(jax.ShapeDtypeStruct(sh, d) for sh, d in zip(out_shapes, out_np, strict=True))
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
    ck_Q: jax.Array        # (M, D, degree) its interpolant (record_dense only)
    n_acc: jax.Array       # accepted steps
    stats: dict


def start(F, t0, z0, t_end, target, rk, dec, t_out=None, active=True):
    """``f(t0, z0)``, the first step (Hairer's rule, HNW I, II.4, decided by the core) and the
    first attempt: ``(f0, h_ctrl, h, landing, nfe)``. ``t_out`` is validated on the host when
    the decisions ask for it; ``active`` False: no decision (a pass that will not run)."""
    tdt = time_dtype()
    f_ = np.dtype(tdt)
    d = jnp.where(t_end >= t0, 1.0, -1.0).astype(tdt)
    t_chk = jnp.stack([t0, t_end]) if t_out is None else t_out
    f0 = F(t0, z0)
    nfe = jnp.int32(1)
    d1 = df = zero = jnp.zeros((), tdt)
    if dec.step_size is None and dec.first_step is None:
        scale = rk.atol + jnp.abs(z0) * rk.rtol
        d0 = rk.norm(z0 / scale).astype(tdt)
        d1 = rk.norm(f0 / scale).astype(tdt)
        (h0,) = host(dec.start_guess, (0, 1, 0, 0), (f_,), active, t_chk, d0, d1)
        f1 = F(t0 + d * h0, z0 + (d * h0).astype(z0.dtype) * f0)
        df = rk.norm((f1 - f0) / scale).astype(tdt)
        nfe = nfe + 1
    else:
        (h0,) = host(dec.start_guess, (0, 1, 0, 0), (f_,), active, t_chk, zero, zero)
    h_ctrl, h, landing = host(dec.start_step, (0,) * 7, (f_, f_, np.bool_), active, t0, t_end,
                              target, h0, d1, df)
    return f0, h_ctrl, h, landing, nfe


def controller_memory(dec):
    tdt = time_dtype()
    return dict(err_prev=jnp.asarray(dec.err_prev0, tdt), after_reject=jnp.bool_(False),
                n_bad=jnp.int32(0))


def attempt(F, rk, dec, active, s, target, target_acc, t_end):
    """One attempt from ``s`` (t, y, f0, h, landing, h_ctrl, the controller memory, n_steps)
    towards ``target``: the stages and the core's decision, which also proposes the next
    attempt (towards ``target_acc`` if accepted). Returns ``(accept, K, y1, t1, s)`` with the
    controller fields of ``s`` updated."""
    tdt = time_dtype()
    f_, b_ = np.dtype(tdt), np.bool_
    t, y, h, landing = s["t"], s["y"], s["h"], s["landing"]
    t1 = jnp.where(landing, target, t + h)
    K, y1 = rk.stages(F, t, h, t1, y, s["f0"])
    if dec.step_size is None:
        err = rk.error(K, h, y, y1).astype(tdt)
    else:
        err = jnp.where(jnp.all(jnp.isfinite(y1)), 0.0, jnp.inf).astype(tdt)
    n_steps = s["n_steps"] + 1
    accept, h_ctrl, err_prev, after_reject, n_bad, h_next, landing_next = host(
        dec.step, (0,) * 14, (b_, f_, f_, b_, np.int32, f_, b_), active, err, h, s["h_ctrl"],
        landing, t, t1, t_end, target_acc, target, n_steps, s["err_prev"], s["after_reject"],
        s["n_bad"])
    s = dict(s, h=h_next, landing=landing_next, h_ctrl=h_ctrl, err_prev=err_prev,
             after_reject=after_reject, n_bad=n_bad, n_steps=n_steps,
             nfe=s["nfe"] + (rk.s - 1))
    return accept, K, y1, t1, s


def forward(F, y0, t_out, rk, dec, *, lands: bool, record: bool, max_steps: int,
            record_dense: bool = False) -> Forward:
    """Solve ``y' = F(t, y)`` (flat state) from ``t_out[0]``, returning y at every output time.

    ``record``: keep each accepted step's ``(t0, h, t1, y0)``; ``record_dense``: also its
    interpolant ``Q`` (the interpolated adjoint reads y from it)."""
    tdt = time_dtype()
    ydt = y0.dtype
    N, D = t_out.shape[0], y0.shape[0]
    M = max_steps if record else 1
    MQ = max_steps if record_dense else 1
    t0, t_end = t_out[0], t_out[-1]
    d = jnp.where(t_end >= t0, 1.0, -1.0).astype(tdt)
    f0, h_ctrl, h, landing, nfe = start(F, t0, y0, t_end, t_out[1] if lands else t_end, rk,
                                        dec, t_out)
    state = dict(
        t=t0, y=y0, f0=f0, h=h, landing=landing, h_ctrl=h_ctrl, **controller_memory(dec),
        i=jnp.int32(1), ys=jnp.zeros((N, D), ydt).at[0].set(y0),
        n_steps=jnp.int32(0), n_acc=jnp.int32(0), nfe=nfe,
        ck_t0=jnp.zeros((M,), tdt), ck_h=jnp.zeros((M,), tdt), ck_t1=jnp.zeros((M,), tdt),
        ck_y=jnp.zeros((M, D), ydt), ck_Q=jnp.zeros((MQ, D, rk.degree), ydt))
    last = rk.s - 1

    def body(s):
        i = s["i"]
        target = t_out[i] if lands else t_end
        if lands:
            target_acc = t_out[jnp.minimum(i + s["landing"].astype(jnp.int32), N - 1)]
        else:
            target_acc = t_end
        t, y, h = s["t"], s["y"], s["h"]
        accept, K, y1, t1, s = attempt(F, rk, dec, i < N, s, target, target_acc, t_end)

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
            need_q = has_in | record_dense
            if rk.fsal:
                f1 = K[last]
            else:
                need = jnp.logical_or(~done, need_q & (rk.P is None))
                f1 = lax.cond(need, lambda: F(t1, y1), lambda: jnp.zeros_like(y1))
                nfe = nfe + need.astype(jnp.int32)
            Q = lax.cond(need_q, lambda: rk.dense(F, K, t, h, t1, y, y1, f1),
                         lambda: jnp.zeros((D, rk.degree), ydt))
            nfe = nfe + need_q.astype(jnp.int32) * rk.dense_evals
            if record_dense:
                s = dict(s, ck_Q=s["ck_Q"].at[k].set(Q))
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

    s = lax.while_loop(lambda s: s["i"] < N, body, state)
    stats = {"nfe": s["nfe"], "n_steps": s["n_steps"], "n_accepted": s["n_acc"],
             "n_rejected": s["n_steps"] - s["n_acc"]}
    return Forward(s["ys"], s["ck_t0"], s["ck_h"], s["ck_t1"], s["ck_y"], s["ck_Q"],
                   s["n_acc"], stats)
