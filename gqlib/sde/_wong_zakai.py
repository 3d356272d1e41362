"""The Wong-Zakai random ODE ``y' = mu(t, y) + sigma(t, y) dW_approx/dt``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._xp import namespace

__all__ = ["wong_zakai", "WongZakaiField", "NOISE_TYPES", "check_noise_type", "check_shapes",
           "noise_product"]

#: How the diffusion's output combines with a noise value (torchsde's names).
NOISE_TYPES = ("diagonal", "scalar", "general")


def check_noise_type(noise_type: Any) -> str:
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"`noise_type` must be one of {', '.join(map(repr, NOISE_TYPES))}; "
                         f"got {noise_type!r}.")
    return noise_type


def noise_product(g: Any, dw: Any, noise_type: str, xp=None):
    """``sigma . dW``: elementwise for diagonal and scalar noise, ``g @ dW`` for general noise.

    Shapes: diagonal ``g`` and ``dw`` like y; scalar ``g`` like y, ``dw`` of shape ``()``/``(1,)``
    or ``y.shape[:-1] + (1,)`` (broadcast); general ``g`` of shape ``(..., d, m)``, ``dw`` of shape
    ``(m,)`` or ``(..., m)``.
    """
    if noise_type == "general":
        if xp is None:
            xp = namespace(g, dw)
        return xp.matmul(g, dw[..., None])[..., 0]
    return g * dw


def check_shapes(ys: tuple, mus: tuple, gs: tuple, ws: tuple, noise_type: str, wname: str) -> None:
    """Check drift/diffusion/noise shapes against the state's for ``noise_type``; raise ValueError."""
    if mus != ys:
        raise ValueError(f"`drift` returned shape {mus}; expected the state's shape {ys}.")
    if noise_type == "diagonal":
        if gs != ys:
            raise ValueError(f"`diffusion` returned shape {gs}; diagonal noise needs the state's "
                             f"shape {ys}.")
        if ws != ys:
            raise ValueError(f"{wname} shape {ws} does not match the state's shape {ys} "
                             "(diagonal noise: one channel per state element).")
    elif noise_type == "scalar":
        if gs != ys:
            raise ValueError(f"`diffusion` returned shape {gs}; scalar noise needs the state's "
                             f"shape {ys}.")
        if ws not in ((), (1,)) and ws != ys[:-1] + (1,):
            raise ValueError(f"{wname} shape {ws} is not a single channel: expected (), (1,) or "
                             f"{ys[:-1] + (1,)}.")
    else:
        if len(gs) < 1 or gs[:-1] != ys:
            raise ValueError(f"`diffusion` returned shape {gs}; general noise needs the state's "
                             f"shape + (m,) = {ys} + (m,).")
        m = gs[-1]
        if ws != (m,) and ws != ys[:-1] + (m,):
            raise ValueError(f"{wname} shape {ws} does not match the diffusion's {m} channels: "
                             f"expected ({m},) or {ys[:-1] + (m,)}.")


class WongZakaiField:
    r"""Vector field ``f(t, y) = drift(t, y) + diffusion(t, y) . noise.dW(t)`` of the random ODE.

    Pass it to an ODE solver with ``tstops=field.tstops`` (the noise's kinks). For diagonal noise the
    product is elementwise (noise shape = state shape); for scalar noise the diffusion has the
    state's shape and one noise channel multiplies it (noise shape ``()``, ``(1,)`` or
    ``batch + (1,)``); for general noise the diffusion returns ``(..., d, m)`` and
    ``f = drift + diffusion @ dW`` with ``m`` channels. The noise value is taken in the state's
    namespace, device and dtype (``noise.dW(t, like=y)``), so NumPy and torch states both work.

    The ODE's solution converges to the *Stratonovich* SDE ``dX = drift dt + diffusion o dW`` as the
    noise approximation refines; convert an Ito drift with :func:`ito_to_stratonovich` first.

    Attributes
    ----------
    drift, diffusion : callables ``(t, y) -> array``
    noise : noise approximation (``PiecewiseLinearNoise``, ``KarhunenLoeveNoise``, ...)
    noise_type : str
    tstops : numpy.ndarray
        The noise's kinks, to hand to the ODE solver.
    nfe : int
        Number of evaluations so far.
    """

    def __init__(self, drift: Callable, diffusion: Callable, noise: Any, noise_type: str = "diagonal"):
        if not callable(drift):
            raise TypeError(f"`drift` must be callable (t, y) -> array; got {type(drift).__name__}.")
        if not callable(diffusion):
            raise TypeError(f"`diffusion` must be callable (t, y) -> array; got "
                            f"{type(diffusion).__name__}.")
        if not (hasattr(noise, "dW") and hasattr(noise, "tstops")):
            raise TypeError("`noise` must be a noise approximation with `dW(t)` and `tstops` "
                            f"(e.g. PiecewiseLinearNoise); got {type(noise).__name__}.")
        self.drift = drift
        self.diffusion = diffusion
        self.noise = noise
        self.noise_type = check_noise_type(noise_type)
        self.tstops = np.asarray(noise.tstops, dtype=np.float64)
        self.nfe = 0
        self._checked: set = set()

    def __repr__(self) -> str:
        return f"WongZakaiField(noise={self.noise!r}, noise_type={self.noise_type!r})"

    def __call__(self, t: Any, y: Any):
        self.nfe += 1
        mu = self.drift(t, y)
        g = self.diffusion(t, y)
        dw = self.noise.dW(t, like=y)
        key = (tuple(y.shape), tuple(g.shape), tuple(dw.shape))
        if key not in self._checked:
            check_shapes(tuple(y.shape), tuple(mu.shape), tuple(g.shape), tuple(dw.shape),
                         self.noise_type, "noise")
            self._checked.add(key)
        return mu + noise_product(g, dw, self.noise_type)

def wong_zakai(drift: Callable, diffusion: Callable, noise: Any,
               noise_type: str = "diagonal") -> WongZakaiField:
    r"""The Wong-Zakai random ODE of the Stratonovich SDE ``dX = drift dt + diffusion o dW``.

    Returns a vector field ``f(t, y) = drift(t, y) + diffusion(t, y) . noise.dW(t)`` with
    ``f.tstops`` the noise's kinks. Solve it with any ODE solver, landing on ``tstops``.

    Parameters
    ----------
    drift, diffusion : callable ``(t, y) -> array``
        Stratonovich drift (state's shape) and diffusion (state's shape, or ``(..., d, m)`` for
        general noise).
    noise : PiecewiseLinearNoise, KarhunenLoeveNoise or SmoothLinearNoise
    noise_type : {"diagonal", "scalar", "general"}

    Examples
    --------
    >>> from gqlib.sde import BrownianPath, PiecewiseLinearNoise
    >>> path = BrownianPath(0.0, 1.0, shape=(2,), seed=1)
    >>> field = wong_zakai(lambda t, y: 0.5 * y, lambda t, y: 0.3 * y, PiecewiseLinearNoise(path, 0.25))
    >>> field(0.1, np.ones(2)).shape, field.tstops
    ((2,), array([0.25, 0.5 , 0.75]))
    """
    return WongZakaiField(drift, diffusion, noise, noise_type)
