"""The core's backward-solve strategies in XLA: :class:`~gqlib.adjoint.GQAdjoint`,
:class:`~gqlib.adjoint.BacksolveAdjoint` (``seminorm``) and
:class:`~gqlib.adjoint.InterpolatedAdjoint`.

The pass follows the core's (:mod:`gqlib.adjoint._solved`): one backward stepper from ``t_N`` to
``t_0`` over the state the strategy lays out (:meth:`~gqlib.adjoint.AdjointStrategy.state_blocks`:
``[y, a]``, ``[y, a, g]`` or ``a``), with the strategy's backward settings
(:meth:`~gqlib.adjoint._strategy.SolverSettings.resolve`), its step size kept across the jumps
``a += g_i`` at output times; y restarted from the forward state at every forward step boundary
(``checkpoints=True``) and at every output time, the drift of the re-integrated y measured at
each restart and warned about past :data:`~gqlib.adjoint._solved.DRIFT_LIMIT`. The quadrature
strategies keep the backward interpolant of the current output interval in a buffer and, when the
interval is done, integrate ``a^T df/dtheta`` over it panel by panel: node counts (and panel
splits) from the core's node rule (:func:`~gqlib.adjoint._quadrature.node_count` on the
backward state sampled at Chebyshev points, :func:`~gqlib.adjoint._nodes.resolved_degree`),
nodes and weights from :func:`gqlib.gauss_legendre`, all on the host; the samples, the
interpolant and the VJP sums run in XLA.
"""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from ..adjoint import BacksolveAdjoint
from ..adjoint._nodes import MAX_SPLITS, SAMPLES, chebyshev_points
from ..integrate._norms import resolve_norm
from ._checkpoint import check_finite
from ._forward import attempt, concrete, controller_memory, host, start, time_dtype
from ._host import Decisions, Panels, overflow_error, short_rule_warning, warn_drift
from ._rk import RK

__all__ = ["solved_backward"]


def _backward_settings(cfg, strategy):
    """The strategy's backward settings, else the forward's (the core's ``resolve``)."""
    sol = SimpleNamespace(options={"method": cfg.method, "rtol": cfg.rtol, "atol": cfg.atol,
                                   "step_size": cfg.step_size, "norm": cfg.norm})
    st = strategy.resolve(sol)
    tab = st["tab"]
    ctrl = None
    if st["step_size"] is None:
        from ..integrate._controller import PIController
        ctrl = (st["controller"] or PIController()).start(
            tab.error_order, min_step=st["min_step"], max_step=st["max_step"])
    dec = Decisions(ctrl, st["step_size"], tab.error_order, st["first_step"], st["max_steps"],
                    False, f"the backward solve of {type(strategy).__name__}")
    return st, dec


def _norm(cfg, strategy, blocks):
    """The backward norm: the seminorm, the strategy's, or the forward's on each block."""
    rms = resolve_norm("rms")
    if getattr(strategy, "seminorm", False):
        n2 = blocks["a"].stop
        return lambda e: rms(e[:n2])
    if strategy.norm is not None:
        return resolve_norm(strategy.norm)
    if not callable(cfg.norm):
        return resolve_norm(cfg.norm)
    state = [b for k, b in blocks.items() if k != "params"]
    extra = blocks.get("params")

    def blockwise(e):  # the forward norm was written for y's (flat) shape
        out = None
        for b in state:
            v = cfg.norm(e[b])
            out = v if out is None else jnp.maximum(out, v)
        if extra is not None:
            out = jnp.maximum(out, rms(e[extra]))
        return out
    return blockwise


def _side_effect(cb, *args):
    if concrete(args):
        return jnp.asarray(cb(*[np.asarray(a) for a in args]))
    from jax.experimental import io_callback
    return io_callback(cb, jax.ShapeDtypeStruct((), jnp.bool_), *args, ordered=False)


def cotangent_scale(g):
    """``max|g|`` (traced), 1 where that is zero or not finite: the passes are linear in the
    cotangents and solve for ``a / scale``, so that the backward atol means the same whatever
    the loss's scale (the core's ``_SolvedPass.scale``)."""
    if g.size == 0:
        return jnp.ones((), g.dtype)
    m = jnp.max(jnp.abs(g))
    return jnp.where((m > 0) & jnp.isfinite(m), m, jnp.ones_like(m))


def unscale(c, a, dargs_bar, dt):
    """The results of a pass on ``g / c`` times ``c``."""
    return (a * c.astype(a.dtype),
            jax.tree_util.tree_map(lambda x: x * c.astype(x.dtype), dargs_bar),
            dt * c.astype(dt.dtype))


