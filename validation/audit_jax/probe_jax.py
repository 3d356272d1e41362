"""Audit gqlib.jax gradients against jax autodiff through a fine RK4 (``_ref.py``), float64.

Usage: PYTHONPATH=. python validation/audit_jax/probe_jax.py [probe ...] [--strategies a,b]
Each line: probe, strategy, max relative error over (dy0, dargs, dt), warnings, exception.
A finding: error > 100 rtol with no GradientAccuracyWarning and no exception."""

import argparse
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _ref import ref_odeint, rel  # noqa: E402

import gqlib.jax as gj  # noqa: E402
from gqlib.adjoint import BacksolveAdjoint  # noqa: E402
from gqlib.errors import GradientAccuracyWarning  # noqa: E402

STRATS = {"checkpoint": "checkpoint", "gq": "gq", "backsolve": "backsolve",
          "backsolve-semi": BacksolveAdjoint(seminorm=True), "interpolated": "interpolated",
          "collocation": "collocation", "auto": None}


def forced(y, t, p):
    """Nonlinear, time-forced; W and c everywhere."""
    return jnp.tanh(p["W"] @ y) + p["c"] * jnp.sin(3.0 * t) - 0.2 * y


P = {"W": jnp.array([[-0.5, 0.8, 0.1], [-0.7, -0.2, 0.4], [0.3, -0.6, -0.4]]),
     "c": jnp.array([0.3, -0.2, 0.5])}
Y0 = jnp.array([0.5, -0.3, 0.8])
W_OUT = jnp.array([0.0, 1.0, 0.0, 2.0, 0.0])  # loss on some outputs only (first, last: 0)


def loss_some(ys):
    return jnp.sum(W_OUT[:, None] * jnp.asarray([1.0, -2.0, 0.5]) * ys ** 2)


def run_case(name, func, y0, t, args, loss, strategy, rtol=1e-8, atol=1e-10, h=1e-3,
             breaks=(), opts=None, wrt_t=True, ref_loss=None, tol_mult=100):
    opts = opts or {}
    argnums = (0, 1, 2) if wrt_t else (0, 2)

    def gl(y0, t, args):
        return loss(gj.odeint(func, y0, t, *args, rtol=rtol, atol=atol, adjoint=strategy,
                              **opts))

    def rl(y0, t, args):
        return (ref_loss or loss)(ref_odeint(func, y0, t, *args, h=h, breaks=breaks, grid=t0))
    t0 = np.asarray(t)
    ref = jax.jit(jax.grad(rl, argnums=argnums, allow_int=True))(y0, t, args)
    exc, err, ws = None, None, []
    start = time.time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got = jax.jit(jax.grad(gl, argnums=argnums, allow_int=True))(y0, t, args)
            jax.block_until_ready(got)
            leaves = jax.tree_util.tree_leaves(got)
            if any(np.asarray(x).dtype != jax.dtypes.float0
                   and not np.all(np.isfinite(np.asarray(x))) for x in leaves):
                exc = "NON-FINITE GRADIENT RETURNED"
            errs = [rel(g, r) for g, r in zip(got, ref, strict=True)]
            err = max(errs)
        except Exception as e:  # noqa: BLE001
            exc = f"{type(e).__name__}: {str(e)[:300]}"
            errs = []
    ws = [str(w.message)[:120] for w in caught if issubclass(w.category, GradientAccuracyWarning)]
    flag = ""
    if exc is None and err is not None and err > tol_mult * rtol and not ws:
        flag = "  <== FINDING (silent)"
    if exc and "NON-FINITE" in exc:
        flag = "  <== FINDING (NaN returned)"
    sname = next(k for k, v in STRATS.items() if v is strategy)
    print(f"{name:28s} {str(sname):14s} err={err if err is None else f'{err:.2e}'} "
          f"parts={[f'{e:.1e}' for e in errs]} warn={len(ws)} {ws[:1]} exc={exc}"
          f" ({time.time() - start:.1f}s){flag}", flush=True)
    return err, ws, exc


T5 = jnp.array([0.0, 0.4, 1.0, 1.7, 2.0])


def p_forced(s):
    run_case("forced-some-outputs", forced, Y0, T5, (P,), loss_some, s)


def p_decreasing(s):
    run_case("decreasing-t", forced, Y0, T5[::-1], (P,), loss_some, s)


def p_two_points(s):
    run_case("two-points", forced, Y0, jnp.array([0.0, 2.0]), (P,),
             lambda ys: jnp.sum(ys[-1] ** 2), s)


def p_large_t0(s):
    run_case("large-t0-1e4", forced, Y0, 1e4 + T5, (P,), loss_some, s)


def tree_f(y, t, p, n, unused):
    a, b = y["a"], y["b"]
    return {"a": jnp.tanh(p[0] @ a) * n - 0.1 * a, "b": (-p[1] * b[0] + 0.1 * jnp.sum(a), b[1])}


