"""Adjoint strategies as objects: each owns and validates its settings (diffrax's design).

A strategy says what it needs from the forward solve (:attr:`AdjointStrategy.forward_record`:
nothing, the step checkpoints or the dense output), how its backward solver state is laid out
(:meth:`AdjointStrategy.state_blocks`, which the adapters use to build norms) and runs one
backward pass (:meth:`AdjointStrategy.backward`). :func:`gqlib.adjoint.gradient` validates the
common arguments and calls it; it never branches on the kind.

The strings ``"gq"``, ``"backsolve"``, ``"interpolated"``, ``"collocation"`` and ``"checkpoint"``
are aliases of the strategies with default settings (:func:`gqlib.adjoint.as_strategy`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, ClassVar

import numpy as np

from ..errors import GradientAccuracyWarning
from ..integrate._controller import PIController
from ..integrate._validation import check_max_steps, check_positive, check_tolerance
from ..tableaux import get_method

__all__ = ["AdjointGradient", "AdjointStrategy", "SolverSettings", "DENSE_ORDER_GAP"]

# A dense output whose global order (dense_order + 1) is this much below its method's order
# cannot serve a strategy that reads y or a between steps: the steps a tight tolerance allows the
# method are far too long for the interpolant. dopri8 (order 8, torchdiffeq's quartic dense
# output, global order 5) is the one registered case: on y' = A y (3-D) the interpolated, gq and
# collocation parameter gradients were 40, 5 and 25 x rtol off at rtol 1e-7 and 440, 320 and
# 260 x at 1e-11, where dop853 (dense order 7) stays within 2 x.
DENSE_ORDER_GAP = 3


@dataclass
class AdjointGradient:
    """Gradients of a loss on an ODE solution.

    Attributes
    ----------
    y0 : array
        dL/dy0, shaped like y0.
    params : array or None
        dL/dtheta as a flat array (None when the field has no ``vjp_params``).
    t : array or None
        dL/dt_i for every output time, shape ``(len(t),)``; None when ``grad_t=False``.
    stats : dict
        ``strategy`` (the alias of the strategy that ran: the choice of ``"auto"``),
        ``nfe_f``, ``nfe_vjp_y``, ``nfe_vjp_params``, ``n_nodes``, ``n_panels``, ``n_accepted``,
        ``n_rejected``, ``n_steps``, ``state_size`` (entries of the backward solver's state),
        ``max_drift`` (largest drift of a re-integrated y from the forward's, in tolerance units;
        0 where y is not re-integrated) and ``seconds``: host time spent in the field by kind
        (``f``, ``vjp_y`` including fused ``f_vjp_y``, ``vjp_params``).
    """

    y0: Any
    params: Any
    t: Any
    stats: dict = dc_field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AdjointStrategy:
    """Base of the adjoint strategies (frozen: a strategy is a value, safe to share)."""

    name: ClassVar[str] = ""

    @property
    def forward_record(self) -> str | None:
        """What the forward solve must keep: ``None``, ``"checkpoints"`` or ``"dense"``."""
        return None

    def record_for(self, n_params: int | None, state_size: int) -> str | None:
        """What the forward solve must keep for a field of ``n_params`` parameters (None:
        unknown) and a state of ``state_size`` numbers; :attr:`forward_record` unless the
        strategy chooses by size (:class:`AutoAdjoint`)."""
        return self.forward_record

    def keep_bytes(self, n_params: int | None, itemsize: float, state_size: int = 0) -> int:
        """Bytes of forward stage linearisations worth keeping for the backward pass
        (:class:`StageKeeper`); 0 for strategies that do not replay the forward's steps.
        ``itemsize``: the parameters' bytes per element (their mean, for mixed dtypes);
        ``state_size``: elements of the state."""
        return 0

    def state_blocks(self, D: int, P: int) -> dict[str, slice]:
        """Layout of the flat backward solver state (``{}`` when there is no backward solver)."""
        return {}

    def check_solution(self, sol) -> None:
        """Raise ValueError if ``sol`` lacks what :attr:`forward_record` asks for."""
        need = self.forward_record
        if need == "dense" and sol.dense is None:
            raise ValueError(f"{type(self).__name__} reads y from the forward dense output: solve "
                             "with `dense_output=True`")
        if need == "checkpoints" and sol.checkpoints is None:
            raise ValueError(f"{type(self).__name__} restarts from the forward solve's step "
                             "checkpoints: solve with `checkpoints=True` (or `dense_output=True`)"
                             + self._without_checkpoints_hint())

    def _without_checkpoints_hint(self) -> str:
        return ""

    def interpolant_methods(self, forward_method: str) -> tuple[str, ...]:
        """The methods whose dense output this strategy reads y or ``a`` from between steps
        (the forward's, its backward solver's); none by default."""
        return ()

    def poor_interpolants(self, forward_method: str) -> tuple[str, ...]:
        """The methods among :meth:`interpolant_methods` whose dense output is far below the
        method's order (:data:`DENSE_ORDER_GAP`)."""
        out = []
        for name in dict.fromkeys(self.interpolant_methods(forward_method)):
            tab = get_method(name)
            if tab.adaptive and tab.order - (tab.dense_order + 1) >= DENSE_ORDER_GAP:
                out.append(name)
        return tuple(out)

    def warn_interpolant_order(self, forward_method: str, stacklevel: int = 3) -> None:
        """A GradientAccuracyWarning when the strategy reads a dense output whose order is
        well below its method's (see :data:`DENSE_ORDER_GAP`)."""
        for name in self.poor_interpolants(forward_method):
            tab = get_method(name)
            warnings.warn(
                    f"{type(self).__name__} reads y or the adjoint between steps from the dense "
                    f"output of {name!r}, whose order ({tab.dense_order + 1} globally) is far "
                    f"below the method's ({tab.order}): on the large steps of a tight tolerance "
                    "the parameter gradient may be well off (40-440 x rtol measured). Remedy: "
                    "method='dop853' (order 8, dense order 7), or BacksolveAdjoint or "
                    "CheckpointAdjoint, which read no interpolant", GradientAccuracyWarning,
                    stacklevel=stacklevel)

    def backward_adaptive(self, forward_method: str, forward_adaptive: bool) -> bool:
        """Whether the backward pass accepts and rejects steps. Without a backward solver
        (checkpoint, collocation) it follows the forward's steps: adaptive when those were."""
        return forward_adaptive

    def backward(self, cf, sol, grad_y, xp, t_np, *, grad_t: bool) -> AdjointGradient:
        raise NotImplementedError


def _check_int(value: Any, name: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ValueError(f"`{name}` must be an int >= {least}, got {value!r}")
    return int(value)


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool, got {type(value).__name__}")
    return value


@dataclass(frozen=True, kw_only=True)
class SolverSettings(AdjointStrategy):
    """Settings of a backward solve; ``None`` means the forward solve's.

    Parameters
    ----------
    method : str, optional
        A name in :data:`gqlib.METHODS`.
    rtol, atol : float, optional
        Scalar tolerances (the backward state stacks y-shaped and other blocks).
    step_size : float, optional
        Fixed step (fixed-step mode); default the forward's when ``method`` is not given.
    first_step, min_step, max_step, max_steps, controller
        As in :func:`gqlib.solve`.
    norm : {"rms", "max"} or callable, optional
        Norm of the scaled error of the flat backward state; default: the forward norm on
        each state-shaped block (the largest), RMS on a parameter block.
    """

    method: str | None = None
    rtol: float | None = None
    atol: float | None = None
    step_size: float | None = None
    first_step: float | None = None
    norm: Any = None
    max_steps: int = 100_000
    controller: PIController | None = None
    min_step: float = 0.0
    max_step: float = math.inf

    def __post_init__(self):
        if self.method is not None:
            get_method(self.method)
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if value is not None and not isinstance(check_tolerance(value, name), float):
                raise ValueError(f"`{name}` of the backward solve must be a scalar (its state "
                                 "stacks y-shaped and other blocks)")
        for name in ("step_size", "first_step"):
            check_positive(getattr(self, name), name)
        check_max_steps(self.max_steps)
        if self.norm is not None and not callable(self.norm) and self.norm not in ("rms", "max"):
            raise ValueError(f"`norm` must be 'rms', 'max' or a callable, got {self.norm!r}")
        if self.controller is not None and not isinstance(self.controller, PIController):
            raise TypeError(f"`controller` must be a PIController, got "
                            f"{type(self.controller).__name__}")
        if self.min_step != 0.0:
            check_positive(self.min_step, "min_step")
        if self.max_step != math.inf:
            check_positive(self.max_step, "max_step")
        if self.min_step > self.max_step:
            raise ValueError(f"`min_step` ({self.min_step}) must not exceed `max_step` "
                             f"({self.max_step})")

    def _inherited(self, forward_method: str, forward_step_size):
        """The backward solve's tableau and fixed step (None: adaptive). With no ``method`` of
        its own it inherits the forward's method and step mode (the forward's ``step_size``);
        with one it is fixed-step only when ``step_size`` is given."""
        tab = get_method(self.method if self.method is not None else forward_method)
        step_size = self.step_size
        if step_size is None and self.method is None:
            step_size = forward_step_size
        return tab, step_size

    def backward_adaptive(self, forward_method: str, forward_adaptive: bool) -> bool:
        tab, step_size = self._inherited(forward_method, None if forward_adaptive else 1.0)
        return tab.adaptive and step_size is None

    def resolve(self, sol) -> dict:
        """The backward solve's settings: this strategy's, else the forward solve's."""
        opts = sol.options
        tab, step_size = self._inherited(opts.get("method", "dopri5"), opts.get("step_size"))
        tols = {}
        for name, default in (("rtol", 1e-7), ("atol", 1e-9)):
            value = getattr(self, name)
            value = check_tolerance(value if value is not None else opts.get(name, default), name)
            if not isinstance(value, float):
                raise ValueError(f"`{name}` of the backward solve must be a scalar (the backward "
                                 "state stacks y-shaped and other blocks); the forward solve "
                                 f"used an array: give the strategy a scalar `{name}`")
            tols[name] = value
        if step_size is None and not tab.adaptive:
            raise ValueError(f"backward method {tab.name!r} is fixed-step: give `step_size`")
        return dict(tab=tab, rtol=tols["rtol"], atol=tols["atol"], step_size=step_size,
                    first_step=self.first_step, max_steps=self.max_steps,
                    controller=self.controller, min_step=self.min_step, max_step=self.max_step)
