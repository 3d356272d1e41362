"""numba kernels: the fixed-step SDE methods of ``_methods.py`` for jitted drift/diffusion on NumPy.

Same formulas as the array-API steps (diagonal and scalar noise, derivative-free Milstein), looping
over a chunk of precomputed Brownian increments inside one compiled function. The drift and diffusion
are numba dispatchers passed as arguments, so each pair compiles its own specialisation; such kernels
cannot be cached on disk (the dispatcher types are per process), hence ``cache=False``.

Arguments: ``T`` the chunk's grid (n + 1 times), ``dW`` its increments (n, *noise_shape), ``rec[k]``
the output row for grid point ``k + 1`` or -1, ``out`` the output array.
"""

from __future__ import annotations

import math

from gqlib._jit import jit

__all__ = ["KERNELS", "KERNEL_REQUIRES"]

#: Noise capabilities the kernels assume: the product ``g * dW`` (``NoiseType.elementwise``).
KERNEL_REQUIRES = frozenset({"elementwise"})


@jit(cache=False)
def _euler_maruyama(f, g, T, dW, y, rec, out):
    for n in range(dW.shape[0]):
        t = T[n]
        h = T[n + 1] - t
        y = y + f(t, y) * h + g(t, y) * dW[n]
        if rec[n] >= 0:
            out[rec[n]] = y
    return (y,)


@jit(cache=False)
def _milstein(f, g, T, dW, y, rec, out):
    for n in range(dW.shape[0]):
        t = T[n]
        h = T[n + 1] - t
        sq = math.sqrt(h)
        f0 = f(t, y)
        g0 = g(t, y)
        c = (g(t, y + f0 * h + g0 * sq) - g0) / sq
        dw = dW[n]
        y = y + f0 * h + g0 * dw + 0.5 * c * (dw * dw - h)
        if rec[n] >= 0:
            out[rec[n]] = y
    return (y,)


@jit(cache=False)
def _euler_heun(f, g, T, dW, y, rec, out):
    for n in range(dW.shape[0]):
        t = T[n]
        h = T[n + 1] - t
        dw = dW[n]
        g0dw = g(t, y) * dw
        y = y + f(t, y) * h + 0.5 * (g0dw + g(t + h, y + g0dw) * dw)
        if rec[n] >= 0:
            out[rec[n]] = y
    return (y,)


@jit(cache=False)
def _midpoint(f, g, T, dW, y, rec, out):
    for n in range(dW.shape[0]):
        t = T[n]
        h = T[n + 1] - t
        th = t + 0.5 * h
        dw = dW[n]
        y_mid = y + 0.5 * (f(t, y) * h + g(t, y) * dw)
        y = y + f(th, y_mid) * h + g(th, y_mid) * dw
        if rec[n] >= 0:
            out[rec[n]] = y
    return (y,)


@jit(cache=False)
def _reversible_heun(f, g, T, dW, y, y_hat, f0, g0, rec, out):
    for n in range(dW.shape[0]):
        t = T[n]
        h = T[n + 1] - t
        dw = dW[n]
        y_hat = 2.0 * y - y_hat + f0 * h + g0 * dw
        f1 = f(t + h, y_hat)
        g1 = g(t + h, y_hat)
        y = y + 0.5 * (f0 + f1) * h + 0.5 * (g0 * dw + g1 * dw)
        f0 = f1
        g0 = g1
        if rec[n] >= 0:
            out[rec[n]] = y
    return (y, y_hat, f0, g0)


#: Method name -> kernel. Reversible Heun carries (y, y_hat, f, g); the others (y,).
KERNELS = {
    "euler_maruyama": _euler_maruyama,
    "milstein": _milstein,
    "euler_heun": _euler_heun,
    "midpoint": _midpoint,
    "reversible_heun": _reversible_heun,
}