def p_pytree(s):
    y0 = {"a": jnp.array([0.5, -0.3]), "b": (jnp.array(0.7), jnp.array([1.0, 2.0]))}
    args = ((jnp.array([[0.2, -0.9], [0.8, 0.1]]), jnp.array(0.9)), jnp.array(2),
            jnp.array([1.0, 2.0]))

    def loss(ys):
        return jnp.sum(ys["a"][2] ** 2) + jnp.sum(ys["b"][0][-1] ** 3)
    run_case("pytree-int-unused", tree_f, y0, T5, args, loss, s)


def p_vmap(s):
    """per-example gradients: vmap(grad) over y0 batch and params."""
    rtol = 1e-8
    Y = jnp.array([[0.5, -0.3, 0.8], [1.0, 0.2, -0.4], [-0.6, 0.9, 0.1]])
    cs = jnp.stack([P["c"], 2 * P["c"], -P["c"]])

    def gl(y0, c):
        return loss_some(gj.odeint(forced, y0, T5, {"W": P["W"], "c": c}, rtol=rtol,
                                   atol=1e-10, adjoint=s))

    def rl(y0, c):
        return loss_some(ref_odeint(forced, y0, T5, {"W": P["W"], "c": c}))
    ref = jax.jit(jax.vmap(jax.grad(rl, argnums=(0, 1))))(Y, cs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = jax.jit(jax.vmap(jax.grad(gl, argnums=(0, 1))))(Y, cs)
    err = max(rel(g, r) for g, r in zip(got, ref, strict=True))
    ws = [w for w in caught if issubclass(w.category, GradientAccuracyWarning)]
    flag = "  <== FINDING (silent)" if err > 100 * rtol and not ws else ""
    print(f"{'vmap-grad y0+c':28s} {next(k for k, v in STRATS.items() if v is s):14s} err={err:.2e} warn={len(ws)}{flag}", flush=True)


def forced32(y, t, p):
    return forced(y, t.astype(y.dtype), jax.tree_util.tree_map(lambda x: x.astype(y.dtype), p))


def p_float32(s):
    y0 = Y0.astype(jnp.float32)
    p32 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), P)

    def loss(ys):
        return loss_some(ys.astype(jnp.float64))
    # reference in float64 on the float64 values of the same inputs
    rtol = 1e-5

    def gl(y0, t, p):
        return loss(gj.odeint(forced32, y0, t, p, rtol=rtol, atol=1e-7, adjoint=s))
    ref = jax.jit(jax.grad(lambda y0, t, p: loss_some(ref_odeint(forced, y0, t, p, grid=T5)),
                           argnums=(0, 1, 2)))(Y0, T5, P)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got = jax.jit(jax.grad(gl, argnums=(0, 1, 2)))(y0, T5, p32)
            errs = [rel(g, r) for g, r in zip(got, ref, strict=True)]
            err, exc = max(errs), None
        except Exception as e:  # noqa: BLE001
            err, errs, exc = None, [], f"{type(e).__name__}: {str(e)[:200]}"
    ws = [w for w in caught if issubclass(w.category, GradientAccuracyWarning)]
    flag = "  <== FINDING (silent)" if err is not None and err > 100 * rtol and not ws else ""
    print(f"{'float32 rtol1e-5':28s} {next(k for k, v in STRATS.items() if v is s):14s} err={err} parts={[f'{e:.1e}' for e in errs]}"
          f" warn={len(ws)} exc={exc}{flag}", flush=True)


def p_fixed(s):
    run_case("rk4-step_size-0.01", forced, Y0, T5, (P,), loss_some, s,
             opts={"method": "rk4", "step_size": 0.01})


def kink(y, t, p):
    """p enters only for t > 0.7 (a kink in time), k everywhere."""
    return -p[0] * y + p[1] * jnp.maximum(t - 0.7, 0.0) * jnp.cos(y)


def p_kink(s):
    run_case("param-only-after-kink", kink, jnp.array([1.0, -0.5]), T5,
             ((jnp.array(0.8), jnp.array([0.5, -1.5])),), lambda ys: jnp.sum(ys[1:] ** 2), s,
             breaks=(0.7,))


def nan_bwd(y, t, k):
    """forward finite (where picks 0), but the VJP is NaN wherever y[0] < 0.3 (where-trap)."""
    safe = jnp.where(y[0] > 0.3, jnp.sqrt(y[0] - 0.3), 0.0)
    return jnp.array([-k * y[0], 0.1 * safe - y[1]])


def p_nan_bwd(s):
    # y[0] = exp(-k t) crosses 0.3 at t = ln(1/0.3)/k ~ 1.2 for k = 1
    run_case("nan-in-backward-only", nan_bwd, jnp.array([1.0, 0.5]), T5, (jnp.array(1.0),),
             lambda ys: jnp.sum(ys[-1] ** 2), s)


