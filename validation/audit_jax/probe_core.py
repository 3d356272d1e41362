"""Audit the core NumPy API (gqlib.solve + gqlib.adjoint.gradient) against jax autodiff through
a fine RK4 (``_ref.py``), float64. Fields are jax functions; the core gets them as NumPy
callables with jax.vjp's exact VJPs.

Usage: PYTHONPATH=. python validation/audit_jax/probe_core.py [probe ...] [--strategies a,b]
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

import gqlib  # noqa: E402
from gqlib.adjoint import (  # noqa: E402
    AutoAdjoint,
    BacksolveAdjoint,
    CheckpointAdjoint,
    CollocationAdjoint,
    GQAdjoint,
    InterpolatedAdjoint,
    gradient,
)
from gqlib.errors import GradientAccuracyWarning  # noqa: E402

STRATS = {"checkpoint": CheckpointAdjoint(), "gq": GQAdjoint(),
          "gq-nockpt": GQAdjoint(checkpoints=False), "backsolve": BacksolveAdjoint(),
          "backsolve-semi": BacksolveAdjoint(seminorm=True),
          "interpolated": InterpolatedAdjoint(), "collocation": CollocationAdjoint(),
          "auto": AutoAdjoint(), "gq-paper": GQAdjoint(nodes="paper"),
          "gq-8": GQAdjoint(nodes=8), "interp-paper": InterpolatedAdjoint(nodes="paper")}


class JaxField:
    """NumPy field from ``jf(y, t, theta)`` (theta flat), VJPs by jax.vjp."""

    def __init__(self, jf, theta):
        self.theta = jnp.asarray(theta)
        self._f = jax.jit(lambda t, y, th: jf(y, t, th))

        def vjp(t, y, a, th):
            _, pull = jax.vjp(lambda y, th: jf(y, t, th), y, th)
            return pull(a)
        self._vjp = jax.jit(vjp)

    def __call__(self, t, y):
        return np.asarray(self._f(t, y, self.theta))

    def vjp_y(self, t, y, a):
        return np.asarray(self._vjp(t, y, a, self.theta)[0])

    def vjp_params(self, t, y, a):
        return np.asarray(self._vjp(t, y, a, self.theta)[1])


def run_case(name, jf, theta, y0, t, loss, strategy, rtol=1e-8, atol=1e-10, h=1e-3, breaks=(),
             solve_opts=None, field=None, compare_t=True, tol_mult=100, grad_opts=None):
    solve_opts = solve_opts or {}
    y0 = np.asarray(y0, dtype=float)
    t = np.asarray(t, dtype=float)
    field = field or JaxField(jf, theta)
    rec = strategy.forward_record
    start = time.time()

    def rl(y0, th, tt):
        return loss(ref_odeint(jf, y0, tt, th, h=h, breaks=breaks, grid=t))
    ref = jax.jit(jax.grad(rl, argnums=(0, 1, 2)))(jnp.asarray(y0), jnp.asarray(theta),
                                                   jnp.asarray(t))
    exc, err, errs = None, None, []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            sol = gqlib.solve(field, y0, t, rtol=rtol, atol=atol,
                              checkpoints=rec in ("checkpoints", "dense"),
                              dense_output=rec == "dense", **solve_opts)
            gy = np.asarray(jax.grad(loss)(jnp.asarray(sol.y)))
            g = gradient(field, sol, gy, adjoint=strategy, **(grad_opts or {}))
            got = (g.y0, g.params, g.t) if compare_t else (g.y0, g.params)
            for x in got:
                if not np.all(np.isfinite(x)):
                    exc = "NON-FINITE GRADIENT RETURNED"
            errs = [rel(a, b) for a, b in zip(got, ref, strict=False)]
            err = max(errs)
        except Exception as e:  # noqa: BLE001
            exc = f"{type(e).__name__}: {str(e)[:300]}"
    ws = [str(w.message)[:150] for w in caught if issubclass(w.category, GradientAccuracyWarning)]
    flag = ""
    if exc is None and err is not None and err > tol_mult * rtol and not ws:
        flag = "  <== FINDING (silent)"
    if exc and "NON-FINITE" in exc:
        flag = "  <== FINDING (NaN returned)"
    sname = next(k for k, v in STRATS.items() if v is strategy)
    print(f"{name:26s} {sname:20s} err={err if err is None else f'{err:.2e}'} "
          f"parts={[f'{e:.1e}' for e in errs]} warn={len(ws)} {ws[:1]} exc={exc} "
          f"({time.time() - start:.1f}s){flag}", flush=True)
    return err, ws, exc


def forced(y, t, th):
    W = th[:9].reshape(3, 3)
    c = th[9:12]
    return jnp.tanh(W @ y) + c * jnp.sin(3.0 * t) - 0.2 * y


TH = np.array([-0.5, 0.8, 0.1, -0.7, -0.2, 0.4, 0.3, -0.6, -0.4, 0.3, -0.2, 0.5])
Y0 = np.array([0.5, -0.3, 0.8])
T5 = np.array([0.0, 0.4, 1.0, 1.7, 2.0])
W_OUT = jnp.array([0.0, 1.0, 0.0, 2.0, 0.0])


def loss_some(ys):
    return jnp.sum(W_OUT[:, None] * jnp.asarray([1.0, -2.0, 0.5]) * ys ** 2)


def p_forced(s):
    run_case("forced-some-outputs", forced, TH, Y0, T5, loss_some, s)


def p_decreasing(s):
    run_case("decreasing-t", forced, TH, Y0, T5[::-1], loss_some, s)


def p_large_t0(s):
    run_case("large-t0-1e4", forced, TH, Y0, 1e4 + T5, loss_some, s)


def kink(y, t, th):
    """th[1:] enters only for t > 0.7 (a kink in time)."""
    return -th[0] * y + th[1:] * jnp.maximum(t - 0.7, 0.0) * jnp.cos(y)


def p_kink(s):
    run_case("param-after-kink", kink, np.array([0.8, 0.5, -1.5]), [1.0, -0.5], T5,
             lambda ys: jnp.sum(ys[1:] ** 2), s, breaks=(0.7,))


def p_kink_tstop(s):
    run_case("param-after-kink+tstop", kink, np.array([0.8, 0.5, -1.5]), [1.0, -0.5], T5,
             lambda ys: jnp.sum(ys[1:] ** 2), s, breaks=(0.7,), solve_opts={"tstops": [0.7]})


def jump(y, t, th):
    """piecewise-constant control, jumps at 0.4, 1.0 (output times) and 1.3: th[k] acts on
    piece k only."""
    u = jnp.where(t < 0.4, th[1], jnp.where(t < 1.0, th[2], jnp.where(t < 1.3, th[3], th[4])))
    return -th[0] * y + u * jnp.array([1.0, -0.5])


def p_tstops_at_outputs(s):
    # dL/dt at a jump of f is one-sided and documented to differ between strategies: compare
    # y0 and params only
    run_case("tstops=outputs(jump)", jump, np.array([0.7, 1.0, -2.0, 3.0, 0.5]), [1.0, -0.5],
             T5, lambda ys: jnp.sum(ys[1:] ** 2), s, breaks=(0.4, 1.0, 1.3),
             solve_opts={"tstops": [0.4, 1.0, 1.3]}, compare_t=False)


def lin(y, t, th):
    return th.reshape(2, 2) @ y


def p_long(s):
    run_case("long-0-100", lin, np.array([-0.5, 0.3, -0.3, -0.5]), [1.0, 0.0],
             [0.0, 100.0], lambda ys: 1e20 * jnp.sum(ys[-1]), s, h=1e-2, atol=1e-30)


def lorenz(u, t, th):
    s_, r, b = th
    x, y, z = u
    return jnp.array([s_ * (y - x), x * (r - z) - y, x * y - b * z])


def p_lorenz(s):
    run_case("lorenz-t5-rtol1e-6", lorenz, np.array([10.0, 28.0, 8.0 / 3.0]), [1.0, 1.0, 20.0],
             [0.0, 2.5, 5.0], lambda ys: jnp.sum(ys[-1] ** 2), s, rtol=1e-6, atol=1e-8, h=2e-4)


class NaNBackward(JaxField):
    """finite forward; vjp_y returns NaN for t < 0.5 (only the backward pass sees it)."""

    def vjp_y(self, t, y, a):
        out = super().vjp_y(t, y, a)
        return out * np.nan if t < 0.5 else out


class NaNParams(JaxField):
    def vjp_params(self, t, y, a):
        out = super().vjp_params(t, y, a)
        return out * np.nan if t < 0.5 else out


def p_nan_vjp_y(s):
    run_case("nan-vjp_y-t<0.5", forced, TH, Y0, T5, loss_some, s,
             field=NaNBackward(forced, TH))


def p_nan_vjp_params(s):
    run_case("nan-vjp_params-t<0.5", forced, TH, Y0, T5, loss_some, s,
             field=NaNParams(forced, TH))


def p_methods(s):
    for m, rtol in (("dop853", 1e-8), ("dopri8", 1e-8), ("tsit5", 1e-8), ("bosh3", 1e-6),
                    ("fehlberg2", 1e-5), ("adaptive_heun", 1e-5), ("dopri5_shampine", 1e-10)):
        run_case(f"method-{m}", forced, TH, Y0, T5, loss_some, s, rtol=rtol, atol=rtol * 1e-2,
                 solve_opts={"method": m}, h=5e-4)


def p_close_outputs(s):
    run_case("outputs-1e-9-apart", forced, TH, Y0, [0.0, 0.7, 0.7 + 1e-9, 2.0],
             lambda ys: jnp.sum(ys[1] ** 2) - jnp.sum(ys[2] * ys[1]) + jnp.sum(ys[3]), s)


def p_osc_long(s):
    """one 100-long output interval of a lightly damped oscillator (16 periods): one quadrature
    panel unless the node rule splits it."""
    run_case("oscillator-0-100", lin, np.array([-0.02, 1.0, -1.0, -0.02]), [1.0, 0.0],
             [0.0, 100.0], lambda ys: jnp.sum(ys[-1] ** 2), s, h=2e-3)


def p_scalar_state(s):
    """a 0-d state."""
    run_case("0-d-state", lambda y, t, th: -th[0] * y + th[1] * jnp.sin(t), np.array([0.7, 0.3]),
             np.array(1.5), T5, lambda ys: jnp.sum(ys ** 2), s)


def p_batched_state(s):
    """a (batch, D) state."""
    def f(y, t, th):
        return jnp.tanh(y @ th.reshape(2, 2)) - 0.1 * y * jnp.cos(t)
    run_case("batch-x-D-state", f, np.array([0.3, -0.8, 0.6, 0.2]),
             np.array([[1.0, 0.5], [-0.3, 0.9], [0.2, 0.2]]), T5,
             lambda ys: jnp.sum(ys[-1] ** 2) + jnp.sum(ys[2]), s)


PROBES = {k[2:]: v for k, v in globals().items() if k.startswith("p_")}

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("probes", nargs="*", default=list(PROBES))
    ap.add_argument("--strategies", default=",".join(STRATS))
    a = ap.parse_args()
    for p in a.probes:
        for sname in a.strategies.split(","):
            PROBES[p](STRATS[sname])
