"""The core's :class:`~gqlib.adjoint.CollocationAdjoint` in XLA.

The pass follows the core's (:class:`~gqlib.adjoint._collocation.CollocationBackward`): y from
the forward's dense output, the adjoint ``a`` by ``n``-point Gauss-Legendre collocation on each
panel, solved by the strategy's fixed number of Picard sweeps, and the parameter gradient by the
same nodes' quadrature, fused into the last pass. Panels (output intervals cut at forward step
ends where an interval is longer than a step it overlaps, and at ``max_panel``) come from the
core on the host (:class:`~gqlib.jax._host.CollocationPanels`), one callback per panel; the node
and sweep counts from :meth:`~gqlib.adjoint.CollocationAdjoint.counts` and the coefficients
from :func:`~gqlib.adjoint._collocation.collocation_coefficients`, at trace time; the
interpolant reads, the VJPs and the sweeps run in XLA.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from ..adjoint._collocation import collocation_coefficients
from ._checkpoint import check_finite, time_gradients
from ._forward import host, time_dtype
from ._host import CollocationPanels
from ._solved import forward_dense_reader

__all__ = ["collocation_backward"]


def collocation_backward(cfg, prob, rk_fwd, fw, t_out, g):
    """``(dL/dy0, dL/dargs, dL/dt, stats)`` by Gauss-Legendre collocation of the adjoint."""
    strategy = cfg.strategy
    n, sweeps = strategy.counts(cfg.method)
    c_np, b_np, alpha_np = collocation_coefficients(n)
    tdt = time_dtype()
    f_ = np.dtype(tdt)
    N, D = g.shape
    ydt = g.dtype
    pflat0, unravel_p = ravel_pytree(prob.dargs)
    P = int(pflat0.shape[0])
    c = jnp.asarray(c_np, tdt)
    b = jnp.asarray(b_np, ydt)
    alpha = jnp.asarray(alpha_np, ydt)
    d = jnp.where(t_out[-1] >= t_out[0], 1.0, -1.0).astype(tdt)
    n_acc = fw.n_acc
    panels = CollocationPanels(strategy.max_panel, strategy.max_panels)

    dense_y = forward_dense_reader(fw, rk_fwd, d)  # as the interpolated adjoint reads y

    def F_nodes(taus, Y, p):
        return jax.vmap(lambda t, y: prob.Fp(t, y, unravel_p(p)))(taus, Y)

    def panel(s, e, a, acc):
        """``a`` carried from ``s`` to ``e`` and ``acc`` plus the panel's parameter integral."""
        H = e - s
        lo, hi = jnp.minimum(s, e), jnp.maximum(s, e)
        t_up = lo + (hi - lo) * c
        taus = jnp.where(H > 0, t_up, t_up[::-1])  # tau_i = s + c_i H (c is symmetric)
        Y = jax.vmap(dense_y)(taus)
        _, pull_y = jax.vjp(lambda Y: F_nodes(taus, Y, pflat0), Y)
        Hy = H.astype(ydt)

        def sweep(_, A):
            V = pull_y(A)[0]
            return a[None, :] - Hy * (alpha @ V)

        A = lax.fori_loop(0, sweeps, sweep, jnp.broadcast_to(a, (n, D)))
        W = (-Hy * b)[:, None] * A  # the last pass: weighted cotangents w_k A_k
        if P > 0:
            _, pull = jax.vjp(lambda Y, p: F_nodes(taus, Y, p), Y, pflat0)
            vy, vp = pull(W)
            acc = acc + vp
        else:
            vy = pull_y(W)[0]
        return a + jnp.sum(vy, axis=0), acc

    def body(st):
        i, j = st["i"], st["j"]
        active = i >= 1
        ts, te = t_out[i], t_out[jnp.maximum(i - 1, 0)]
        s, e, last = host(panels, (0, 0, 0, 0, 1, 1, 0, 0), (f_, f_, np.bool_), active, ts, te,
                          j, fw.ck_t0, fw.ck_t1, n_acc, st["n_panels"])
        a, acc = panel(s.astype(tdt), e.astype(tdt), st["a"], st["acc"])
        st = dict(st, a=a, acc=acc, n_panels=st["n_panels"] + 1, j=j + 1)

        def interval_done(st):
            a = st["a"]
            newly = ~st["bad"] & ~jnp.all(jnp.isfinite(a))
            im1 = i - 1
            st = dict(st, bad=st["bad"] | newly,
                      bad_t=jnp.where(newly, te, st["bad_t"]),
                      bad_h=jnp.where(newly, te - ts, st["bad_h"]))
            a_next = jnp.where(im1 == 0, a, a + g[im1])
            return dict(st, a=a_next, a0=jnp.where(im1 == 0, a, st["a0"]), i=im1,
                        j=jnp.int32(0))

        return lax.cond(last, interval_done, lambda st: st, st)

    state = dict(i=jnp.int32(N - 1), j=jnp.int32(0), a=g[N - 1], acc=jnp.zeros_like(pflat0),
                 a0=jnp.zeros((D,), ydt), n_panels=jnp.int32(0), bad=jnp.bool_(False),
                 bad_t=t_out[0], bad_h=jnp.zeros((), tdt))
    st = lax.while_loop(lambda st: st["i"] >= 1, body, state)
    a0 = st["a0"]
    ok = check_finite(st["bad"] | ~jnp.all(jnp.isfinite(st["acc"])), st["bad_t"], st["bad_h"],
                      "the adjoint became non-finite in the collocation backward pass")
    keep = ok.astype(ydt) * 0
    dt = time_gradients(prob, t_out, fw.ys, g, a0)
    dargs_bar = unravel_p((st["acc"] + keep.astype(st["acc"].dtype)).astype(pflat0.dtype))
    n_panels = st["n_panels"]
    stats = {"nfe_f": n * n_panels + N, "n_nodes": n * n_panels, "n_accepted": n_panels,
             "n_steps": n_panels}
    return a0 + g[0] + keep, tuple(dargs_bar), dt, stats