def linear_decay(y, t, A):
    return A @ y


def p_long(s):
    A = jnp.array([[-0.5, 0.3], [-0.3, -0.5]])
    run_case("long-interval-0-100", linear_decay, jnp.array([1.0, 0.0]),
             jnp.array([0.0, 100.0]), (A,), lambda ys: jnp.sum(ys[-1]) * 1e20, s, h=1e-2,
             rtol=1e-8, atol=1e-30)


def lorenz(u, t, p):
    s_, r, b = p
    x, y, z = u
    return jnp.array([s_ * (y - x), x * (r - z) - y, x * y - b * z])


def p_lorenz(s):
    run_case("lorenz-t5-rtol1e-6", lorenz, jnp.array([1.0, 1.0, 20.0]),
             jnp.array([0.0, 2.5, 5.0]), (jnp.array([10.0, 28.0, 8.0 / 3.0]),),
             lambda ys: jnp.sum(ys[-1] ** 2), s, rtol=1e-6, atol=1e-8, h=2e-4)


def p_row0_loss(s):
    """a loss on ys[0] (= y0) and on later rows: dL/dy0 gets g_0; dL/dt0 must not."""
    run_case("loss-on-row0", forced, Y0, T5, (P,),
             lambda ys: jnp.sum(jnp.sin(ys[0]) * ys[0]) + jnp.sum(ys[2] ** 2), s)


