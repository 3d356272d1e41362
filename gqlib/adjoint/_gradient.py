"""``gqlib.adjoint.gradient``: validation at the door, then the strategy's backward pass.

Problem: ``dy/dt = f(t, y, theta)``, ``y(t_0) = y_0``, loss ``L = sum_i l_i(y(t_i))``. The adjoint
``a(t) = dL/dy(t)`` solves ``da/dt = -a^T df/dy`` backwards from ``a(t_N) = g_N``, jumping by
``g_i = dl_i/dy(t_i)`` at each output time, and

    dL/dy_0   = a(t_0)   (after adding g_0)
    dL/dtheta = integral_{t_0}^{t_N} a^T df/dtheta dt
    dL/dt_i   = g_i^T f(t_i, y(t_i))   (i > 0),    dL/dt_0 = -a(t_0+)^T f(t_0, y_0).

The strategies (:mod:`._strategy`) differ in how they obtain y and the integral.

References: Chen et al. (2018); Kidger, Chen & Lyons (2021); Norcliffe & Deisenroth (2023).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import namespace, to_host
from ..errors import NonFiniteState
from ..integrate._validation import check_times
from ..interpolate import Solution
from ._aliases import as_strategy
from ._field import CountedField
from ._kept import StageKeeper
from ._strategy import AdjointGradient, AdjointStrategy

__all__ = ["gradient"]


def gradient(field: Any, sol: Solution, grad_y: Any, *, adjoint: AdjointStrategy | str | None = None,
             grad_t: bool = True, observer: Any = None, kept: StageKeeper | None = None,
             **settings: Any) -> AdjointGradient:
    r"""Gradients of ``L = sum_i l_i(y(t_i))`` from ``grad_y[i] = dl_i/dy(t_i)``.

    Parameters
    ----------
    field : VectorField
        The forward vector field with its VJPs (see :class:`gqlib.adjoint.VectorField`).
    sol : Solution
        The forward solve ``gqlib.solve(field, y0, t, ...)``, with what the strategy needs
        recorded (``strategy.forward_record``): ``checkpoints=True`` for GQ, backsolve and
        checkpoint (their default), ``dense_output=True`` for interpolated and collocation.
    grad_y : array, shape ``(len(t), *y0.shape)``
        dl_i/dy(t_i); rows may be zero.
    adjoint : strategy object or str, optional
        :class:`AutoAdjoint` (``"auto"``: checkpoint or interpolated by problem size),
        :class:`CheckpointAdjoint` (``"checkpoint"``),
        :class:`GQAdjoint` (``"gq"``), :class:`BacksolveAdjoint` (``"backsolve"``),
        :class:`InterpolatedAdjoint` (``"interpolated"``) or :class:`CollocationAdjoint`
        (``"collocation"``). docs/adjoint.md compares them.
    grad_t : bool
        Compute dL/dt (an extra evaluation per output time for some strategies); when False,
        ``AdjointGradient.t`` is None.
    observer : callable, optional
        ``observer(event, t0, a0, h)`` for each backward step: ``"step"`` before it, then
        ``"accept"`` or ``"reject"``, with ``a0`` the adjoint dL/dy (y's shape) at its start and
        ``h`` its signed size. A backward solver's steps (GQ, backsolve, interpolated); each
        recomputed forward step (checkpoint); each panel (collocation: rejected when its
        Picard sweeps do not contract, then halved).
    kept : StageKeeper, optional
        The forward's stage linearisations, when the forward solve ran with a
        :class:`StageKeeper` as its field and observer: the checkpoint adjoint back-propagates
        the steps it kept without recomputing them (other strategies ignore it).
    **settings
        With a string ``adjoint``: the strategy's constructor arguments
        (``gradient(..., adjoint="gq", nodes=3)`` is ``adjoint=GQAdjoint(nodes=3)``).

    Returns
    -------
    AdjointGradient

    Warns
    -----
    gqlib.errors.GradientAccuracyWarning
        When a strategy measures that its gradient may be inaccurate (a re-integrated y that
        drifted from the forward solution), with the remedy.

    Examples
    --------
    >>> import numpy as np, gqlib
    >>> from gqlib.adjoint import FunctionField, gradient
    >>> k = 0.5
    >>> field = FunctionField(lambda t, y: -k * y, lambda t, y, a: -k * a,
    ...                       lambda t, y, a: np.array([-np.sum(a * y)]))
    >>> sol = gqlib.solve(field, np.ones(1), [0.0, 1.0], rtol=1e-10, atol=1e-12, checkpoints=True)
    >>> g = gradient(field, sol, np.array([[0.0], [1.0]]))   # L = y(1) = exp(-k)
    >>> bool(abs(g.params[0] + np.exp(-k)) < 1e-8)            # dL/dk = -exp(-k)
    True
    """
    strategy = as_strategy(adjoint, **settings)
    if not isinstance(sol, Solution):
        raise TypeError(f"`sol` must be the Solution of gqlib.solve, got {type(sol).__name__}")
    cf = CountedField(field)
    if observer is not None and not callable(observer):
        raise TypeError(f"`observer` must be callable as observer(event, t0, a0, h), got "
                        f"{type(observer).__name__}")
    cf.observer = observer
    if kept is not None and not isinstance(kept, StageKeeper):
        raise TypeError(f"`kept` must be a StageKeeper, got {type(kept).__name__}")
    cf.kept = kept
    xp = namespace(sol.y)
    if tuple(getattr(grad_y, "shape", ())) != tuple(sol.y.shape):
        raise ValueError(f"`grad_y` must have shape {tuple(sol.y.shape)} (len(t), *y0.shape), got "
                         f"{tuple(getattr(grad_y, 'shape', ()))}")
    if namespace(grad_y) is not xp and type(grad_y) is not type(sol.y):
        raise TypeError(f"`grad_y` must be the same array type as the solution "
                        f"({type(sol.y).__name__}), got {type(grad_y).__name__}")
    if not xp.isdtype(grad_y.dtype, ("real floating", "integral")):  # complex, bool
        raise TypeError(f"`grad_y` must hold real numbers, got dtype {grad_y.dtype}")
    t_np = check_times(sol.t)
    if not isinstance(grad_t, bool):
        raise TypeError(f"`grad_t` must be a bool, got {type(grad_t).__name__}")
    if not bool(xp.all(xp.isfinite(grad_y))):  # one sync; a NaN would only show deep inside
        bad = ~np.isfinite(to_host(grad_y).reshape(t_np.size, -1))
        i = int(np.flatnonzero(bad.any(axis=1))[0])
        raise ValueError(f"`grad_y` must be finite; grad_y[{i}] (at t = {float(t_np[i])!r}) holds NaN "
                         "or inf (check the loss)")
    if t_np.size == 1:  # no interval: dL/dy0 = g_0, nothing else depends on anything
        zero = xp.sum(grad_y[0]) * 0.0
        params = None
        if cf.has_params:
            probe = cf.vjp_params(float(t_np[0]), sol.y[0], grad_y[0] * 0.0)
            if not bool(xp.all(xp.isfinite(probe))):
                raise NonFiniteState("the parameter gradient (vjp_params) is not finite",
                                     t=float(t_np[0]), h=0.0)
            params = xp.zeros_like(probe)  # nothing depends on theta with no interval
        return AdjointGradient(xp.asarray(grad_y[0], copy=True), params,
                               xp.stack([zero]) if grad_t else None,
                               {**cf.stats, "n_nodes": 0, "n_panels": 0, "n_accepted": 0,
                                "n_rejected": 0, "n_steps": 0, "state_size": 0, "max_drift": 0.0,
                                "seconds": dict(cf.seconds), "strategy": strategy.name})
    strategy.check_solution(sol)
    strategy.warn_interpolant_order(sol.options.get("method", "dopri5"))
    out = strategy.backward(cf, sol, grad_y, xp, t_np, grad_t=grad_t)
    out.stats.setdefault("strategy", strategy.name)
    _check_finite(out, xp, t_np)
    return out


def _check_finite(out: AdjointGradient, xp, t_np) -> None:
    """No NaN gradient is ever returned: one sync over dL/dy0 and dL/dtheta (a non-finite
    ``vjp_params`` passes through the quadrature sums unseen by any solver)."""
    ok = xp.all(xp.isfinite(out.y0))
    if out.params is not None:
        # the sum is non-finite if any entry is (one read of P numbers, no P-sized mask); a
        # finite gradient whose sum overflows falls through to the entrywise check below
        ok = ok & xp.isfinite(xp.sum(out.params))
    if bool(ok):
        return
    if bool(xp.all(xp.isfinite(out.y0))) and (
            out.params is None or bool(xp.all(xp.isfinite(out.params)))):
        return
    span = (float(t_np[0]), float(t_np[-1]))
    if out.params is not None and not bool(xp.all(xp.isfinite(out.params))):
        raise NonFiniteState(f"the parameter gradient (from `vjp_params`) is not finite over "
                             f"the span {span}", t=span[0])
    raise NonFiniteState(f"the gradient dL/dy0 is not finite over the span {span}", t=span[0])
