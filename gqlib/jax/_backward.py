"""The backward passes the adapter runs, keyed by the core's strategy classes.

The strategies are the core's objects (:mod:`gqlib.adjoint`); this table only says which XLA
implementation runs each one and what the forward pass must record for it (the strategy's own
:attr:`~gqlib.adjoint.AdjointStrategy.forward_record`).
"""

from __future__ import annotations

from ..adjoint import CheckpointAdjoint
from ._checkpoint import checkpoint_backward

__all__ = ["backward_pass", "record_of", "SUPPORTED"]


def _checkpoint(cfg, prob, rk, fw, t_out, g):
    return checkpoint_backward(prob, rk, fw, t_out, g)


_PASSES = {CheckpointAdjoint: _checkpoint}
SUPPORTED = tuple(cls.name for cls in _PASSES)


def record_of(strategy) -> bool:
    """Whether the forward pass must record its steps for ``strategy`` (raises if unsupported)."""
    if type(strategy) not in _PASSES:
        raise NotImplementedError(
            f"gqlib.jax does not run {type(strategy).__name__} yet; supported strategies: "
            f"{SUPPORTED}")
    return True


def backward_pass(cfg, prob, rk, fw, t_out, g):
    return _PASSES[type(strategy_of(cfg))](cfg, prob, rk, fw, t_out, g)


def strategy_of(cfg):
    return cfg.strategy
