r"""Ito <-> Stratonovich drift conversion and the diffusion's derivative term.

For ``dX = mu dt + sigma dW`` (Ito) and ``dX = mu_S dt + sigma o dW`` (Stratonovich),

    mu_S^i = mu_I^i - 1/2 c^i,    c^i = sum_{j,k} sigma^{kj} d_k sigma^{ij}

(Kloeden & Platen 1992, (4.9.10)). ``c`` is also Milstein's correction term. Per noise type:

- diagonal (``sigma^{ij} = delta_ij g_i``): ``c^i = g_i d_i g_i``, needing only the diagonal of the
  Jacobian of g;
- scalar (one channel, ``sigma^i = g_i``): ``c = J g``, a directional derivative of g along g;
- general (``sigma`` of shape ``(..., d, m)``): ``c^i = sum_j (D_{sigma_j} sigma_{.j})^i``, one
  directional derivative per channel ``j`` along its column ``sigma_{.j}``.

Without ``diffusion_jacobian`` these derivatives come from central differences, evaluated in float64
with step ``s = eps^(1/3) max(1, |y|)`` (relative to the direction's size); the error is
``O(s^2 g''' + eps g / s)``, about ``1e-10`` relative for a smooth O(1)-scaled diffusion. Costs:
scalar 2 extra diffusion calls, general ``2 m``, diagonal ``2 n`` for a state of ``n`` elements
(each perturbed alone), ``2 prod(shape[batch_ndim:])`` when the leading ``batch_ndim`` axes index
independent samples, and 2 when ``commutative=True`` (each ``g_i`` depends only on ``y_i``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import device_of
from ._wong_zakai import check_noise_type
from ._xp import namespace

__all__ = ["ito_to_stratonovich", "stratonovich_to_ito", "diffusion_correction"]

_FD_STEP = np.finfo(np.float64).eps ** (1.0 / 3.0)


def _max_abs(xp, a) -> float:
    return float(xp.max(xp.abs(a))) if _size(a) else 0.0


def _size(a) -> int:
    n = 1
    for s in a.shape:
        n *= int(s)
    return n


def diffusion_correction(t: Any, y: Any, g: Any, diffusion: Callable, noise_type: str,
                         diffusion_jacobian: Callable | None = None, *, commutative: bool = False,
                         batch_ndim: int = 0):
    r"""``c^i = sum_{j,k} sigma^{kj} d_k sigma^{ij}`` at ``(t, y)``, with ``g = diffusion(t, y)``.

    ``diffusion_jacobian(t, y)`` returns: diagonal noise, the diagonal ``d g_i / d y_i`` (y's
    shape); scalar noise, ``J[..., i, k] = d g_i / d y_k`` (shape ``(..., d, d)``); general noise,
    ``J[..., i, j, k] = d sigma^{ij} / d y_k`` (shape ``(..., d, m, d)``). Without it, central
    differences (module docstring). The result has y's shape, namespace and dtype.
    """
    xp = namespace(y, g)
    if diffusion_jacobian is not None:
        jac = diffusion_jacobian(t, y)
        if noise_type == "diagonal":
            return g * jac
        if noise_type == "scalar":
            return xp.matmul(jac, g[..., None])[..., 0]
        gT = xp.permute_dims(g, tuple(range(g.ndim - 2)) + (g.ndim - 1, g.ndim - 2))
        return xp.sum(jac * gT[..., None, :, :], axis=(-2, -1))
    dtype = y.dtype
    y64 = xp.astype(y, xp.float64)
    g64 = xp.astype(g, xp.float64)
    scale = _FD_STEP * max(1.0, _max_abs(xp, y64))

    def dd(v, pick):
        """Central difference of ``pick(diffusion(t, .))`` along v at y."""
        vmax = _max_abs(xp, v)
        if vmax == 0.0:
            return xp.zeros_like(pick(g64))
        s = scale / vmax
        gp = xp.astype(diffusion(t, y64 + s * v), xp.float64)
        gm = xp.astype(diffusion(t, y64 - s * v), xp.float64)
        return (pick(gp) - pick(gm)) / (2.0 * s)

    if noise_type == "scalar":
        out = dd(g64, lambda a: a)
    elif noise_type == "general":
        m = g64.shape[-1]
        out = xp.zeros_like(y64)
        for j in range(m):
            out = out + dd(g64[..., j], lambda a, j=j: a[..., j])
    else:
        out = g64 * _diagonal_derivative(xp, t, y64, diffusion, commutative, batch_ndim)
    return xp.astype(out, dtype)


def _diagonal_derivative(xp, t, y64, diffusion, commutative, batch_ndim):
    """``d g_i / d y_i`` by central differences, perturbing groups of elements that cannot interact."""
    h = _FD_STEP * xp.maximum(xp.abs(y64), xp.ones_like(y64))
    if commutative:
        return (xp.astype(diffusion(t, y64 + h), xp.float64)
                - xp.astype(diffusion(t, y64 - h), xp.float64)) / (2.0 * h)
    shape = tuple(y64.shape)
    inner = shape[batch_ndim:]
    n_inner = 1
    for s in inner:
        n_inner *= int(s)
    out = xp.zeros_like(y64)
    for j in range(n_inner):
        mask_np = np.zeros((1,) * batch_ndim + (n_inner,))
        mask_np[..., j] = 1.0
        mask = xp.reshape(xp.asarray(mask_np, dtype=y64.dtype, device=device_of(y64)),
                          (1,) * batch_ndim + inner)
        step = h * mask
        d = (xp.astype(diffusion(t, y64 + step), xp.float64)
             - xp.astype(diffusion(t, y64 - step), xp.float64)) / (2.0 * h)
        out = out + d * mask
    return out



class _ConvertedDrift:
    """``drift(t, y) + sign * 1/2 c(t, y)``: a drift converted between Ito and Stratonovich."""

    def __init__(self, drift, diffusion, noise_type, sign, diffusion_jacobian, commutative,
                 batch_ndim, target):
        if not callable(drift):
            raise TypeError(f"`drift` must be callable (t, y) -> array; got {type(drift).__name__}.")
        if not callable(diffusion):
            raise TypeError("`diffusion` must be callable (t, y) -> array; got "
                            f"{type(diffusion).__name__}.")
        if diffusion_jacobian is not None and not callable(diffusion_jacobian):
            raise TypeError("`diffusion_jacobian` must be callable (t, y) -> array or None; got "
                            f"{type(diffusion_jacobian).__name__}.")
        if not (isinstance(batch_ndim, int) and batch_ndim >= 0):
            raise ValueError(f"`batch_ndim` must be a non-negative int; got {batch_ndim!r}.")
        self.drift = drift
        self.diffusion = diffusion
        self.noise_type = check_noise_type(noise_type)
        self.sign = sign
        self.diffusion_jacobian = diffusion_jacobian
        self.commutative = bool(commutative)
        self.batch_ndim = batch_ndim
        self.sde_type = target

    def __repr__(self) -> str:
        return f"<{self.sde_type} drift converted from {self.drift!r}>"

    def __call__(self, t, y):
        g = self.diffusion(t, y)
        c = diffusion_correction(t, y, g, self.diffusion, self.noise_type, self.diffusion_jacobian,
                                 commutative=self.commutative, batch_ndim=self.batch_ndim)
        return self.drift(t, y) + (0.5 * self.sign) * c


def ito_to_stratonovich(drift: Callable, diffusion: Callable, noise_type: str = "diagonal", *,
                        diffusion_jacobian: Callable | None = None, commutative: bool = False,
                        batch_ndim: int = 0) -> Callable:
    r"""Stratonovich drift of the Ito SDE ``dX = drift dt + diffusion dW``.

    ``mu_S^i = mu_I^i - 1/2 sum_{j,k} sigma^{kj} d_k sigma^{ij}`` (Kloeden & Platen 1992, 4.9).
    The diffusion is the same in both forms.

    Parameters
    ----------
    drift, diffusion : callable ``(t, y) -> array``
    noise_type : {"diagonal", "scalar", "general"}
    diffusion_jacobian : callable, optional
        Derivative of the diffusion (shapes in :func:`diffusion_correction`); default central
        differences in float64 (the diffusion must accept float64 states).
    commutative : bool
        Diagonal noise only: each ``g_i`` depends on ``y_i`` alone, so one pair of evaluations
        gives the whole Jacobian diagonal.
    batch_ndim : int
        Diagonal noise only: leading axes indexing independent samples (perturbed together).

    Returns
    -------
    callable ``(t, y) -> array``
        The Stratonovich drift.

    Examples
    --------
    Geometric Brownian motion: Ito drift ``mu x`` is Stratonovich drift ``(mu - sigma^2/2) x``.

    >>> mu_s = ito_to_stratonovich(lambda t, y: 0.5 * y, lambda t, y: 0.4 * y)
    >>> bool(np.allclose(mu_s(0.0, np.array([2.0])), (0.5 - 0.08) * 2.0))
    True
    """
    return _ConvertedDrift(drift, diffusion, noise_type, -1.0, diffusion_jacobian, commutative,
                           batch_ndim, "stratonovich")


def stratonovich_to_ito(drift: Callable, diffusion: Callable, noise_type: str = "diagonal", *,
                        diffusion_jacobian: Callable | None = None, commutative: bool = False,
                        batch_ndim: int = 0) -> Callable:
    r"""Ito drift of the Stratonovich SDE ``dX = drift dt + diffusion o dW``.

    ``mu_I^i = mu_S^i + 1/2 sum_{j,k} sigma^{kj} d_k sigma^{ij}``; arguments as in
    :func:`ito_to_stratonovich`.

    Examples
    --------
    >>> mu_i = stratonovich_to_ito(lambda t, y: 0.42 * y, lambda t, y: 0.4 * y)
    >>> bool(np.allclose(mu_i(0.0, np.array([2.0])), 0.5 * 2.0))
    True
    """
    return _ConvertedDrift(drift, diffusion, noise_type, 1.0, diffusion_jacobian, commutative,
                           batch_ndim, "ito")
