"""The backward passes the adapter runs, keyed by the core's strategy classes.

The strategies are the core's objects (:mod:`gqlib.adjoint`); this table only says which XLA
implementation runs each one. What the forward pass records for it is the strategy's own
:attr:`~gqlib.adjoint.AdjointStrategy.forward_record`.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ..adjoint import (
    STIFF_GROWTH_LIMIT,
    BacksolveAdjoint,
    CheckpointAdjoint,
    CollocationAdjoint,
    GQAdjoint,
    InterpolatedAdjoint,
)
from ._checkpoint import checkpoint_backward, rebuild_dense
from ._collocation import collocation_backward
from ._solved import solved_backward

__all__ = ["backward_pass", "record_of", "SUPPORTED"]


def _checkpoint(cfg, prob, rk, fw, t_out, g):
    """The discrete pass; where the strategy names a ``stiff_fallback`` (what ``"auto"`` sets)
    and the pass's stiffness growth is past the limit, that strategy's gradient instead, from a
    dense output rebuilt from the checkpoints (:func:`rebuild_dense`), as in the core.

    The fallback is gated, not a ``lax.cond`` (under ``vmap`` a cond runs both branches, and
    JAX refuses one whose branches call back to the host): its loops run no step where the
    growth is under the limit, and its result is selected. Only the strategies run by
    :func:`solved_backward` (interpolated, gq, backsolve) take this path; others warn."""
    fb = cfg.strategy.stiff_fallback
    usable = (fb is not None and _PASSES.get(type(fb)) is solved_backward
              and not fb.poor_interpolants(cfg.method))
    a, dargs_bar, dt, stats = checkpoint_backward(prob, rk, fw, t_out, g, warn=not usable)
    growth = stats["stiff_growth"]
    if not usable or growth is None:
        return a, dargs_bar, dt, stats
    over = growth > STIFF_GROWTH_LIMIT
    rebuilt = fw._replace(ck_Q=rebuild_dense(prob, rk, fw, over))
    a2, p2, dt2, _ = solved_backward(dataclasses.replace(cfg, strategy=fb), prob, rk, rebuilt,
                                     t_out, g, active=over)
    a = jnp.where(over, a2.astype(a.dtype), a)
    dargs_bar = tuple(jnp.where(over, x.astype(y.dtype), y) for x, y in zip(p2, dargs_bar,
                                                                             strict=True))
    dt = jnp.where(over, dt2.astype(dt.dtype), dt)
    return a, dargs_bar, dt, dict(stats, stiff_fallback=over)


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
