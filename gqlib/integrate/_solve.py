"""``solve``: integrate an ODE over output times with any registered explicit Runge-Kutta method."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _checks
from .._backend import as_state
from ..errors import NonFiniteState, TooManySteps
from ..interpolate import DenseOutput, Solution, StepCheckpoints
from ..tableaux import get_method
from ._controller import PIController
from ._norms import resolve_norm
from ._numba_driver import fallback_reason, numba_solve
from ._policy import check_times, lands_on_outputs
from ._segment import CountedRHS
from ._stepper import Stepper
from ._validation import (
    check_derivative,
    check_max_steps,
    check_positive,
    check_step_bounds,
    check_tolerance,
    check_tstops,
)

__all__ = ["solve"]


def solve(f: Callable, y0: Any, t: Any, *, method: str = "dopri5", rtol: float = 1e-7,
          atol: float = 1e-9, step_size: float | None = None, first_step: float | None = None,
          max_steps: int = 100_000, norm: str | Callable = "rms", tstops: Any = None,
          dense_output: bool = False, checkpoints: bool = False, controller: PIController | None = None,
          min_step: float = 0.0, max_step: float = math.inf,
          observer: Callable | None = None, on_step: Callable | None = None) -> Solution:
    r"""Solve ``dy/dt = f(t, y)``, ``y(t[0]) = y0``, and return y at the times ``t``.

    Adaptive mode (embedded error estimate, PI controller, Hairer's initial step) unless
    ``step_size`` is given; fixed-step mode cuts every interval between landing points (output
    times, ``tstops``) into equal steps no longer than ``step_size``. A method of order p has
    global error O(h^p).

    Parameters
    ----------
    f : callable
        ``f(t, y) -> dy/dt`` with ``t`` a float and ``y`` shaped like ``y0``. A numba-jitted ``f``
        with a float64 NumPy ``y0`` runs the whole loop compiled, with every option below
        (``sol.driver``; ``sol.driver_reason`` says why it did not).
    y0 : array
        Initial state (NumPy array, torch tensor, ...), real floating dtype, any shape.
    t : array_like, shape (n,)
        Output times, strictly increasing or strictly decreasing; ``t[0]`` is the initial time.
    method : str
        A name in :data:`gqlib.METHODS`.
    rtol, atol : float
        Relative and absolute tolerances (adaptive mode).
    step_size : float, optional
        Fixed step size; selects fixed-step mode.
    first_step : float, optional
        Initial step size (adaptive mode); default by Hairer's rule.
    max_steps : int
        Maximum number of step attempts.
    norm : {"rms", "max"} or callable
        Norm of the scaled error ``err / (atol + rtol * |y|)``; a callable makes a seminorm.
    tstops : array_like, optional
        Points where ``f`` may be discontinuous: steps land on them, no step straddles one, and
        ``f`` is re-evaluated one-sidedly after each (time nudged one ulp onward).
    dense_output : bool
        Keep every step's interpolant so that ``sol(tq)`` evaluates anywhere in the span.
    checkpoints : bool
        Keep the state at every accepted step boundary (``sol.checkpoints``, O(steps x D)
        memory): the adjoints restart their backward passes from it. Implied by ``dense_output``.
    controller : PIController, optional
        Step-size controller (safety factor, growth limits, PI gains); default
        ``PIController()``. The solve tells it the method's error order.
    min_step, max_step : float
        Bounds on the adaptive step size (|h|); a step that must fall below ``min_step`` raises.
        A step landing on an output time or tstop may exceed ``max_step`` by 1e-12 relative.
    observer : callable, optional
        ``observer(event, t0, y0, h)`` at every step attempt (``"step"``) and its outcome
        (``"accept"``/``"reject"``); see :class:`gqlib.Stepper`. Runs the array-API driver.
    on_step : callable, optional
        ``on_step(segment)`` after every accepted step, with its :class:`~gqlib.integrate.Segment`
        (``t0``, ``t1``, ``y0``, ``y1``, ``h_step``, stages ``K``, ``end_is_stop``); it only
        watches (torch direct mode's stiffness estimate). Runs the array-API driver.

    Returns
    -------
    Solution
        ``.t``, ``.y`` (shape ``(len(t), *y0.shape)``), ``.stats``, ``.tstops``, ``sol(tq)``.

    Raises
    ------
    ValueError, TypeError
        Invalid arguments (named in the message).
    gqlib.errors.StepSizeTooSmall, NonFiniteState, TooManySteps
        Failure inside the solve; ``.t`` and ``.h`` give where.

    References
    ----------
    Hairer, Norsett & Wanner, Solving Ordinary Differential Equations I, 2nd ed., II.4-II.6.

    Examples
    --------
    >>> import numpy as np, gqlib
    >>> sol = gqlib.solve(lambda t, y: -y, np.array([1.0]), [0.0, 1.0])
    >>> bool(abs(sol.y[-1, 0] - np.exp(-1.0)) < 1e-7)
    True
    """
    xp, y0 = as_state(y0, "y0")
    t_np = check_times(t)
    tab = get_method(method)
    rtol = check_tolerance(rtol, "rtol", shape=tuple(y0.shape))
    atol = check_tolerance(atol, "atol", shape=tuple(y0.shape))
    step_size = check_positive(step_size, "step_size")
    first_step = check_positive(first_step, "first_step")
    max_steps = check_max_steps(max_steps)
    norm_fn = resolve_norm(norm)
    for name, flag in (("dense_output", dense_output), ("checkpoints", checkpoints)):
        if not isinstance(flag, bool):
            raise TypeError(f"`{name}` must be a bool, got {type(flag).__name__}")
    if step_size is None and not tab.adaptive:
        raise ValueError(f"method {tab.name!r} is fixed-step (no error estimate): give `step_size`")
    if not callable(f):
        raise TypeError(f"`f` must be callable, got {type(f).__name__}")
    stops = check_tstops(tstops, float(t_np[0]), float(t_np[-1]))
    min_step, max_step = check_step_bounds(controller, min_step, max_step)
    span = abs(float(t_np[-1]) - float(t_np[0]))
    if step_size is not None and span / max_steps > step_size:
        # certain to fail, and a count past 2**63 would overflow the compiled loop's int64
        raise TooManySteps(f"fixed steps of `step_size` = {step_size!r} over a span of {span!r} "
                           f"need more than max_steps = {max_steps} steps", t=float(t_np[0]),
                           h=step_size)
    options = {"method": tab.name, "rtol": rtol, "atol": atol, "step_size": step_size,
               "norm": norm}

    reason = fallback_reason(f, y0, norm)
    if observer is not None:
        if not callable(observer):
            raise TypeError(f"`observer` must be callable as observer(event, t0, y0, h), got "
                            f"{type(observer).__name__}")
        reason = reason or "an observer is called from Python at every step"
    if on_step is not None:
        if not callable(on_step):
            raise TypeError(f"`on_step` must be callable as on_step(segment), got "
                            f"{type(on_step).__name__}")
        reason = reason or "an on_step hook is called from Python at every step"
    if t_np.size == 1:
        if not bool(xp.all(xp.isfinite(y0))):  # as a solve over an interval would say
            raise NonFiniteState("the initial state y0 is not finite", t=float(t_np[0]), h=0.0)
        stats = {"nfe": 0, "n_steps": 0, "n_accepted": 0, "n_rejected": 0}
        return Solution(t, xp.stack([y0]), stats, **options, driver_reason="a single output time: nothing to solve")
    if reason is None:
        sol = numba_solve(f, y0, t, t_np, tab, rtol=rtol, atol=atol, step_size=step_size,
                          first_step=first_step, max_steps=max_steps, norm=norm, tstops=stops,
                          dense_output=dense_output or checkpoints, controller=controller,
                          min_step=min_step, max_step=max_step)
        if not dense_output:  # the kernel records checkpoints as part of its dense records
            sol.dense = None
        if _checks.enabled() and not bool(np.all(np.isfinite(sol.y))):  # interpolated outputs
            _raise_non_finite_output(np, sol.y, t_np, None)
        return sol

    f0 = CountedRHS(f, {"nfe": 0}, _checks.enabled()).at_state(float(t_np[0]), y0)
    check_derivative(xp, f0, y0, "f")
    stepper = Stepper(f, float(t_np[0]), y0, float(t_np[-1]), tab, rtol=rtol, atol=atol,
                      step_size=step_size, first_step=first_step, norm=norm_fn, tstops=stops,
                      max_steps=max_steps, f0=f0, controller=controller, min_step=min_step,
                      max_step=max_step, observer=observer)
    stepper.stats["nfe"] += 1
    ys, segments = _drive(stepper, t_np, land_on_outputs=lands_on_outputs(tab, step_size),
                          keep=dense_output, record=checkpoints and not dense_output,
                          on_step=on_step)
    Y = xp.stack(ys, axis=0)
    if stepper._checks and not bool(xp.all(xp.isfinite(Y))):  # one sync per solve
        _raise_non_finite_output(xp, Y, t_np, stepper)
    dense = DenseOutput(segments) if dense_output else None
    ckpts = None
    if checkpoints and not dense_output:
        ckpts = StepCheckpoints([float(t_np[0])] + [t1 for t1, _, _ in segments],
                                xp.stack([y0] + [y1 for _, y1, _ in segments], axis=0),
                                [h for _, _, h in segments])
    return Solution(t, Y, stepper.stats, **options, tstops=stops, dense=dense,
                    driver_reason=reason, checkpoints=ckpts)


def _raise_non_finite_output(xp, Y, t_np: np.ndarray, stepper: Stepper | None):
    """Name the first output time whose state is not finite (an overflow that the per-step
    error norm cannot see: it makes the error scale infinite)."""
    bad = ~xp.reshape(xp.all(xp.reshape(xp.isfinite(Y), (Y.shape[0], -1)), axis=1), (-1,))
    i = int(np.argmax(np.asarray([bool(b) for b in bad])))
    raise NonFiniteState(f"the state overflowed to a non-finite value by output time t = "
                         f"{float(t_np[i])!r}", t=float(t_np[i]),
                         h=float("nan") if stepper is None else float(stepper.h))


def _drive(stepper: Stepper, t_np: np.ndarray, *, land_on_outputs: bool, keep: bool,
           record: bool = False, on_step: Callable | None = None):
    """Step from t[0] to t[-1], collecting y at every output time, and the segments if ``keep``
    (with their interpolants) or ``record`` (their end points only); ``on_step(seg)`` after each."""
    ys = [stepper.y]
    segments = []
    d = stepper.direction
    i = 1
    n = t_np.size
    while i < n:
        limit = float(t_np[i]) if land_on_outputs else None
        seg = stepper.step(limit)
        if on_step is not None:
            on_step(seg)
        if keep:
            _ = seg.Q  # build the interpolant now: a Hermite f(t1, y1) is then reused by the next step
            segments.append(seg)
        elif record:  # the end point only: the stages are not kept alive
            segments.append((seg.t1, seg.y1, seg.h_step))
        # outputs inside this step (interpolated) and at its end (exact)
        while i < n and d * (t_np[i] - seg.t1) < 0:
            ys.append(seg(float(t_np[i])))
            i += 1
        if i < n and t_np[i] == seg.t1:
            ys.append(seg.y1)
            i += 1
    return ys, segments
