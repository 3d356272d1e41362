"""The stepper: one explicit Runge-Kutta step at a time, for any tableau and any array library.

``solve`` and the adjoints are built on it. The caller drives: it asks for one accepted step up to a
limit, reads that step's local interpolant, and may change the state between steps (reset y, add a
jump) while the step size is kept. Every decision (target, step, accept, next step, initial step)
is a scalar kernel of :mod:`gqlib.integrate._policy`, shared with the numba driver; the
controller object (:class:`PIController` or :class:`ConstantStep`) holds its memory.

One scalar device-to-host sync per step attempt (the error norm in adaptive mode, a finiteness check
in fixed-step mode). Step sizes and accept/reject decisions are Python floats, detached from
autograd: direct backpropagation differentiates the discretisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import _checks
from .._backend import as_state, to_host_float
from .._jit import plain
from ..interpolate import evaluate_dense, evaluate_pieces
from ..tableaux import ButcherTableau
from ._controller import ConstantStep, PIController
from ._norms import rms_norm
from ._policy import (
    STATUS_OK,
    STATUS_TOO_MANY_STEPS,
    first_step_status,
    initial_step,
    initial_step_guess,
    next_target,
    status_error,
)
from ._segment import CountedRHS, RKCoefficients, Segment, combine
from ._validation import check_tolerance

# evaluate_dense and evaluate_pieces are re-exported: the adjoints import them from here
__all__ = ["Stepper", "Segment", "evaluate_dense", "evaluate_pieces"]

_next_target = plain(next_target)
_initial_step_guess, _initial_step = plain(initial_step_guess), plain(initial_step)
_first_step_status = plain(first_step_status)


def _finite_time(value, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be a real number, got {type(value).__name__}") from exc
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be finite, got {v}")
    return v


def _describe(y) -> str:
    return f"shape {tuple(getattr(y, 'shape', ()))} and dtype {getattr(y, 'dtype', type(y).__name__)}"


class Stepper:
    """Explicit Runge-Kutta stepper (adaptive or fixed-step) for NumPy, torch and other arrays.

    Parameters
    ----------
    f : callable
        ``f(t, y)`` with ``t`` a Python float; returns dy/dt with y's shape, dtype and namespace.
    t0 : float
        Initial time.
    y0 : array
        Initial state.
    t_end : float
        Final time; its sign relative to ``t0`` fixes the direction of travel.
    tableau : ButcherTableau
        The method.
    rtol, atol : float or array
        Tolerances (adaptive mode); ``scale = atol + rtol * max(|y|, |y_new|)``.
    step_size : float, optional
        Fixed step: each interval between landing points is cut into equal steps no longer than
        it (:class:`ConstantStep`).
    first_step : float, optional
        Initial step (adaptive); default: Hairer's rule (HNW I, II.4), costing one evaluation.
    norm : callable
        ``norm(scaled_error) -> scalar``.
    tstops : sequence of float
        Points the solver steps onto where f may be discontinuous.
    max_steps : int
        Maximum number of step attempts.
    controller : PIController, optional
        Adaptive step-size control (default ``PIController()``); the stepper starts it with the
        method's error order and ``min_step``, ``max_step``. Ignored in fixed-step mode.
    f0 : array, optional
        ``f(t0, y0)`` if already known (saves one evaluation).
    min_step, max_step : float
        Bounds on |h| (adaptive).
    observer : callable, optional
        ``observer(event, t0, y0, h)``, told of every step attempt (``event == "step"``, before
        its stages) and of its outcome (``"accept"`` or ``"reject"``), with the step's start and
        signed size. It only watches: its return value is ignored, and the controller alone
        decides (torch's ``callback_step`` and friends are built on it).
    """

    def __init__(self, f: Callable, t0: float, y0: Any, t_end: float, tableau: ButcherTableau, *,
                 rtol: Any = 1e-7, atol: Any = 1e-9, step_size: float | None = None,
                 first_step: float | None = None, norm: Callable = rms_norm,
                 tstops: Sequence[float] = (), max_steps: int = 100_000,
                 controller: PIController | None = None, f0: Any = None,
                 min_step: float = 0.0, max_step: float = math.inf,
                 observer: Callable | None = None):
        self.tab = tableau
        self.observer = observer
        # the validators `solve` uses (a few microseconds): the Stepper is public too
        self.xp, y0 = as_state(y0, "y0")
        self._is_numpy = isinstance(y0, (np.ndarray, np.generic))
        self.t = _finite_time(t0, "t0")
        self.t_end = _finite_time(t_end, "t_end")
        if step_size is None:
            rtol = check_tolerance(rtol, "rtol", shape=tuple(y0.shape))
            atol = check_tolerance(atol, "atol", shape=tuple(y0.shape))
        self.direction = 1.0 if self.t_end >= self.t else -1.0
        self.y = y0
        self.rtol, self.atol = rtol, atol
        self.norm = norm
        self.max_steps = int(max_steps)
        self.stats = {"nfe": 0, "n_steps": 0, "n_accepted": 0, "n_rejected": 0}
        self._checks = _checks.enabled()  # read once per solve
        self._rhs = CountedRHS(f, self.stats, self._checks)
        self._coef = RKCoefficients(tableau)
        d = self.direction
        self.tstops = sorted({float(s) for s in tstops if d * (s - self.t) > 0 and d * (self.t_end - s) > 0},
                             key=lambda s: d * s)
        self._next_stop = 0
        self._f = f0  # f(t, y) at the current point, if valid
        self._last: Segment | None = None  # the last step, whose f(t1, y1) may become self._f
        if step_size is None:
            if not tableau.adaptive:
                raise ValueError(f"method {tableau.name!r} has no error estimate; give `step_size` "
                                 "(fixed-step mode) or choose an adaptive method")
            self.controller = (controller or PIController()).start(
                tableau.error_order, min_step=min_step, max_step=max_step)
            if first_step is not None:
                h = float(first_step)
            elif self._is_numpy:  # an overflowing norm is reported by the first step, not warned
                with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                    h = self._initial_step()
            else:
                h = self._initial_step()
            self.h = self.controller.clamp(h)
            status = _first_step_status(self.h)
            if status != STATUS_OK:
                raise status_error(status, t=self.t, h=self.h)
        else:
            self.controller = ConstantStep(step_size)
            self.h = self.controller.step_size

    # -- evaluations --------------------------------------------------------------------------
    def current_f(self):
        """``f(t, y)`` at the current point (evaluated and cached if needed)."""
        if self._f is None:
            last = self._last
            if (last is not None and last.f1 is not None and not last.end_is_stop
                    and last.t1 == self.t and last.y1 is self.y):
                self._f = last.f1  # Hermite's f(t1, y1) of the last step, evaluated on request
            else:
                t_eval = math.nextafter(self.t, self.direction * math.inf) if self._at_stop() else self.t
                self._f = self._rhs.at_state(t_eval, self.y)  # one-sided after a tstop
            self._last = None
        return self._f

    def _at_stop(self) -> bool:
        return self._next_stop > 0 and self.tstops[self._next_stop - 1] == self.t

    def _initial_step(self) -> float:
        """Hairer, Norsett & Wanner I, II.4, as in scipy.integrate: one extra evaluation."""
        xp, y0 = self.xp, self.y
        f0 = self.current_f()
        scale = self.atol + xp.abs(y0) * self.rtol
        d0 = to_host_float(self.norm(y0 / scale))
        d1 = to_host_float(self.norm(f0 / scale))
        span = abs(self.t_end - self.t)
        if span == 0.0:
            return 0.0
        gap = abs(self.tstops[0] - self.t) if self.tstops else math.inf
        h0 = _initial_step_guess(d0, d1, span, gap)
        f1 = self._rhs(self.t + self.direction * h0, y0 + (self.direction * h0) * f0)
        df = to_host_float(self.norm((f1 - f0) / scale))
        return _initial_step(h0, d1, df, span, self.tab.error_order)

    # -- state changes by the caller ------------------------------------------------------------
    def reset(self, y=None) -> None:
        """Replace the state at the current time (an adjoint jump, a state reset).

        The cached derivative is dropped; the step size and controller memory are kept.
        """
        if y is not None:
            if getattr(y, "shape", None) != self.y.shape or getattr(y, "dtype", None) != self.y.dtype:
                raise ValueError(f"`y` must have the state's shape {tuple(self.y.shape)} and dtype "
                                 f"{self.y.dtype}, got {_describe(y)}")
            self.y = y
        self._f = None
        if self._last is not None and self._last.f1 is not None:
            self._last = None  # f(t1, y1) was known before the reset: not to be reused

    # -- stepping ---------------------------------------------------------------------------------
    def step(self, t_limit: float | None = None) -> Segment:
        """Advance by one accepted step, landing exactly on ``t_limit`` or a tstop if reached.

        Raises :class:`~gqlib.errors.GQLibError` subclasses on failure (with ``.t`` and ``.h``).
        """
        if self._is_numpy:
            # overflow and NaN are detected and reported by the driver itself, not as warnings
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                return self._step_impl(t_limit)
        return self._step_impl(t_limit)

    def _step_impl(self, t_limit: float | None) -> Segment:
        xp, d, ctrl, tab = self.xp, self.direction, self.controller, self.tab
        target = self.t_end if t_limit is None else _finite_time(t_limit, "t_limit")
        target, is_stop, self._next_stop = _next_target(
            self.t, target, self.t_end, d, self.tstops, self._next_stop)
        if target == self.t:
            raise ValueError(f"`t_limit` {t_limit!r} is not ahead of the current time {self.t!r}")
        t0, y0 = self.t, self.y
        f0 = self.current_f()
        while True:
            self.stats["n_steps"] += 1
            if self.stats["n_steps"] > self.max_steps:
                raise status_error(STATUS_TOO_MANY_STEPS, t=t0, h=self.h, max_steps=self.max_steps)
            h, landing = ctrl.propose(self.h, t0, target, d)
            t1 = target if landing else t0 + h
            if self.observer is not None:
                self.observer("step", t0, y0, h)
            K = self._stages(t0, y0, f0, h, t1, landing and is_stop)
            y1 = y0 + h * combine(K, self._coef.B)
            if ctrl.estimates_error:
                err = self._error_norm(K, h, y0, y1)
            elif self._checks:  # the one sync of a fixed step
                err = 0.0 if bool(xp.all(xp.isfinite(y1))) else math.inf
            else:
                err = 0.0
            accept, status, hnew = ctrl.decide(err, h, self.h, landing, t0, target)
            if self.observer is not None:
                self.observer("accept" if accept else "reject", t0, y0, h)
            if not accept:
                self.stats["n_rejected"] += 1
            if ctrl.estimates_error:
                self.h = d * hnew
            if status != STATUS_OK:
                raise status_error(status, t=t0, h=hnew if ctrl.estimates_error else h,
                                   min_step=ctrl.min_step)
            if accept:
                break
        self.stats["n_accepted"] += 1
        self.t, self.y = t1, y1
        end_is_stop = landing and is_stop
        self._f = K[tab.stages - 1] if tab.fsal and not end_is_stop else None
        if end_is_stop:
            self._next_stop += 1
        seg = Segment(t0, t1, y0, y1, K, self._coef, self._rhs, t1 in self.tstops,
                      K[tab.stages - 1] if tab.fsal else None, h_step=h)
        self._last = seg
        return seg

    def _stages(self, t0, y0, f0, h, t1, end_is_stop):
        K = [f0]
        A, C = self._coef.A, self._coef.C
        for i in range(1, self.tab.stages):
            c = C[i]
            ti = t1 if c == 1.0 else t0 + c * h
            if end_is_stop and c == 1.0:
                ti = math.nextafter(t1, -self.direction * math.inf)  # one-sided, from inside
            yi = y0 + h * combine(K, A[i]) if A[i] else y0
            K.append(self._rhs(ti, yi) if A[i] else self._rhs.at_state(ti, yi))
        return K

    def _error_norm(self, K, h, y0, y1) -> float:
        xp = self.xp
        scale = self.atol + self.rtol * xp.maximum(xp.abs(y0), xp.abs(y1))
        # A NaN in y0 or y1 reaches err through `maximum` (it propagates NaN) and a non-finite
        # stage through ek, so the one synced scalar carries the non-finite check. The one case it
        # misses, y1 = inf from finite stages (an overflow), gives scale = inf and err = 0: the next
        # step's stages see it, and `solve` checks its outputs once before returning them.
        ek = combine(K, self._coef.E)
        e5 = self.norm((h * ek) / scale)
        if self._coef.E_low is not None:  # Hairer's DOP853 combination of the 5th- and 3rd-order estimates
            e3 = self.norm((h * combine(K, self._coef.E_low)) / scale)
            # e5^2 / sqrt(e5^2 + 0.01 e3^2), written to stay 0 (not NaN) when both vanish
            e5 = e5 * e5 / ((e5 * e5 + 0.01 * e3 * e3) ** 0.5 + 1e-300)
        return to_host_float(e5)
