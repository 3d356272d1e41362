"""The backward passes the adapter runs, keyed by the core's strategy classes.

The strategies are the core's objects (:mod:`gqlib.adjoint`); this table only says which XLA
implementation runs each one. What the forward pass records for it is the strategy's own
:attr:`~gqlib.adjoint.AdjointStrategy.forward_record`.
"""

from __future__ import annotations

from ..adjoint import (
    BacksolveAdjoint,
    CheckpointAdjoint,
    CollocationAdjoint,
    GQAdjoint,
    InterpolatedAdjoint,
)
from ._checkpoint import checkpoint_backward
from ._collocation import collocation_backward
from ._solved import solved_backward

__all__ = ["backward_pass", "record_of", "SUPPORTED"]


def _checkpoint(cfg, prob, rk, fw, t_out, g):
    return checkpoint_backward(prob, rk, fw, t_out, g)


_PASSES = {CheckpointAdjoint: _checkpoint, GQAdjoint: solved_backward,
           BacksolveAdjoint: solved_backward, InterpolatedAdjoint: solved_backward,
           CollocationAdjoint: collocation_backward}
SUPPORTED = tuple(cls.name for cls in _PASSES)


def record_of(strategy) -> tuple[bool, bool]:
    """``(record steps, record interpolants)`` for ``strategy`` (raises if unsupported)."""
    if type(strategy) not in _PASSES:
        raise NotImplementedError(
            f"gqlib.jax does not run {type(strategy).__name__} yet; supported strategies: "
            f"{SUPPORTED}")
    need = strategy.forward_record
    return need in ("checkpoints", "dense"), need == "dense"


def backward_pass(cfg, prob, rk, fw, t_out, g):
    return _PASSES[type(cfg.strategy)](cfg, prob, rk, fw, t_out, g)
