"""The strategy aliases: ``"gq"``, ``"backsolve"``, ``"interpolated"``, ``"collocation"``,
``"checkpoint"``, ``"auto"``, and the default strategy."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ._auto import AutoAdjoint
from ._checkpoint import CheckpointAdjoint
from ._collocation import CollocationAdjoint
from ._solved import BacksolveAdjoint, GQAdjoint, InterpolatedAdjoint
from ._strategy import AdjointStrategy

__all__ = ["as_strategy", "ALIASES", "DEFAULT_ADJOINT"]


_REGISTRY: dict[str, type[AdjointStrategy]] = {
    cls.name: cls for cls in (GQAdjoint, BacksolveAdjoint, InterpolatedAdjoint,
                              CollocationAdjoint, CheckpointAdjoint, AutoAdjoint)}


DEFAULT_ADJOINT = "auto"  # the alias of the default strategy (docs/adjoint.md says why)


def as_strategy(adjoint: Any = None, **settings: Any) -> AdjointStrategy:
    """A strategy object from an object or an alias (with settings for its constructor).

    ``as_strategy("gq", nodes=3)`` is ``GQAdjoint(nodes=3)``; an object is returned as it is
    (settings then raise: the object already holds them).
    """
    if adjoint is None:
        adjoint = DEFAULT_ADJOINT
    if isinstance(adjoint, AdjointStrategy):
        if settings:
            raise TypeError(f"settings {sorted(settings)} were given beside the strategy object "
                            f"{adjoint!r}: set them in its constructor instead")
        return adjoint
    registry = _REGISTRY
    if not isinstance(adjoint, str) or adjoint not in registry:
        raise ValueError(f"`adjoint` must be a strategy object or one of {tuple(registry)}, got "
                         f"{adjoint!r}")
    cls = registry[adjoint]
    valid = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(settings) - valid)
    if unknown:
        raise TypeError(f"adjoint={adjoint!r} ({cls.__name__}) takes no {unknown}; its settings: "
                        f"{sorted(valid)}")
    return cls(**settings)


ALIASES = tuple(_REGISTRY)
