r"""Noise structure: how the diffusion's output meets the Brownian increment.

For ``dX = mu dt + sigma(t, X) dW`` with ``W`` of ``m`` channels, a :class:`NoiseType` object owns all
that depends on the structure of ``sigma``:

- the product ``sigma . dW`` (:meth:`NoiseType.product`),
- the shape checks of diffusion and noise against the state (:meth:`NoiseType.check_shapes`),
- the Ito <-> Stratonovich correction ``c^i = sum_{j,k} sigma^{kj} d_k sigma^{ij}``
  (Kloeden & Platen 1992, (4.9.10)), from a Jacobian or by central differences.

Solvers and fields call these methods and never branch on a name, so a new structure is one new
subclass (pass an instance as ``noise_type``). Capabilities are attributes that SDE methods require
(torchsde's convention, checked up front): ``elementwise`` means ``sigma . dW = g * dW`` with one
noise channel per state element (or one shared channel), so the iterated integrals a Milstein step
needs are ``(dW^2 - h)/2`` and no Levy areas appear. The strings ``"diagonal"``, ``"scalar"`` and
``"general"`` (torchsde's names) are aliases of the built-in instances in :data:`NOISE_TYPES`.

Central differences run in float64 with step ``s = eps^(1/3) max(1, |y|)`` relative to the direction's
size; the error is ``O(s^2 g''' + eps g / s)``, about ``1e-10`` relative for a smooth O(1)-scaled
diffusion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import device_of
from ._xp import namespace

__all__ = ["NoiseType", "DiagonalNoiseType", "ScalarNoiseType", "GeneralNoiseType", "NOISE_TYPES",
           "CAPABILITIES", "as_noise_type"]

_FD_STEP = np.finfo(np.float64).eps ** (1.0 / 3.0)

#: Capability attribute -> what it means (for error messages naming a method's requirement).
CAPABILITIES = {
    "elementwise": "one noise channel per state element or one shared channel (no Levy areas)",
}


class NoiseType:
    """Base class of noise structures; subclasses set ``name`` and implement the hooks below.

    Instances are stateless: two instances of one class are equal.

    Attributes
    ----------
    name : str
        Alias accepted as ``noise_type=name`` where the instance is registered in
        :data:`NOISE_TYPES`.
    elementwise : bool
        ``sigma . dW`` is ``g * dW`` (broadcast), ``g`` of the state's shape.

    Examples
    --------
    >>> general = NOISE_TYPES["general"]
    >>> general.product(np.ones((2, 3)), np.array([1.0, 2.0, 3.0])), general.elementwise
    (array([6., 6.]), False)
    """

    name: str = ""
    elementwise: bool = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def missing(self, requires: frozenset) -> list[str]:
        """The capabilities of ``requires`` this structure lacks."""
        return sorted(c for c in requires if not getattr(self, c, False))

    # -- hooks ------------------------------------------------------------------------------
    def product(self, g: Any, dw: Any, xp: Any = None):
        """``sigma . dW`` for the diffusion's output ``g`` and a noise value ``dw``."""
        return g * dw

    def check_shapes(self, ys: tuple, mus: tuple, gs: tuple, ws: tuple, wname: str) -> None:
        """Check drift (``mus``), diffusion (``gs``) and noise (``ws``) shapes against the state's.

        Raises ValueError naming what came and what was expected; ``wname`` names the noise.
        """
        if mus != ys:
            raise ValueError(f"`drift` returned shape {mus}; expected the state's shape {ys}.")
        if self.elementwise and gs != ys:  # g * dW: g has the state's shape, dW broadcasts
            raise ValueError(f"`diffusion` returned shape {gs}; {self.name} noise needs the "
                             f"state's shape {ys}.")
        self.check_structure(ys, gs, ws, wname)

    def check_structure(self, ys: tuple, gs: tuple, ws: tuple, wname: str) -> None:
        """The structure's own diffusion and noise shape rules (after the shared ones)."""
        raise NotImplementedError  # pragma: no cover

    def correction_from_jacobian(self, xp: Any, g: Any, jac: Any):
        """``c`` from ``g = sigma(t, y)`` and the user's ``diffusion_jacobian(t, y)``."""
        raise NotImplementedError  # pragma: no cover

    def correction_fd(self, xp: Any, t: Any, y64: Any, g64: Any, diffusion: Callable, *,
                      commutative: bool = False, batch_ndim: int = 0):
        """``c`` by central differences of ``diffusion`` at the float64 state ``y64``."""
        raise NotImplementedError  # pragma: no cover


class DiagonalNoiseType(NoiseType):
    """Diagonal noise: ``sigma^{ij} = delta_ij g_i``; diffusion and noise have the state's shape.

    ``c^i = g_i d_i g_i`` needs only the Jacobian's diagonal (``diffusion_jacobian`` returns it, y's
    shape). By differences: ``2 n`` diffusion calls for ``n`` state elements (each perturbed alone),
    ``2 prod(shape[batch_ndim:])`` when the leading ``batch_ndim`` axes index independent samples,
    and 2 when ``commutative`` (each ``g_i`` depends on ``y_i`` only).
    """

    name = "diagonal"
    elementwise = True

    def check_structure(self, ys, gs, ws, wname):
        if ws != ys:
            raise ValueError(f"{wname} shape {ws} does not match the state's shape {ys} "
                             "(diagonal noise: one channel per state element).")

    def correction_from_jacobian(self, xp, g, jac):
        return g * jac

    def correction_fd(self, xp, t, y64, g64, diffusion, *, commutative=False, batch_ndim=0):
        return g64 * _diagonal_derivative(xp, t, y64, diffusion, commutative, batch_ndim)


