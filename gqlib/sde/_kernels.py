"""numba kernels: the fixed-step SDE methods of ``_methods.py`` for jitted drift/diffusion on NumPy.

Same formulas as the array-API steps (diagonal and scalar noise, derivative-free Milstein), looping
over a chunk of precomputed Brownian increments inside one compiled function. The drift and diffusion
are numba dispatchers passed as arguments, so each pair compiles its own specialisation; such kernels
cannot be cached on disk (the dispatcher types are per process), hence ``cache=False``.

Arguments: ``T`` the chunk's grid (n + 1 times), ``dW`` its increments (n, *noise_shape), ``rec[k]``
the output row for grid point ``k + 1`` or -1, ``out`` the output array. Each kernel returns
``(k, state)``: ``k = -1`` and the final state, or the first step ``k`` whose drift or diffusion
returned another shape than the state's or whose new state is not finite, with the state before that
step, which the caller replays in Python to raise the error (same formulas, so the same step fails).
"""

from __future__ import annotations

import math

from gqlib._jit import jit

__all__ = ["KERNELS", "KERNEL_REQUIRES"]

#: Noise capabilities the kernels assume: the product ``g * dW`` (``NoiseType.elementwise``).
KERNEL_REQUIRES = frozenset({"elementwise"})


@jit
def _fits(a, y):
    """``a`` has the state's shape (a broadcast would hide a wrong output shape)."""
    return a.shape == y.shape


@jit
def _all_finite(y):
    for v in y.flat:
        if not math.isfinite(v):
            return False
    return True


@jit(cache=False)
def _euler_maruyama(f, g, T, dW, y, rec, out):
    for n in range(dW.shape[0]):
        t = T[n]
        h = T[n + 1] - t
        f0 = f(t, y)
        g0 = g(t, y)
        if not (_fits(f0, y) and _fits(g0, y)):
            return n, (y,)
        y1 = y + f0 * h + g0 * dW[n]
        if not _all_finite(y1):
            return n, (y,)
        y = y1
        if rec[n] >= 0:
            out[rec[n]] = y
    return -1, (y,)


@jit(cache=False)
def _milstein(f, g, T, dW, y, rec, out):
    for n in range(dW.shape[0]):
        t = T[n]
        h = T[n + 1] - t
        sq = math.sqrt(h)
        f0 = f(t, y)
        g0 = g(t, y)
        g1 = g(t, y + f0 * h + g0 * sq)
        if not (_fits(f0, y) and _fits(g0, y) and _fits(g1, y)):
            return n, (y,)
        c = (g1 - g0) / sq
        dw = dW[n]
        y1 = y + f0 * h + g0 * dw + 0.5 * c * (dw * dw - h)
        if not _all_finite(y1):
            return n, (y,)
        y = y1
        if rec[n] >= 0:
            out[rec[n]] = y
    return -1, (y,)


@jit(cache=False)
def _euler_heun(f, g, T, dW, y, rec, out):
    for n in range(dW.shape[0]):
        t = T[n]
        h = T[n + 1] - t
        dw = dW[n]
        g0 = g(t, y)
        g0dw = g0 * dw
        f0 = f(t, y)
        g1 = g(t + h, y + g0dw)
        if not (_fits(g0, y) and _fits(f0, y) and _fits(g1, y)):
            return n, (y,)
        y1 = y + f0 * h + 0.5 * (g0dw + g1 * dw)
        if not _all_finite(y1):
            return n, (y,)
        y = y1
        if rec[n] >= 0:
            out[rec[n]] = y
    return -1, (y,)


@jit(cache=False)
def _midpoint(f, g, T, dW, y, rec, out):
    for n in range(dW.shape[0]):
        t = T[n]
        h = T[n + 1] - t
        th = t + 0.5 * h
        dw = dW[n]
        f0 = f(t, y)
        g0 = g(t, y)
        y_mid = y + 0.5 * (f0 * h + g0 * dw)
        f1 = f(th, y_mid)
        g1 = g(th, y_mid)
        if not (_fits(f0, y) and _fits(g0, y) and _fits(f1, y) and _fits(g1, y)):
            return n, (y,)
        y1 = y + f1 * h + g1 * dw
        if not _all_finite(y1):
            return n, (y,)
        y = y1
        if rec[n] >= 0:
            out[rec[n]] = y
    return -1, (y,)


@jit(cache=False)
def _reversible_heun(f, g, T, dW, y, y_hat, f0, g0, rec, out):
    for n in range(dW.shape[0]):
        t = T[n]
        h = T[n + 1] - t
        dw = dW[n]
        y_hat1 = 2.0 * y - y_hat + f0 * h + g0 * dw
        f1 = f(t + h, y_hat1)
        g1 = g(t + h, y_hat1)
        if not (_fits(f1, y) and _fits(g1, y)):
            return n, (y, y_hat, f0, g0)
        y1 = y + 0.5 * (f0 + f1) * h + 0.5 * (g0 * dw + g1 * dw)
        if not _all_finite(y1):
            return n, (y, y_hat, f0, g0)
        y = y1
        y_hat = y_hat1
        f0 = f1
        g0 = g1
        if rec[n] >= 0:
            out[rec[n]] = y
    return -1, (y, y_hat, f0, g0)


#: Method name -> kernel. Reversible Heun carries (y, y_hat, f, g); the others (y,).
KERNELS = {
    "euler_maruyama": _euler_maruyama,
    "milstein": _milstein,
    "euler_heun": _euler_heun,
    "midpoint": _midpoint,
    "reversible_heun": _reversible_heun,
}
