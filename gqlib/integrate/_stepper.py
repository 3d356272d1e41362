"""The stepper: one explicit Runge-Kutta step at a time, for any tableau and any array library.

``solve`` and the adjoints are built on it. The caller drives: it asks for one accepted step up to a
limit, reads that step's local interpolant, and may change the state between steps (reset y, add a
jump) while the step size is kept.

One scalar device-to-host sync per step attempt (the error norm in adaptive mode, a finiteness check
in fixed-step mode). Step sizes and accept/reject decisions are Python floats, detached from
autograd: direct backpropagation differentiates the discretisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .._backend import constant_like, device_of, namespace, to_host_float
from ..errors import NonFiniteState, StepSizeTooSmall, TooManySteps
from ..tableaux import ButcherTableau
from ._controller import PIController
from ._norms import rms_norm

__all__ = ["Stepper", "Segment"]


class Segment:
    """The accepted step ``[t0, t1]`` and its local interpolant.

    ``segment(tq)`` evaluates the continuous extension declared by the method (``Q = K.T @ P``),
    or cubic Hermite when the method declares none. Coefficients are built on first use, so extra
    dense-output stages (dop853) are evaluated only if an interpolant is asked for.
    """

    __slots__ = ("t0", "t1", "h", "y0", "y1", "_K", "_owner", "_Q", "_f1")

    def __init__(self, t0, t1, y0, y1, K, owner, f1=None):
        self.t0, self.t1, self.h = t0, t1, t1 - t0
        self.y0, self.y1 = y0, y1
        self._K, self._owner, self._Q, self._f1 = K, owner, None, f1

    @property
    def f0(self):
        return self._K[0]

    @property
    def Q(self):
        """Coefficients ``Q`` with ``y(t0 + theta h) = y0 + h * sum_p Q[..., p] theta^(p+1)``."""
        if self._Q is None:
            self._Q = self._owner._dense_coefficients(self)
        return self._Q

    def __call__(self, tq):
        """Interpolate at the float time(s) ``tq`` (scalar -> state shape; 1-D -> (len, *shape))."""
        tq_arr = np.asarray(tq, dtype=np.float64)
        theta = (tq_arr - self.t0) / self.h
        return evaluate_dense(self.y0, self.h, self.Q, theta)


def evaluate_dense(y0, h, Q, theta):
    """``y0 + h * Q @ [theta, theta^2, ...]`` for a scalar or 1-D array of ``theta`` (floats).

    A scalar ``theta`` is raised to a cached on-device range of exponents (no host-to-device
    copy); an array goes through :func:`evaluate_pieces` as one piece (one copy of the times).
    """
    degree = Q.shape[-1]
    exps = constant_like(f"exponents{degree}", np.arange(1, degree + 1, dtype=np.float64), y0)
    if np.ndim(theta) == 0:
        return y0 + h * (Q @ (float(theta) ** exps))
    xp = namespace(y0)
    theta = np.asarray(theta, dtype=np.float64)
    theta_dev = xp.asarray(theta, dtype=xp.float64, device=device_of(y0))
    return evaluate_pieces([(0.0, 1.0, y0, h * Q)], theta, theta_dev, y0)


def evaluate_pieces(pieces, t_host, t_dev, like):
    """A piecewise interpolant at monotone times, without host-to-device transfers.

    ``pieces`` are ``(t0, h, y0, Q)`` of consecutive steps (host floats ``t0``, ``h``, in either
    order of time). ``t_host`` (NumPy) and ``t_dev`` (the same float64 values on the state's
    device) are monotone. Each time is assigned on the host to the one piece whose
    ``[lo, hi)`` holds it (the last piece closed); since the times are monotone the pieces take
    contiguous runs, each evaluated on a slice of ``t_dev`` (slicing moves no data). Returns
    shape ``(m, *y0.shape)``.
    """
    xp = namespace(like)
    order = sorted(range(len(pieces)), key=lambda j: min(pieces[j][0], pieces[j][0] + pieces[j][1]))
    los = np.array([min(pieces[j][0], pieces[j][0] + pieces[j][1]) for j in order])
    which = np.clip(np.searchsorted(los, t_host, side="right") - 1, 0, len(order) - 1)
    runs = []
    start = 0
    m = len(t_host)
    while start < m:
        stop = start + 1
        while stop < m and which[stop] == which[start]:
            stop += 1
        t0, h, y0, Q = pieces[order[which[start]]]
        degree = Q.shape[-1]
        exps = constant_like(f"exponents{degree}", np.arange(1, degree + 1, dtype=np.float64),
                             t_dev, dtype=t_dev.dtype)
        theta = (t_dev[start:stop] - t0) / h
        pw = xp.astype(theta[None, :] ** exps[:, None], y0.dtype)  # (degree, run)
        vals = y0[..., None] + h * (Q @ pw)                          # (*shape, run)
        runs.append(xp.moveaxis(vals, -1, 0) if vals.ndim > 1 else vals)
        start = stop
    return runs[0] if len(runs) == 1 else xp.concat(runs, axis=0)



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
        Fixed step: each interval between landing points is cut into equal steps no longer than it.
    first_step : float, optional
        Initial step (adaptive); default: Hairer's rule (HNW I, II.4), costing one evaluation.
    norm : callable
        ``norm(scaled_error) -> scalar``.
    tstops : sequence of float
        Points the solver steps onto where f may be discontinuous.
    max_steps : int
        Maximum number of step attempts.
    controller : PIController, optional
    f0 : array, optional
        ``f(t0, y0)`` if already known (saves one evaluation).
    min_step, max_step : float
        Bounds on |h| (adaptive).
    """

    def __init__(self, f: Callable, t0: float, y0: Any, t_end: float, tableau: ButcherTableau, *,
                 rtol: Any = 1e-7, atol: Any = 1e-9, step_size: float | None = None,
                 first_step: float | None = None, norm: Callable = rms_norm,
                 tstops: Sequence[float] = (), max_steps: int = 100_000,
                 controller: PIController | None = None, f0: Any = None,
                 min_step: float = 0.0, max_step: float = math.inf):
        self.fun = f
        self.tab = tableau
        self.xp = namespace(y0)
        self._is_numpy = isinstance(y0, (np.ndarray, np.generic))
        self.t = float(t0)
        self.t_end = float(t_end)
        self.direction = 1.0 if self.t_end >= self.t else -1.0
        self.y = y0
        self.rtol, self.atol = rtol, atol
        self.norm = norm
        self.max_steps = int(max_steps)
        self.step_size = None if step_size is None else float(step_size)
        self.min_step, self.max_step = float(min_step), float(max_step)
        self.stats = {"nfe": 0, "n_steps": 0, "n_accepted": 0, "n_rejected": 0}
        d = self.direction
        self.tstops = sorted({float(s) for s in tstops if d * (s - self.t) > 0 and d * (self.t_end - s) > 0},
                             key=lambda s: d * s)
        self._next_stop = 0
        self._f = f0  # f(t, y) at the current point, if valid
        self._f_time = self.t
        self.adaptive = step_size is None
        if self.adaptive and not tableau.adaptive:
            raise ValueError(f"method {tableau.name!r} has no error estimate; give `step_size` "
                             "(fixed-step mode) or choose an adaptive method")
        self.controller = controller or (PIController(tableau.error_order) if self.adaptive else None)
        self._err_prev = 1e-4  # Hairer's initial `facold`
        self._after_reject = False
        self._A = [[(j, float(tableau.A[i, j])) for j in range(i) if tableau.A[i, j] != 0.0]
                   for i in range(tableau.A.shape[0])]
        self._C = [float(c) for c in tableau.C]
        self._B = [(i, float(b)) for i, b in enumerate(tableau.B) if b != 0.0]
        self._E = None if tableau.E is None else [(i, float(e)) for i, e in enumerate(tableau.E) if e != 0.0]
        self._P_rows = ([] if tableau.P is None else
                        [i for i in range(tableau.P.shape[0]) if np.any(tableau.P[i])])
        self._E_low = (None if tableau.E_low is None else
                       [(i, float(e)) for i, e in enumerate(tableau.E_low) if e != 0.0])
        if self.adaptive:
            if first_step is not None:
                self.h = float(first_step)
            else:
                self.h = self._initial_step()
            self.h = min(max(self.h, self.min_step), self.max_step)
        else:
            self.h = self.step_size

    # -- evaluations --------------------------------------------------------------------------
    def _eval(self, t: float, y):
        self.stats["nfe"] += 1
        return self.fun(t, y)

    def _onward(self, t: float) -> float:
        """``t`` nudged one ulp in the direction of travel (one-sided evaluation after a tstop)."""
        return math.nextafter(t, self.direction * math.inf)

    def current_f(self):
        """``f(t, y)`` at the current point (evaluated and cached if needed)."""
        if self._f is None:
            t_eval = self._onward(self.t) if self._at_stop() else self.t
            self._f = self._eval(t_eval, self.y)
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
        h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
        h0 = min(h0, span)
        if self.tstops:
            h0 = min(h0, abs(self.tstops[0] - self.t))
        t1 = self.t + self.direction * h0
        f1 = self._eval(t1, y0 + (self.direction * h0) * f0)
        d2 = to_host_float(self.norm((f1 - f0) / scale)) / h0
        k = self.tab.error_order + 1
        if d1 <= 1e-15 and d2 <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / k)
        return min(100 * h0, h1, span)

    # -- state changes by the caller ------------------------------------------------------------
    def reset(self, y=None) -> None:
        """Replace the state at the current time (an adjoint jump, a state reset).

        The cached derivative is dropped; the step size and controller memory are kept.
        """
        if y is not None:
            self.y = y
        self._f = None

    # -- stepping ---------------------------------------------------------------------------------
    def _target(self, t_limit: float | None) -> tuple[float, bool]:
        """The next landing point and whether it is a tstop."""
        d = self.direction
        target = self.t_end if t_limit is None else float(t_limit)
        if d * (target - self.t_end) > 0:
            target = self.t_end
        is_stop = False
        while self._next_stop < len(self.tstops) and d * (self.tstops[self._next_stop] - self.t) <= 0:
            self._next_stop += 1
        if self._next_stop < len(self.tstops):
            s = self.tstops[self._next_stop]
            if d * (s - target) <= 0:
                target, is_stop = s, True
        return target, is_stop

    def done(self) -> bool:
        return self.t == self.t_end

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
        xp = self.xp
        d = self.direction
        target, is_stop = self._target(t_limit)
        if target == self.t:
            raise ValueError(f"`t_limit` {t_limit!r} is not ahead of the current time {self.t!r}")
        t0, y0 = self.t, self.y
        f0 = self.current_f()
        while True:
            self.stats["n_steps"] += 1
            if self.stats["n_steps"] > self.max_steps:
                raise TooManySteps(f"more than max_steps = {self.max_steps} step attempts", t=t0,
                                   h=self.h)
            remaining = target - t0
            if self.adaptive:
                habs = abs(self.h)
                # land on the target if we would pass it or stop just short of it
                landing = habs >= abs(remaining) * (1.0 - 1e-12)
                h = remaining if landing else d * habs
            else:
                n = max(1, math.ceil(abs(remaining) / self.step_size - 1e-9))
                landing = n == 1
                h = remaining if landing else remaining / n
            t1 = target if landing else t0 + h
            K = self._stages(t0, y0, f0, h, t1, landing and is_stop)
            y1 = y0 + h * self._combine(K, self._B)
            if not self.adaptive:
                if not bool(xp.all(xp.isfinite(y1))):  # the one sync of a fixed step
                    raise NonFiniteState("non-finite state in a fixed step", t=t0, h=h)
                accept = True
            else:
                err = self._error_norm(K, h, y0, y1)
                accept, factor = self.controller.decide(err, self._err_prev, self._after_reject)
                if accept:
                    self._err_prev = max(err, 1e-4)
                    self._after_reject = False
                    hnew = abs(h) * factor
                    if landing:  # a clipped step says little about the step the controller wanted
                        hnew = max(hnew, abs(self.h)) if factor >= 1.0 else hnew
                else:
                    self.stats["n_rejected"] += 1
                    self._after_reject = True
                    hnew = abs(h) * factor
                hnew = min(max(hnew, self.min_step), self.max_step)
                self.h = d * hnew
                if not accept:
                    if not math.isfinite(err) and hnew < 10 * _ulp(t0):
                        raise NonFiniteState("the stages became NaN or infinite and shrinking the "
                                             "step did not help", t=t0, h=hnew)
                    if hnew < 10 * _ulp(t0) or (self.min_step > 0 and hnew <= self.min_step
                                                and abs(h) <= self.min_step):
                        raise StepSizeTooSmall("step size underflow", t=t0, h=hnew)
                    continue
            break
        self.stats["n_accepted"] += 1
        self.t, self.y = t1, y1
        if self.tab.fsal and not (landing and is_stop):
            self._f = K[self.tab.stages - 1]
        else:
            self._f = None
        if landing and is_stop:
            self._next_stop += 1
        f1 = K[self.tab.stages - 1] if self.tab.fsal else None
        return Segment(t0, t1, y0, y1, K, self, f1)

    def _stages(self, t0, y0, f0, h, t1, end_is_stop):
        K = [f0]
        for i in range(1, self.tab.stages):
            c = self._C[i]
            ti = t1 if c == 1.0 else t0 + c * h
            if end_is_stop and c == 1.0:
                ti = math.nextafter(t1, -self.direction * math.inf)  # one-sided, from inside
            yi = y0 + h * self._combine(K, self._A[i]) if self._A[i] else y0
            K.append(self._eval(ti, yi))
        return K

    @staticmethod
    def _combine(K, coeffs):
        """``sum_j w_j K_j``; the accumulator is fresh, so it is updated in place where the
        array type allows (torch ``add_``, autograd-safe; NumPy ``+=``)."""
        if not coeffs:
            return 0.0 * K[0]
        (j0, w0), rest = coeffs[0], coeffs[1:]
        acc = w0 * K[j0]
        if not rest:
            return acc
        if hasattr(acc, "add_"):
            for j, w in rest:
                acc.add_(K[j], alpha=w)
        elif isinstance(acc, np.ndarray):
            for j, w in rest:
                acc += w * K[j]
        else:
            for j, w in rest:
                acc = acc + w * K[j]
        return acc

    def _error_norm(self, K, h, y0, y1) -> float:
        xp = self.xp
        scale = self.atol + self.rtol * xp.maximum(xp.abs(y0), xp.abs(y1))
        e5 = self.norm((h * self._combine(K, self._E)) / scale)
        if self._E_low is not None:  # Hairer's DOP853 combination of the 5th- and 3rd-order estimates
            e3 = self.norm((h * self._combine(K, self._E_low)) / scale)
            # e5^2 / sqrt(e5^2 + 0.01 e3^2), written to stay 0 (not NaN) when both vanish
            e5 = e5 * e5 / ((e5 * e5 + 0.01 * e3 * e3) ** 0.5 + 1e-300)
        # a non-finite y1 with finite stages would give scale = inf and err = 0: poison it
        return to_host_float(e5 + 0.0 * xp.sum(y1))

    # -- dense output ---------------------------------------------------------------------------
    def _dense_coefficients(self, seg: Segment):
        tab = self.tab
        K = seg._K
        if tab.P is not None:
            if len(K) < tab.P.shape[0]:
                K = self._extra_stages(seg)
            P = constant_like(f"P:{tab.name}", tab.P, seg.y0)  # (stages, degree), on the device
            # row by row in stage order (the numba driver sums in the same order: parity)
            Q = None
            for i in self._P_rows:
                term = K[i][..., None] * P[i]
                Q = term if Q is None else Q + term
            return Q
        # cubic Hermite from y0, y1, f0, f1
        f1 = seg._f1
        if f1 is None:
            f1 = self._endpoint_f(seg)
            seg._f1 = f1
        f0, h = K[0], seg.h
        delta = (seg.y1 - seg.y0) / h
        c2 = 3.0 * delta - 2.0 * f0 - f1
        c3 = f0 + f1 - 2.0 * delta
        return self.xp.stack([f0, c2, c3], axis=-1)

    def _endpoint_f(self, seg: Segment):
        """f(t1, y1) from inside the step; reused as the next step's first stage when valid."""
        inside_stop = seg.t1 in self.tstops
        t_eval = math.nextafter(seg.t1, -self.direction * math.inf) if inside_stop else seg.t1
        f1 = self._eval(t_eval, seg.y1)
        if not inside_stop and self.t == seg.t1 and self.y is seg.y1 and self._f is None:
            self._f = f1
        return f1

    def _extra_stages(self, seg: Segment):
        tab = self.tab
        K = list(seg._K)
        h = seg.h
        for i in range(tab.stages, tab.A.shape[0]):
            coeffs = [(j, float(tab.A[i, j])) for j in range(i) if tab.A[i, j] != 0.0]
            yi = seg.y0 + h * self._combine(K, coeffs)
            K.append(self._eval(seg.t0 + float(tab.C[i]) * h, yi))
        seg._K = K
        return K


def _ulp(t: float) -> float:
    return abs(math.nextafter(t, math.inf) - t) if t != 0 else 5e-324