class ScalarNoiseType(NoiseType):
    """Scalar noise: one channel multiplies a diffusion of the state's shape.

    Noise shape ``()``, ``(1,)`` or ``y.shape[:-1] + (1,)`` (broadcast). ``c = J g``, a directional
    derivative of g along g (``diffusion_jacobian``: ``(..., d, d)``); 2 diffusion calls by differences.
    """

    name = "scalar"
    elementwise = True

    def check_structure(self, ys, gs, ws, wname):
        if ws not in ((), (1,)) and ws != ys[:-1] + (1,):
            raise ValueError(f"{wname} shape {ws} is not a single channel: expected (), (1,) or "
                             f"{ys[:-1] + (1,)}.")

    def correction_from_jacobian(self, xp, g, jac):
        return xp.matmul(jac, g[..., None])[..., 0]

    def correction_fd(self, xp, t, y64, g64, diffusion, *, commutative=False, batch_ndim=0):
        return _directional(xp, t, y64, g64, diffusion, lambda a: a)


class GeneralNoiseType(NoiseType):
    """General noise: the diffusion returns ``(..., d, m)`` and ``sigma . dW = sigma @ dW``.

    Noise shape ``(m,)`` or ``y.shape[:-1] + (m,)``. ``c^i = sum_j (D_{sigma_j} sigma_{.j})^i``, one
    directional derivative per channel along its column (``diffusion_jacobian``:
    ``J[..., i, j, k] = d sigma^{ij} / d y_k``); ``2 m`` diffusion calls by differences.
    """

    name = "general"
    elementwise = False

    def product(self, g, dw, xp=None):
        if xp is None:
            xp = namespace(g, dw)
        return xp.matmul(g, dw[..., None])[..., 0]

    def check_structure(self, ys, gs, ws, wname):
        if len(gs) < 1 or gs[:-1] != ys:
            raise ValueError(f"`diffusion` returned shape {gs}; general noise needs the state's "
                             f"shape + (m,) = {ys} + (m,).")
        m = gs[-1]
        if ws != (m,) and ws != ys[:-1] + (m,):
            raise ValueError(f"{wname} shape {ws} does not match the diffusion's {m} channels: "
                             f"expected ({m},) or {ys[:-1] + (m,)}.")

    def correction_from_jacobian(self, xp, g, jac):
        gT = xp.permute_dims(g, tuple(range(g.ndim - 2)) + (g.ndim - 1, g.ndim - 2))
        return xp.sum(jac * gT[..., None, :, :], axis=(-2, -1))

    def correction_fd(self, xp, t, y64, g64, diffusion, *, commutative=False, batch_ndim=0):
        out = xp.zeros_like(y64)
        for j in range(g64.shape[-1]):
            out = out + _directional(xp, t, y64, g64[..., j], diffusion, lambda a, j=j: a[..., j])
        return out


#: Registered structures by alias (torchsde's names).
NOISE_TYPES: dict[str, NoiseType] = {n.name: n for n in (DiagonalNoiseType(), ScalarNoiseType(),
                                                          GeneralNoiseType())}


def as_noise_type(noise_type: Any) -> NoiseType:
    """A :class:`NoiseType` instance, or the registered one a string names; else ValueError/TypeError."""
    if isinstance(noise_type, NoiseType):
        return noise_type
    if isinstance(noise_type, str) and noise_type in NOISE_TYPES:
        return NOISE_TYPES[noise_type]
    if isinstance(noise_type, type) and issubclass(noise_type, NoiseType):
        raise TypeError(f"`noise_type` must be a NoiseType instance; got the class "
                        f"{noise_type.__name__} (call it: {noise_type.__name__}()).")
    raise ValueError(f"`noise_type` must be one of {', '.join(map(repr, NOISE_TYPES))} or a "
                     f"NoiseType instance; got {noise_type!r}.")


def _max_abs(xp, a) -> float:
    return float(xp.max(xp.abs(a))) if _size(a) else 0.0


def _size(a) -> int:
    n = 1
    for s in a.shape:
        n *= int(s)
    return n


def _directional(xp, t, y64, v, diffusion, pick):
    """Central difference of ``pick(diffusion(t, .))`` along ``v`` at ``y64``, in float64."""
    vmax = _max_abs(xp, v)
    if vmax == 0.0:
        return xp.zeros_like(y64)
    s = _FD_STEP * max(1.0, _max_abs(xp, y64)) / vmax
    gp = xp.astype(diffusion(t, y64 + s * v), xp.float64)
    gm = xp.astype(diffusion(t, y64 - s * v), xp.float64)
    return (pick(gp) - pick(gm)) / (2.0 * s)


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