def p_vmap_t(s):
    """vmap over batched output times (each member its own grid) with grad in t and args."""
    rtol = 1e-8
    Ts = jnp.stack([T5, 0.5 * T5, T5[::-1] + 1.0])

    def gl(t, c):
        return loss_some(gj.odeint(forced, Y0, t, {"W": P["W"], "c": c}, rtol=rtol,
                                   atol=1e-10, adjoint=s))
    refs = [jax.grad(lambda t, c, tc=tc: loss_some(
        ref_odeint(forced, Y0, t, {"W": P["W"], "c": c}, grid=tc)), argnums=(0, 1))(
        jnp.asarray(tc), P["c"]) for tc in np.asarray(Ts)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = jax.jit(jax.vmap(jax.grad(gl, argnums=(0, 1)), in_axes=(0, None)))(Ts, P["c"])
    err = max(rel((got[0][i], got[1][i]), r) for i, r in enumerate(refs))
    ws = [w for w in caught if issubclass(w.category, GradientAccuracyWarning)]
    flag = "  <== FINDING (silent)" if err > 100 * rtol and not ws else ""
    print(f"{'vmap-over-t grad t,c':28s} {next(k for k, v in STRATS.items() if v is s):14s} "
          f"err={err:.2e} warn={len(ws)}{flag}", flush=True)


def mixed_f(y, t, p):
    a, b = y
    return (jnp.tanh(p.astype(a.dtype) * b.astype(a.dtype)) - a,
            (-0.5 * b + jnp.sin(3 * t) * jnp.sum(a)).astype(b.dtype))


def p_mixed_dtypes(s):
    """state leaves float32 and float64 (x64 on); fair bound rtol 1e-5 with float32."""
    y0 = (jnp.array([0.5, -0.3], jnp.float32), jnp.array([0.8, 0.1], jnp.float64))
    p = jnp.array([0.7, -1.2])

    def loss(ys):
        return jnp.sum(ys[0][-1].astype(jnp.float64) ** 2) + jnp.sum(ys[1][2] ** 2)
    y064 = (y0[0].astype(jnp.float64), y0[1])
    ref = jax.grad(lambda y0, t, p: loss(ref_odeint(mixed_f, y0, t, p, grid=T5)),
                   argnums=(0, 1, 2))(y064, T5, p)
    rtol = 1e-5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got = jax.jit(jax.grad(lambda y0, t, p: loss(gj.odeint(
                mixed_f, y0, t, p, rtol=rtol, atol=1e-7, adjoint=s)), argnums=(0, 1, 2)))(
                y0, T5, p)
            errs = [rel(g, r) for g, r in zip(got, ref, strict=True)]
            err, exc = max(errs), None
        except Exception as e:  # noqa: BLE001
            err, errs, exc = None, [], f"{type(e).__name__}: {str(e)[:200]}"
    ws = [w for w in caught if issubclass(w.category, GradientAccuracyWarning)]
    flag = "  <== FINDING (silent)" if err is not None and err > 100 * rtol and not ws else ""
    print(f"{'mixed f32/f64 state':28s} {next(k for k, v in STRATS.items() if v is s):14s} "
          f"err={err} parts={[f'{e:.1e}' for e in errs]} warn={len(ws)} exc={exc}{flag}",
          flush=True)


def p_jacrev(s):
    """jax.jacrev: the backward pass vmapped over a batch of cotangents."""
    rtol = 1e-8

    def out(c):
        return gj.odeint(forced, Y0, T5, {"W": P["W"], "c": c}, rtol=rtol, atol=1e-10,
                         adjoint=s)[jnp.array([1, 3])].ravel()
    ref = jax.jacrev(lambda c: ref_odeint(forced, Y0, T5, {"W": P["W"], "c": c})[jnp.array([1, 3])]
                     .ravel())(P["c"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got = jax.jit(jax.jacrev(out))(P["c"])
            err, exc = rel(got, ref), None
        except Exception as e:  # noqa: BLE001
            err, exc = None, f"{type(e).__name__}: {str(e)[:200]}"
    ws = [w for w in caught if issubclass(w.category, GradientAccuracyWarning)]
    flag = "  <== FINDING (silent)" if err is not None and err > 100 * rtol and not ws else ""
    print(f"{'jacrev (vmapped bwd)':28s} {next(k for k, v in STRATS.items() if v is s):14s} "
          f"err={err} warn={len(ws)} exc={exc}{flag}", flush=True)


def p_f32_args(s):
    """float32 parameters with a float64 state."""
    p32 = jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), P)

    def f(y, t, p):
        return forced(y, t, jax.tree_util.tree_map(lambda x: x.astype(y.dtype), p))
    ref = jax.grad(lambda y0, t, p: loss_some(ref_odeint(f, y0, t, p, grid=T5)),
                   argnums=(0, 1, 2))(Y0, T5, jax.tree_util.tree_map(
                       lambda x: x.astype(jnp.float64), p32))
    rtol = 1e-8
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            got = jax.jit(jax.grad(lambda y0, t, p: loss_some(gj.odeint(
                f, y0, t, p, rtol=rtol, atol=1e-10, adjoint=s)), argnums=(0, 1, 2)))(
                Y0, T5, p32)
            errs = [rel(g, r) for g, r in zip(got, ref, strict=True)]
            err, exc = max(errs), None
            # a float32 gradient is rounded: the fair bound is float32 eps
            if err < 1e-6:
                err = err
        except Exception as e:  # noqa: BLE001
            err, errs, exc = None, [], f"{type(e).__name__}: {str(e)[:200]}"
    ws = [w for w in caught if issubclass(w.category, GradientAccuracyWarning)]
    flag = "  <== FINDING (silent)" if err is not None and err > 1e-6 and not ws else ""
    print(f"{'float32 args, f64 state':28s} {next(k for k, v in STRATS.items() if v is s):14s} "
          f"err={err} parts={[f'{e:.1e}' for e in errs]} warn={len(ws)} exc={exc}{flag}",
          flush=True)


METHOD_RTOL = {"dop853": 1e-8, "dopri8": 1e-8, "tsit5": 1e-8, "dopri5": 1e-8, "bosh3": 1e-6,
               "fehlberg2": 1e-5, "adaptive_heun": 1e-5, "dopri5_shampine": 1e-10}


def p_methods(s):
    """every adaptive method, outputs inside steps (loss on all rows)."""
    for m, rtol in METHOD_RTOL.items():
        run_case(f"method-{m}", forced, Y0, T5, (P,), loss_some, s, rtol=rtol, atol=rtol * 1e-2,
                 opts={"method": m}, h=5e-4)


def p_fixed_nondividing(s):
    """fixed steps that do not divide the intervals; rk4, midpoint, heun3; reference bound:
    the method's own error at that step (compare to the same fixed-step ODE solution)."""
    for m, hs in (("rk4", 0.3), ("midpoint", 0.01), ("rk38", 0.07)):
        run_case(f"fixed-{m}-{hs}", forced, Y0, T5, (P,), loss_some, s, rtol=1e-5,
                 opts={"method": m, "step_size": hs}, tol_mult=1e4)


def p_close_outputs(s):
    """output times 1e-9 apart and a loss that weighs both."""
    t = jnp.array([0.0, 0.7, 0.7 + 1e-9, 2.0])
    run_case("outputs-1e-9-apart", forced, Y0, t, (P,),
             lambda ys: jnp.sum(ys[1] ** 2) - jnp.sum(ys[2] * ys[1]) + jnp.sum(ys[3]), s)


PROBES = {k[2:]: v for k, v in globals().items() if k.startswith("p_")}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("probes", nargs="*", default=list(PROBES))
    ap.add_argument("--strategies", default=",".join(STRATS))
    a = ap.parse_args()
    for p in a.probes:
        for sname in a.strategies.split(","):
            try:
                PROBES[p](STRATS[sname])
            except Exception as e:  # noqa: BLE001
                print(f"{p:28s} {sname:14s} PROBE CRASHED {type(e).__name__}: {str(e)[:300]}",
                      flush=True)
