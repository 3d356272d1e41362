"""``AutoAdjoint`` (``"auto"``): the discrete checkpoint adjoint or the interpolated adjoint,
chosen per backward pass from the problem's sizes.

Both candidates are trusted (``tests/test_adjoint_trust.py`` holds each to max(10 x direct
backprop's error, 10 x rtol) without a warning). Their costs, in field calls of one linearised
evaluation (``c_f``), a y-VJP (``c_y``) and a parameter VJP (``c_theta``), for S forward steps
of s stages and n quadrature nodes (docs/adjoint.md, cost model):

    checkpoint:    S s (c_f + c_y + c_theta)
    interpolated:  ~S s (c_f + c_y) + n (c_f + c_theta),   n >= one per output interval

The parameter VJP writes and accumulates P numbers whatever the batch, so where P dwarfs the
state (batch x state size) it costs several f calls and the interpolated adjoint, which makes
it only at its few nodes, wins; where the state is large the VJPs cost about the same as f, the
nodes (3-5 per output interval at tight tolerances) and the extra backward steps cost more than
they save, and the discrete adjoint wins. The rule (measured crossover: docs/bench_torch.md):

    interpolated  if  P >= AUTO_RATIO * (state size)  and  (output intervals) <= (forward steps)
    checkpoint    otherwise (also when the field does not say its parameter count)

It is deterministic: the same problem sizes give the same choice; the gradient's stats report
it (``stats["strategy"]``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import ClassVar

import numpy as np

from ._checkpoint import CheckpointAdjoint
from ._solved import InterpolatedAdjoint
from ._strategy import AdjointGradient, AdjointStrategy

__all__ = ["AutoAdjoint", "AUTO_RATIO"]

AUTO_RATIO = 8e4
"""P / (state size) from which the interpolated adjoint is chosen (docs/bench_torch.md): between
the largest measured ratio where the checkpoint adjoint won (MLP W = 2048, batch 4: 6.7e4) and the
smallest where the interpolated one did (g1d W = 850: 9.1e4), near their geometric mean."""


@dataclass(frozen=True, kw_only=True)
class AutoAdjoint(AdjointStrategy):
    """The checkpoint adjoint, or the interpolated adjoint where parameters dominate.

    Parameters
    ----------
    continuous : InterpolatedAdjoint
        The strategy chosen where ``P >= ratio * state size`` and the output intervals are at
        most the forward steps (its settings: backward tolerances, node rule).
    discrete : CheckpointAdjoint
        The strategy chosen otherwise.
    ratio : float
        The crossover ``P / state size`` (default :data:`AUTO_RATIO`, measured).
    stiff_fallback : bool
        Where the discrete candidate measures that the forward's steps went past the method's
        stability boundary on a stiff component (``stats["stiff_growth"]`` above
        :data:`~gqlib.adjoint.STIFF_GROWTH_LIMIT`), return the continuous candidate's gradient
        instead, from a dense output rebuilt from the checkpoints (default True; False: a
        :class:`~gqlib.errors.GradientAccuracyWarning`). Sets the discrete candidate's
        ``stiff_fallback`` to ``continuous`` where it has none.

    The forward solve records its dense output (which holds the step checkpoints) only where
    the interpolated adjoint can be chosen (:meth:`record_for`); the choice is made in the
    backward pass, when the forward's step count is known, by :meth:`choose`.
    """

    name: ClassVar[str] = "auto"
    continuous: InterpolatedAdjoint = dc_field(default_factory=InterpolatedAdjoint)
    discrete: CheckpointAdjoint = dc_field(default_factory=CheckpointAdjoint)
    ratio: float = AUTO_RATIO
    stiff_fallback: bool = True

    def __post_init__(self):
        if not isinstance(self.continuous, InterpolatedAdjoint):
            raise TypeError(f"`continuous` must be an InterpolatedAdjoint, got "
                            f"{type(self.continuous).__name__}")
        if not isinstance(self.discrete, CheckpointAdjoint):
            raise TypeError(f"`discrete` must be a CheckpointAdjoint, got "
                            f"{type(self.discrete).__name__}")
        if isinstance(self.ratio, bool) or not isinstance(self.ratio, (int, float)) \
                or not self.ratio > 0:
            raise ValueError(f"`ratio` must be a positive number, got {self.ratio!r}")
        if not isinstance(self.stiff_fallback, bool):
            raise TypeError(f"`stiff_fallback` must be a bool, got {self.stiff_fallback!r}")
        if self.stiff_fallback and self.discrete.stiff_fallback is None:
            object.__setattr__(self, "discrete", dataclasses.replace(
                self.discrete, stiff_fallback=self.continuous))

    @property
    def forward_record(self):
        return "checkpoints"  # the least that any choice needs (record_for may ask for more)

    def record_for(self, n_params: int | None, state_size: int) -> str:
        """What the forward solve must keep for a field of ``n_params`` parameters and a
        state of ``state_size`` numbers: the dense output where the continuous candidate can
        be chosen, else the step checkpoints."""
        return "dense" if self._params_dominate(n_params, state_size) else "checkpoints"

    def keep_bytes(self, n_params: int | None, itemsize: float, state_size: int = 0) -> int:
        """The discrete candidate's budget of kept stages where the forward records checkpoints
        (only it can then be chosen); 0 where the parameters dominate (dense output)."""
        if self._params_dominate(n_params, state_size):
            return 0
        return self.discrete.keep_bytes(n_params, itemsize)

    def _params_dominate(self, n_params, state_size) -> bool:
        return n_params is not None and n_params >= self.ratio * max(int(state_size), 1)

    def choose(self, sol, n_params: int | None) -> AdjointStrategy:
        """The strategy for a backward pass over ``sol`` with ``n_params`` parameters."""
        state_size = int(np.prod(tuple(sol.y.shape[1:])))
        intervals = len(sol.t) - 1
        steps = 0 if sol.checkpoints is None else len(sol.checkpoints) - 1
        if (sol.dense is not None and self._params_dominate(n_params, state_size)
                and intervals <= steps
                and not self.continuous.poor_interpolants(sol.options.get("method", "dopri5"))):
            return self.continuous
        return self.discrete

    def backward_adaptive(self, forward_method: str, forward_adaptive: bool) -> bool:
        """Adaptive where either candidate can be: the continuous one's backward solver, or
        the forward's steps that the discrete one follows."""
        return (self.continuous.backward_adaptive(forward_method, forward_adaptive)
                or forward_adaptive)

    def backward(self, cf, sol, grad_y, xp, t_np, *, grad_t: bool) -> AdjointGradient:
        chosen = self.choose(sol, getattr(cf.field, "n_params", None))
        chosen.check_solution(sol)
        out = chosen.backward(cf, sol, grad_y, xp, t_np, grad_t=grad_t)
        out.stats.setdefault("strategy", chosen.name)  # a stiff fallback names its own
        return out
