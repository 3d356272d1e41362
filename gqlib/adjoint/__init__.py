"""Adjoint gradient assembly: strategies as objects, one ``gradient`` entry point.

:class:`GQAdjoint` (Gauss-Legendre quadrature, Norcliffe & Deisenroth 2023),
:class:`BacksolveAdjoint` (+ seminorm), :class:`InterpolatedAdjoint`, :class:`CollocationAdjoint`
and :class:`CheckpointAdjoint` (the discrete adjoint); :class:`AutoAdjoint` chooses checkpoint
or interpolated by problem size. Framework-agnostic: the field supplies vector-Jacobian
products, the core does the numerics.
"""

from ._aliases import ALIASES, DEFAULT_ADJOINT, as_strategy
from ._auto import AUTO_RATIO, AutoAdjoint
from ._checkpoint import CheckpointAdjoint
from ._collocation import PICARD_LIMIT, CollocationAdjoint
from ._field import CountedField, FunctionField, LinearizationUnavailable, VectorField
from ._gradient import gradient
from ._kept import StageKeeper
from ._quadrature import NODE_RULES, NodeRule
from ._rows import RowwiseMismatch
from ._solved import DRIFT_LIMIT, BacksolveAdjoint, GQAdjoint, InterpolatedAdjoint
from ._stiffness import AGREE_RTOLS, STIFF_CHECK_FROM, STIFF_GROWTH_LIMIT
from ._strategy import AdjointGradient, AdjointStrategy

ADJOINTS = ALIASES

__all__ = ["gradient", "AdjointGradient", "AdjointStrategy", "GQAdjoint", "BacksolveAdjoint",
           "InterpolatedAdjoint", "CollocationAdjoint", "CheckpointAdjoint", "AutoAdjoint",
           "AUTO_RATIO", "as_strategy",
           "NodeRule", "VectorField", "FunctionField", "CountedField", "ADJOINTS", "ALIASES",
           "NODE_RULES", "DEFAULT_ADJOINT", "DRIFT_LIMIT", "PICARD_LIMIT", "LinearizationUnavailable",
           "RowwiseMismatch", "StageKeeper", "STIFF_GROWTH_LIMIT",
           "STIFF_CHECK_FROM", "AGREE_RTOLS"]
