"""Independent reference for the audit: jax autodiff through a plain fixed-step RK4 (float64).

``ref_odeint(func, y0, t, *args, h=1e-3, breaks=())`` integrates ``func(y, t, *args)`` with
RK4 from t[0] through every t[i] (and every time in ``breaks``, so that no step straddles a
kink or jump of the field), each sub-interval cut into equal steps no longer than ``h``. The
step count is fixed from the concrete ``t``; the steps themselves are ``(t1 - t0) / n``, so
jax.grad differentiates through the times too (dL/dt)."""

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)


def _rk4(func, y, t0, t1, n, args, onesided=False):
    h = (t1 - t0) / n
    # one-sided limits at the ends of a piece (a jump of f in t at a break): the field is
    # called a hair inside [t0, t1] (1e-9 of the piece), as gqlib's stages next to a tstop
    lo, hi = (t0 + 1e-9 * (t1 - t0), t1 - 1e-9 * (t1 - t0)) if onesided else (None, None)

    def at(s):
        if not onesided:
            return s
        return jnp.clip(s, jnp.minimum(lo, hi), jnp.maximum(lo, hi))

    def step(carry, i):
        y = carry
        s = t0 + i * h
        tm = jax.tree_util.tree_map
        k1 = func(y, at(s), *args)
        k2 = func(tm(lambda a, b: a + 0.5 * h * b, y, k1), at(s + 0.5 * h), *args)
        k3 = func(tm(lambda a, b: a + 0.5 * h * b, y, k2), at(s + 0.5 * h), *args)
        k4 = func(tm(lambda a, b: a + h * b, y, k3), at(s + h), *args)
        y = tm(lambda a, b1, b2, b3, b4: a + h / 6 * (b1 + 2 * b2 + 2 * b3 + b4), y, k1, k2,
               k3, k4)
        return y, None
    y, _ = jax.lax.scan(step, y, jnp.arange(n, dtype=jnp.float64))
    return y


def ref_odeint(func, y0, t, *args, h=1e-3, breaks=(), grid=None):
    """y at every t[i], differentiable in y0, t and args; ``grid``: t's concrete values (needed
    where t is traced, under jax.grad in t)."""
    tc = np.asarray(t if grid is None else grid, dtype=np.float64)
    return _ref(func, y0, t, tc, args, h, breaks)


def _ref(func, y0, t, tc, args, h, breaks):
    out = [y0]
    y = y0
    sgn = np.sign(tc[-1] - tc[0])
    for i in range(len(tc) - 1):
        inner = sorted(b for b in breaks if sgn * tc[i] < sgn * b < sgn * tc[i + 1])
        if sgn < 0:
            inner = inner[::-1]
        pts = [t[i], *[jnp.asarray(b, dtype=jnp.float64) for b in inner], t[i + 1]]
        ptc = [tc[i], *inner, tc[i + 1]]
        for a, b, ac, bc in zip(pts[:-1], pts[1:], ptc[:-1], ptc[1:], strict=True):
            n = max(1, int(np.ceil(abs(bc - ac) / h)))
            y = _rk4(func, y, a, b, n, args, onesided=bool(breaks))
        out.append(y)
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *out)


def rel(x, ref):
    """max-norm relative error over a PyTree (None leaves compare as zero)."""
    keep = [(a, b) for a, b in zip(jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(ref),
                                   strict=True) if np.asarray(b).dtype != jax.dtypes.float0]
    xs = [a for a, _ in keep]
    rs = [b for _, b in keep]
    num = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(xs, rs, strict=True))
    den = max(float(np.max(np.abs(np.asarray(b)))) for b in rs)
    return num / den if den > 0 else num
