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

from ..adjoint._collocation import PICARD_LIMIT, SWEEP_LIMIT, collocation_coefficients
from ._checkpoint import check_finite, time_gradients
from ._forward import host, time_dtype
from ._host import CollocationPanels
from ._solved import cotangent_scale, forward_dense_reader

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
    eps = float(jnp.finfo(ydt).eps)
    panels = CollocationPanels(strategy.max_panel, strategy.max_panels)
    # the sweeps' convergence test on a / max|g| (the solved passes' scaling), that is with
    # atol times max|g| on a: the same decisions at any loss scale, the arithmetic unchanged
    atol_a = cfg.atol * cotangent_scale(g)

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

        def sweep(_, carry):
            A, _, last = carry
            new = a[None, :] - Hy * (alpha @ pull_y(A)[0])
            return new, last, jnp.sum((new - A) ** 2)

        A0 = jnp.broadcast_to(a, (n, D))
        # the core's contraction test (PICARD_LIMIT): before the first sweep, the change is A0
        A, before, last = lax.fori_loop(0, sweeps, sweep, (A0, jnp.zeros((), ydt),
                                                           jnp.sum(A0 ** 2)))
        size = jnp.sum(A ** 2)
        ok = (sweeps == 0) | ~((last > PICARD_LIMIT ** 2 * before)
                               & (last > (64.0 * eps) ** 2 * size))
        # and converged: the core's sweeps_converged (SWEEP_LIMIT tolerances, rms)
        q = jnp.sqrt(last / jnp.where(before > 0, before, 1.0))
        left = jnp.sqrt(last / (n * D)) * q / jnp.where(q < 1, 1.0 - q, 1.0)
        # `~(x > y)`, not `x <= y`: as the core's, a NaN passes here (and is reported by the
        # finiteness check); `before <= 0` rejected it, and the panel was halved forever
        converged = ~(before > 0) | ~(last < before) | \
            (left <= SWEEP_LIMIT * (cfg.rtol * jnp.sqrt(size / (n * D)) + atol_a))
        if cfg.step_size is None:  # an adaptive forward: its tolerances (the core's rule)
            ok = ok & ((sweeps == 0) | converged)
        W = (-Hy * b)[:, None] * A  # the last pass: weighted cotangents w_k A_k
        if P > 0:
            _, pull = jax.vjp(lambda Y, p: F_nodes(taus, Y, p), Y, pflat0)
            vy, vp = pull(W)
            acc = acc + vp
        else:
            vy = pull_y(W)[0]
        return a + jnp.sum(vy, axis=0), acc, ok

    def advance(s, e, a, acc):
        """The core's :meth:`~gqlib.adjoint._collocation.CollocationBackward.advance`: ``a``
        over the panel in sub-panels on which the sweeps contract, halving a sub-panel whose
        sweeps do not; ``(a, acc, attempts, rejected)``."""
        def cond(st):
            return st["pos"] != e

        def body(st):
            pos, H = st["pos"], st["H"]
            q = jnp.where(jnp.abs(H) >= jnp.abs(e - pos) * (1.0 - 1e-12), e, pos + H)
            a_new, acc_new, ok = panel(pos, q, st["a"], st["acc"])
            # halved to the time resolution (the core raises there): end the interval with a
            # non-finite adjoint, which the pass reports with t (taking the empty panel left
            # pos where it was, a hang)
            stuck = q == pos
            a_new = jnp.where(stuck, jnp.nan, a_new)
            ok = ok | stuck
            return dict(pos=jnp.where(stuck, e, jnp.where(ok, q, pos)),
                        H=jnp.where(ok, H, 0.5 * (q - pos)),
                        a=jnp.where(ok, a_new, st["a"]), acc=jnp.where(ok, acc_new, st["acc"]),
                        tries=st["tries"] + 1, rejected=st["rejected"] + (~ok).astype(jnp.int32))

        st = lax.while_loop(cond, body, dict(pos=s, H=e - s, a=a, acc=acc, tries=jnp.int32(0),
                                             rejected=jnp.int32(0)))
        return st["a"], st["acc"], st["tries"], st["rejected"]

    def body(st):
        i, j = st["i"], st["j"]
        active = i >= 1
        ts, te = t_out[i], t_out[jnp.maximum(i - 1, 0)]
        s, e, last = host(panels, (0, 0, 0, 0, 1, 1, 0, 0), (f_, f_, np.bool_), active, ts, te,
                          j, fw.ck_t0, fw.ck_t1, n_acc, st["n_panels"])
        a, acc, tries, rejected = advance(s.astype(tdt), e.astype(tdt), st["a"], st["acc"])
        st = dict(st, a=a, acc=acc, n_panels=st["n_panels"] + tries,
                  n_rejected=st["n_rejected"] + rejected, j=j + 1)

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
                 a0=jnp.zeros((D,), ydt), n_panels=jnp.int32(0), n_rejected=jnp.int32(0),
                 bad=jnp.bool_(False),
                 bad_t=t_out[0], bad_h=jnp.zeros((), tdt))
    st = lax.while_loop(lambda st: st["i"] >= 1, body, state)
    a0 = st["a0"]
    ok = check_finite(st["bad"] | ~jnp.all(jnp.isfinite(st["acc"])), st["bad_t"], st["bad_h"],
                      "the adjoint became non-finite in the collocation backward pass")
    keep = ok.astype(ydt) * 0
    dt = time_gradients(prob, t_out, fw.ys, g, a0)
    dargs_bar = unravel_p((st["acc"] + keep.astype(st["acc"].dtype)).astype(pflat0.dtype))
    n_panels = st["n_panels"]  # every attempt
    stats = {"nfe_f": n * n_panels + N, "n_nodes": n * n_panels,
             "n_accepted": n_panels - st["n_rejected"], "n_steps": n_panels}
    return a0 + g[0] + keep, tuple(dargs_bar), dt, stats
