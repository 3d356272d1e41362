"""The Wong-Zakai random ODE ``y' = mu(t, y) + sigma(t, y) dW_approx/dt``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ._noise_types import NoiseType, as_noise_type

__all__ = ["wong_zakai", "WongZakaiField"]


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
    noise_type : NoiseType
        The noise structure (``"diagonal"`` and the other aliases resolve to instances).
    tstops : numpy.ndarray
        The noise's kinks, to hand to the ODE solver.
    nfe : int
        Number of evaluations so far.
    """

    def __init__(self, drift: Callable, diffusion: Callable, noise: Any,
                 noise_type: NoiseType | str = "diagonal"):
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
        self.noise_type = as_noise_type(noise_type)
        self.tstops = np.asarray(noise.tstops, dtype=np.float64)
        self.nfe = 0
        self._checked: set = set()

    def __repr__(self) -> str:
        return f"WongZakaiField(noise={self.noise!r}, noise_type={self.noise_type.name!r})"

    def __call__(self, t: Any, y: Any):
        self.nfe += 1
        mu = self.drift(t, y)
        g = self.diffusion(t, y)
        dw = self.noise.dW(t, like=y)
        # Every call: a shape combination not yet checked (a drift that changed shape included)
        # is checked before it can be broadcast.
        key = (tuple(y.shape), tuple(mu.shape), tuple(g.shape), tuple(dw.shape))
        if key not in self._checked:
            self.noise_type.check_shapes(tuple(y.shape), tuple(mu.shape), tuple(g.shape),
                                         tuple(dw.shape), "noise")
            self._checked.add(key)
        return mu + self.noise_type.product(g, dw)


def wong_zakai(drift: Callable, diffusion: Callable, noise: Any,
               noise_type: NoiseType | str = "diagonal") -> WongZakaiField:
    r"""The Wong-Zakai random ODE of the Stratonovich SDE ``dX = drift dt + diffusion o dW``.

    Returns a vector field ``f(t, y) = drift(t, y) + diffusion(t, y) . noise.dW(t)`` with
    ``f.tstops`` the noise's kinks. Solve it with any ODE solver, landing on ``tstops``.

    Parameters
    ----------
    drift, diffusion : callable ``(t, y) -> array``
        Stratonovich drift (state's shape) and diffusion (state's shape, or ``(..., d, m)`` for
        general noise).
    noise : PiecewiseLinearNoise, KarhunenLoeveNoise or SmoothLinearNoise
    noise_type : NoiseType or {"diagonal", "scalar", "general"}
        The noise structure: how the diffusion's output multiplies ``noise.dW`` (``_noise_types``).

    Examples
    --------
    >>> from gqlib.sde import BrownianPath, PiecewiseLinearNoise
    >>> path = BrownianPath(0.0, 1.0, shape=(2,), seed=1)
    >>> field = wong_zakai(lambda t, y: 0.5 * y, lambda t, y: 0.3 * y, PiecewiseLinearNoise(path, 0.25))
    >>> field(0.1, np.ones(2)).shape, field.tstops
    ((2,), array([0.25, 0.5 , 0.75]))
    """
    return WongZakaiField(drift, diffusion, noise, noise_type)