def solved_backward(cfg, prob, rk_fwd, fw, t_out, g, active=True):
    """``(dL/dy0, dL/dargs, dL/dt, stats)`` by the strategy's backward solve; ``active``
    (traced) False: no step is taken (zeros; the checkpoint pass's stiff fallback, gated so
    under ``vmap`` too, where a ``lax.cond`` would run it for every member). The solve runs on
    ``g / max|g|`` (:func:`cotangent_scale`; a loss times 1e-8 left the interpolated adjoint
    under atol, 139 % off on Lotka-Volterra), its results times ``max|g|``."""
    c = cotangent_scale(g)
    a, dargs_bar, dt, stats = _solved_backward(cfg, prob, rk_fwd, fw, t_out, g / c, active)
    return (*unscale(c, a, dargs_bar, dt), stats)


def _solved_backward(cfg, prob, rk_fwd, fw, t_out, g, active):
    strategy = cfg.strategy
    st, dec = _backward_settings(cfg, strategy)
    tdt = time_dtype()
    N, D = g.shape
    ydt = g.dtype
    carries_y = strategy.carries_y
    use_ck = carries_y and strategy.checkpoints
    pflat0, unravel_p = ravel_pytree(prob.dargs)
    P = int(pflat0.shape[0])
    with_g = isinstance(strategy, BacksolveAdjoint) and P > 0
    blocks = strategy.state_blocks(D, P if with_g else 0)
    Z = max(b.stop for b in blocks.values())
    ab = blocks["a"]
    rule = strategy.quadrature_rule() if P > 0 else None
    rk = RK(st["tab"], _norm(cfg, strategy, blocks), st["rtol"], st["atol"])
    d = jnp.where(t_out[-1] >= t_out[0], 1.0, -1.0).astype(tdt)
    n_acc = fw.n_acc
    M = fw.ck_t0.shape[0]
    idx_m = jnp.arange(M)

    dense_y = forward_dense_reader(fw, rk_fwd, d)  # y(t) for the interpolated adjoint

    def rhs(t, z):
        if not carries_y:
            _, pull = jax.vjp(lambda y: prob.F(t, y), dense_y(t))
            return -pull(z)[0]
        y, a = z[:D], z[ab]
        if with_g:
            fy, pull = jax.vjp(lambda y, p: prob.Fp(t, y, unravel_p(p)), y, pflat0)
            vy, vp = pull(a)
            return jnp.concatenate([fy, -vy, -vp.astype(ydt)])
        fy, pull = jax.vjp(lambda y: prob.F(t, y), y)
        return jnp.concatenate([fy, -pull(a)[0]])

    def vjp_params(t, y, a):
        _, pull = jax.vjp(lambda p: prob.Fp(t, y, unravel_p(p)), pflat0)
        return pull(a)[0]

    # -- targets: forward step boundaries strictly inside the interval, then t_{i-1} ----------
    B = fw.ck_t0

    def kb_of(tc):
        return jnp.sum((idx_m >= 1) & (idx_m < n_acc) & (d * (B - tc) < 0)).astype(jnp.int32)

    def target_of(tc, i):
        kb = kb_of(tc)
        lo = t_out[jnp.maximum(i - 1, 0)]
        use = use_ck & (kb >= 1) & (d * (B[kb] - lo) > 0)
        return jnp.where(use, B[kb], lo), use, kb

    # drift of the re-integrated y, in units of the looser tolerance (as the core)
    drift_rtol = max(st["rtol"], cfg.rtol)
    drift_atol = max(st["atol"], cfg.atol)

    def drift(z, y_ref):
        scaled = (z[:D] - y_ref) / (drift_atol + drift_rtol * jnp.abs(y_ref))
        return jnp.sqrt(jnp.mean(scaled * scaled)).astype(tdt)

    # -- quadrature ------------------------------------------------------------------------------
    MB = cfg.max_steps if rule is not None else 1
    deg = rk.degree
    cheb = jnp.asarray(chebyshev_points(SAMPLES), tdt)
    panels = None if rule is None else Panels(rule, st["rtol"], st["atol"],
                                               float(jnp.finfo(ydt).eps))
    span = t_out[-1] - t_out[0]
    # the restart jumps of y so far in the interval, per segment (the core's `shifts`): the node
    # rule samples the segments moved back by them, so that it does not resolve the drift
    shifted = use_ck and rule is not None

    def seg_eval(s, x, origin, continuous=False):
        """The backward interpolant of the current interval at times ``origin + x`` (1-D
        offsets; theta from them, so that it carries the offsets' round-off, not that of
        ``|t|``: the core's ``evaluate_pieces``); moved back by the segments' restart shifts
        when ``continuous``."""
        t0s, hs = s["seg_t0"] - origin, s["seg_h"]
        lo = jnp.minimum(t0s, t0s + hs)
        valid = jnp.arange(MB) < s["nseg"]
        key = jnp.where(valid[None, :] & (lo[None, :] <= x[:, None]), lo[None, :], -jnp.inf)
        first = jnp.argmin(jnp.where(valid, lo, jnp.inf))
        j = jnp.where(jnp.any(jnp.isfinite(key), axis=1), jnp.argmax(key, axis=1), first)
        theta = (x - t0s[j]) / hs[j]
        powers = (theta[:, None] ** jnp.arange(1, deg + 1, dtype=tdt)).astype(ydt)
        z0 = s["seg_z"][j]
        if continuous and shifted:
            z0 = z0.at[:, :D].add(-s["seg_shift"][j])
        return z0 + hs[j][:, None].astype(ydt) * jnp.einsum(
            "mzd,md->mz", s["seg_Q"][j], powers)

    def quadrature(s, t_hi, t_lo, nfe_fwd, active):
        lo, hi = jnp.minimum(t_lo, t_hi), jnp.maximum(t_lo, t_hi)
        S = MAX_SPLITS + 2
        stack = (jnp.zeros(S, tdt).at[0].set(lo), jnp.zeros(S, tdt).at[0].set(hi),
                 jnp.zeros(S, jnp.int32))

        def panel(c):
            sp, (sa, sb, sd), acc, n_nodes, (s_n, s_need, s_t) = c
            live = active & (sp > 0)  # under vmap the body also runs for finished members
            sp = sp - 1
            a, b, depth = sa[sp], sb[sp], sd[sp]
            mid, half = 0.5 * (a + b), 0.5 * (b - a)
            # the backward state at Chebyshev points: the adaptive rule's count, the other
            # rules' check (interpolant evaluations only)
            tc = mid + half * cheb
            zc = seg_eval(s, half * cheb, mid, continuous=True)
            if not carries_y:
                zc = jnp.concatenate([jax.vmap(dense_y)(tc), zc], axis=1)
            n, xr, wr, s_n, s_need, s_t = host(
                panels, (0, 0, 0, 0, 2, 0, 0, 0, 0, 0),
                (np.int32, tdt, tdt, np.int32, np.int32, tdt), live, a, b, depth, zc, span,
                nfe_fwd, s_n, s_need, s_t,
                out_shapes=[(), (rule.max_nodes,), (rule.max_nodes,), (), (), ()])
            split = n == 0
            m = mid
            sa = jnp.where(split, sa.at[sp].set(m).at[sp + 1].set(a), sa)
            sb = jnp.where(split, sb.at[sp].set(b).at[sp + 1].set(m), sb)
            sd = jnp.where(split, sd.at[sp].set(depth + 1).at[sp + 1].set(depth + 1), sd)
            x = mid + half * xr.astype(tdt)
            w = (half * wr.astype(tdt)).astype(ydt)

            def node(c2):
                k, acc = c2
                zk = seg_eval(s, (half * xr.astype(tdt))[k][None], mid)[0]
                if carries_y:
                    yk, ak = zk[:D], zk[ab]
                else:
                    yk, ak = dense_y(x[k]), zk
                return k + 1, acc + vjp_params(x[k], yk, w[k] * ak)

            _, acc = lax.while_loop(lambda c2: c2[0] < n, node, (jnp.int32(0), acc))
            return (sp + 2 * split.astype(jnp.int32), (sa, sb, sd), acc, n_nodes + n,
                    (s_n, s_need, s_t))

        zero = jnp.zeros_like(pflat0)
        short0 = (s["short_n"], s["short_need"], s["short_t"])
        # `active`: under vmap every branch runs for every member; only those really at an
        # output time integrate (the others' loop runs no panel)
        _, _, acc, n_nodes, short = lax.while_loop(
            lambda c: (c[0] > 0) & active, panel,
            (jnp.int32(1), stack, zero, jnp.int32(0), short0))
        sign = jnp.where(t_hi > t_lo, 1.0, -1.0).astype(acc.dtype)
        return sign * acc, n_nodes, short

    # -- the pass --------------------------------------------------------------------------------
    ys = fw.ys
    tN, t0 = t_out[-1], t_out[0]
    parts = ([ys[N - 1]] if carries_y else []) + [g[N - 1]]
    if with_g:
        parts.append(jnp.zeros((P,), ydt))
    z0 = jnp.concatenate(parts)
    target0, _, _ = target_of(tN, N - 1)
    f0, h_ctrl, h, landing, nfe = start(rhs, tN, z0, t0, target0, rk, dec, active=active)
    dt = jnp.zeros((N,), tdt)
    fN = f0[:D] if carries_y else prob.F(tN, ys[N - 1])
    dt = dt.at[N - 1].set(jnp.sum(g[N - 1] * fN).astype(tdt))
    state = dict(
        t=tN, y=z0, f0=f0, h=h, landing=landing, h_ctrl=h_ctrl, **controller_memory(dec),
        n_steps=jnp.int32(0), nfe=nfe, n_acc=jnp.int32(0),
        i=jnp.where(active, N - 1, 0).astype(jnp.int32),
        nseg=jnp.int32(0), seg_t0=jnp.zeros((MB,), tdt), seg_h=jnp.zeros((MB,), tdt),
        seg_z=jnp.zeros((MB, Z), ydt), seg_Q=jnp.zeros((MB, Z, deg), ydt),
        pacc=jnp.zeros_like(pflat0), dt=dt, y0bar=jnp.zeros((D,), ydt),
        drift=jnp.zeros((), tdt), drift_at=tN, overflow=jnp.bool_(False),
        n_nodes=jnp.int32(0), short_n=jnp.int32(0), short_need=jnp.int32(0),
        short_t=jnp.zeros((), tdt), nfe_f=jnp.int32(0) if carries_y else jnp.int32(1),
        shift=jnp.zeros((D if shifted else 0,), ydt),
        seg_shift=jnp.zeros((MB if shifted else 0, D), ydt))
    last = rk.s - 1
    # i indexes the interval [t_out[i-1], t_out[i]] in the loop (outputs 0..N-1): i = N-1 first

    def body(s):
        i, t, z, h = s["i"], s["t"], s["y"], s["h"]
        target, is_ck, kb = target_of(t, i)
        landed_out = s["landing"] & ~is_ck
        after_ck, _, _ = target_of(target, i)
        after_out, _, _ = target_of(t_out[jnp.maximum(i - 1, 0)], jnp.maximum(i - 1, 1))
        target_acc = jnp.where(landed_out, after_out,
                               jnp.where(s["landing"], after_ck, target))
        landing_now = s["landing"]
        accept, K, z1, t1, s = attempt(rhs, rk, dec, i >= 1, s, target, target_acc, t0)

        def on_accept(s):
            nfe = s["nfe"]
            if rk.fsal:
                f1 = K[last]
            else:
                f1 = rhs(t1, z1)
                nfe = nfe + 1
            if rule is not None:
                Q = rk.dense(rhs, K, t, h, t1, z, z1, f1)
                nfe = nfe + rk.dense_evals
                k = s["nseg"]
                s = dict(s, seg_t0=s["seg_t0"].at[k].set(t), seg_h=s["seg_h"].at[k].set(t1 - t),
                         seg_z=s["seg_z"].at[k].set(z), seg_Q=s["seg_Q"].at[k].set(Q),
                         nseg=k + 1, overflow=s["overflow"] | (k >= MB))
                if shifted:
                    s = dict(s, seg_shift=s["seg_shift"].at[k].set(s["shift"]))
            s = dict(s, t=t1, y=z1, f0=f1, nfe=nfe, n_acc=s["n_acc"] + 1)

            def restart_ck(s):
                y_ref = fw.ck_y[kb]
                dr = drift(s["y"], y_ref)
                worse = dr > s["drift"]
                z = s["y"].at[:D].set(y_ref)
                if shifted:
                    s = dict(s, shift=s["shift"] + (y_ref - s["y"][:D]))
                return dict(s, y=z, f0=rhs(t1, z), nfe=s["nfe"] + 1,
                            drift=jnp.where(worse, dr, s["drift"]),
                            drift_at=jnp.where(worse, t1, s["drift_at"]))

            def at_output(s):
                im1 = i - 1
                pacc, n_nodes = s["pacc"], s["n_nodes"]
                if rule is not None:
                    part, nn, short = quadrature(s, t_out[i], t_out[im1], fw.stats["nfe"],
                                                 accept & landing_now & ~is_ck)
                    pacc, n_nodes = pacc + part, n_nodes + nn
                    s = dict(s, short_n=short[0], short_need=short[1], short_t=short[2])
                s = dict(s, pacc=pacc, n_nodes=n_nodes, nseg=jnp.int32(0),
                         shift=jnp.zeros_like(s["shift"]))
                a_before = s["y"][ab]
                worse_dr = drift(s["y"], ys[im1]) if carries_y else jnp.zeros((), tdt)
                worse = worse_dr > s["drift"]
                s = dict(s, drift=jnp.where(worse, worse_dr, s["drift"]),
                         drift_at=jnp.where(worse, t1, s["drift_at"]))

                def final(s):
                    f_0 = prob.F(t0, ys[0])
                    pacc = (s["y"][blocks["params"]].astype(s["pacc"].dtype) if with_g else s["pacc"])
                    return dict(s, dt=s["dt"].at[0].set(-jnp.sum(a_before * f_0).astype(tdt)),
                                y0bar=a_before + g[0], pacc=pacc, i=jnp.int32(0),
                                nfe_f=s["nfe_f"] + 1)

                def jump(s):
                    parts = ([ys[im1]] if carries_y else []) + [a_before + g[im1]]
                    if with_g:
                        parts.append(s["y"][blocks["params"]])
                    z = jnp.concatenate(parts)
                    fz = rhs(t1, z)
                    nfe_f = s["nfe_f"]
                    if carries_y:
                        fy = fz[:D]
                    else:
                        fy = prob.F(t1, ys[im1])
                        nfe_f = nfe_f + 1
                    return dict(s, y=z, f0=fz, nfe=s["nfe"] + 1, i=im1, nfe_f=nfe_f,
                                dt=s["dt"].at[im1].set(jnp.sum(g[im1] * fy).astype(tdt)))

                return lax.cond(im1 == 0, final, jump, s)

            branch = jnp.where(landing_now & ~is_ck, 2, jnp.where(landing_now & is_ck, 1, 0))
            return lax.switch(branch, [lambda s: s, restart_ck, at_output], s)

        return lax.cond(accept, on_accept, lambda s: s, s)

    s = lax.while_loop(lambda s: s["i"] >= 1, body, state)
    a = s["y0bar"]
    ok = check_finite(~jnp.all(jnp.isfinite(a)) | ~jnp.all(jnp.isfinite(s["pacc"])), t0,
                      jnp.zeros((), tdt), f"{type(strategy).__name__}: the adjoint or the "
                      "parameter gradient became non-finite in the backward pass")
    ok2 = _side_effect(overflow_error(
        f"{type(strategy).__name__}: the backward solve of one output interval took more "
        f"than max_steps = {cfg.max_steps} steps, the size of its interpolant buffer; "
        "raise `max_steps`"), s["overflow"], t0)
    ok3 = _side_effect(warn_drift(strategy, st["step_size"] is not None), s["drift"],
                       s["drift_at"]) if carries_y else ok
    ok4 = ok
    if rule is not None and rule.nodes != "adaptive":
        ok4 = _side_effect(short_rule_warning(rule, type(strategy).__name__), s["short_n"],
                           s["short_need"], s["short_t"])
    keep = (ok | ok2 | ok3 | ok4).astype(ydt) * 0
    dargs_bar = unravel_p((s["pacc"] + keep.astype(s["pacc"].dtype)).astype(pflat0.dtype))
    stats = {"nfe_f": s["nfe"] + s["nfe_f"], "n_nodes": s["n_nodes"],
             "n_accepted": s["n_acc"], "n_steps": s["n_steps"]}
    return a + keep, tuple(dargs_bar), s["dt"].astype(t_out.dtype), stats


def forward_dense_reader(fw, rk_fwd, d):
    """``y(t)`` from the forward's recorded dense output: the accepted step holding ``t``
    (direction ``d``) and its interpolant. Used by the interpolated and collocation passes."""
    idx_m = jnp.arange(fw.ck_t0.shape[0])
    n_acc = fw.n_acc

    def dense_y(t):
        k = jnp.sum((idx_m < n_acc) & (d * (fw.ck_t1 - t) < 0))
        k = jnp.clip(k, 0, n_acc - 1)
        t0, t1 = fw.ck_t0[k], fw.ck_t1[k]
        hs = t1 - t0
        return rk_fwd.evaluate(fw.ck_y[k], hs, fw.ck_Q[k], (t - t0) / hs)
    return dense_y
