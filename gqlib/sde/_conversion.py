r"""Ito <-> Stratonovich drift conversion and the diffusion's derivative term.

For ``dX = mu dt + sigma dW`` (Ito) and ``dX = mu_S dt + sigma o dW`` (Stratonovich),

    mu_S^i = mu_I^i - 1/2 c^i,    c^i = sum_{j,k} sigma^{kj} d_k sigma^{ij}

(Kloeden & Platen 1992, (4.9.10)). ``c`` is also Milstein's correction term. How ``c`` is formed
depends on the noise structure and lives with it (``_noise_types.py``): diagonal ``g_i d_i g_i``,
scalar ``J g``, general ``sum_j D_{sigma_j} sigma_{.j}``; from ``diffusion_jacobian`` when given,
else by central differences in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._noise_types import as_noise_type
from ._xp import namespace

__all__ = ["ito_to_stratonovich", "stratonovich_to_ito", "diffusion_correction"]


def diffusion_correction(t: Any, y: Any, g: Any, diffusion: Callable, noise_type: Any,
                         diffusion_jacobian: Callable | None = None, *, commutative: bool = False,
                         batch_ndim: int = 0):
    r"""``c^i = sum_{j,k} sigma^{kj} d_k sigma^{ij}`` at ``(t, y)``, with ``g = diffusion(t, y)``.

    ``noise_type`` is a :class:`NoiseType` or its alias. ``diffusion_jacobian(t, y)`` returns:
    diagonal noise, the diagonal ``d g_i / d y_i`` (y's shape); scalar noise,
    ``J[..., i, k] = d g_i / d y_k`` (shape ``(..., d, d)``); general noise,
    ``J[..., i, j, k] = d sigma^{ij} / d y_k`` (shape ``(..., d, m, d)``). Without it, central
    differences in float64 (module docstring). The result has y's shape, namespace and dtype.
    """
    noise = as_noise_type(noise_type)
    xp = namespace(y, g)
    if diffusion_jacobian is not None:
        return noise.correction_from_jacobian(xp, g, diffusion_jacobian(t, y))
    out = noise.correction_fd(xp, t, xp.astype(y, xp.float64), xp.astype(g, xp.float64), diffusion,
                              commutative=commutative, batch_ndim=batch_ndim)
    return xp.astype(out, y.dtype)


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
        self.noise_type = as_noise_type(noise_type)
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


def ito_to_stratonovich(drift: Callable, diffusion: Callable, noise_type: Any = "diagonal", *,
                        diffusion_jacobian: Callable | None = None, commutative: bool = False,
                        batch_ndim: int = 0) -> Callable:
    r"""Stratonovich drift of the Ito SDE ``dX = drift dt + diffusion dW``.

    ``mu_S^i = mu_I^i - 1/2 sum_{j,k} sigma^{kj} d_k sigma^{ij}`` (Kloeden & Platen 1992, 4.9).
    The diffusion is the same in both forms.

    Parameters
    ----------
    drift, diffusion : callable ``(t, y) -> array``
    noise_type : NoiseType or {"diagonal", "scalar", "general"}
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


def stratonovich_to_ito(drift: Callable, diffusion: Callable, noise_type: Any = "diagonal", *,
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
