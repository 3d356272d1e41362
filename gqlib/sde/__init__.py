"""SDEs: Brownian paths, noise approximations, the Wong-Zakai random ODE, fixed-step SDE solvers.

See ``docs/sde.md`` for the semantics, costs and measured orders.
"""

from __future__ import annotations

from ._brownian import BrownianPath
from ._conversion import diffusion_correction, ito_to_stratonovich, stratonovich_to_ito
from ._methods import SDE_METHODS, SDEMethod
from ._noise import KarhunenLoeveNoise, PiecewiseLinearNoise, SmoothLinearNoise
from ._noise_types import (
    NOISE_TYPES,
    DiagonalNoiseType,
    GeneralNoiseType,
    NoiseType,
    ScalarNoiseType,
)
from ._solvers import sdeint
from ._wong_zakai import WongZakaiField, wong_zakai

__all__ = [
    "BrownianPath",
    "PiecewiseLinearNoise",
    "KarhunenLoeveNoise",
    "SmoothLinearNoise",
    "wong_zakai",
    "WongZakaiField",
    "sdeint",
    "SDE_METHODS",
    "SDEMethod",
    "NoiseType",
    "DiagonalNoiseType",
    "ScalarNoiseType",
    "GeneralNoiseType",
    "NOISE_TYPES",
    "ito_to_stratonovich",
    "stratonovich_to_ito",
    "diffusion_correction",
]
