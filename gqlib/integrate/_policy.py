"""The driver's decisions, written once: times, targets, substeps, initial step, accept/reject.

Every function here is a scalar kernel. The numba driver calls them compiled; the array-API
:class:`~gqlib.integrate.Stepper` and the controllers call the same code as plain Python
(``.py_func``, with the kernels it calls plain too: :func:`gqlib._jit.plain`), so both drivers
take the same steps bit for bit (``tests/test_numba_driver.py``). A kernel
returns a status code instead of raising (numba cannot raise the library's exceptions with their
attributes); :func:`status_error` is the one table from codes to exceptions.

numba caches a compiled kernel by the file that defines the *caller*: after editing this file,
delete ``gqlib/integrate/__pycache__/*.nb*`` (or touch ``_numba_loop.py``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._backend import to_host
from .._jit import jit
from ..errors import GQLibError, NonFiniteState, StepSizeTooSmall, TooManySteps

__all__ = ["substep_count", "check_times", "next_target", "initial_step_guess",
           "initial_step", "pi_factor", "pi_propose", "pi_decide", "constant_propose",
           "constant_decide", "clamp_step", "lands_on_outputs", "status_error", "STATUS_OK",
           "STATUS_STEP_TOO_SMALL", "STATUS_NON_FINITE", "STATUS_TOO_MANY_STEPS",
           "STATUS_NON_FINITE_FIXED", "STATUS_BELOW_MIN_STEP", "STATUS_NON_FINITE_START",
           "ERR_PREV_INIT", "NON_FINITE_RETRIES", "first_step_status"]

STATUS_OK = 0
STATUS_STEP_TOO_SMALL = 1     # |h| below 10 float spacings of t (1 near a landing point)
STATUS_NON_FINITE = 2         # NaN/inf stages and shrinking the step did not help
STATUS_TOO_MANY_STEPS = 3     # more than max_steps attempts
STATUS_NON_FINITE_FIXED = 4   # NaN/inf state in fixed-step mode (nothing to shrink)
STATUS_BELOW_MIN_STEP = 5     # the error test needs a step below min_step
STATUS_NON_FINITE_START = 6   # the initial step is NaN: y0 or f(t0, y0) is not finite

_STATUS_ERRORS: dict[int, tuple[type[GQLibError], str]] = {
    STATUS_STEP_TOO_SMALL: (StepSizeTooSmall, "step size underflow: the error test needs a step "
                                              "below what the float spacing of t allows (10 "
                                              "spacings; one spacing within 8 spacings of "
                                              "the next landing point; at large |t|, shift t "
                                              "towards 0)"),
    STATUS_NON_FINITE: (NonFiniteState, "the stages became NaN or infinite and shrinking the "
                                        "step did not help"),
    STATUS_TOO_MANY_STEPS: (TooManySteps, "more than max_steps = {max_steps} step attempts"),
    STATUS_NON_FINITE_FIXED: (NonFiniteState, "non-finite state in a fixed step"),
    STATUS_BELOW_MIN_STEP: (StepSizeTooSmall, "the error test needs a step below min_step = "
                                              "{min_step}"),
    STATUS_NON_FINITE_START: (NonFiniteState, "the initial step is not finite: y0 or f(t0, y0) "
                                              "holds NaN or inf"),
}

ERR_PREV_INIT = 1e-4  # Hairer's initial `facold`: the PI controller's memory before the first step
_LANDING_SLACK = 1e-12  # land on the target rather than stop this (relative) short of it
_SUBSTEP_SLACK = 1e-9   # a rounding error in span/h must not add a sliver of a step
_TIME_ROUNDING_SLACK = 2.0 ** -30  # t0 + h off by less than this (relative) keeps h itself
_MAX_SUBSTEPS = 2 ** 62  # more fixed steps than any solve can take (and int64 cannot overflow)
RESOLUTION_FRACTION = 0.5  # a step of one float spacing of t is accepted when the controller's
                           # ideal step is at least this fraction of it (err <= 2**(q+1)) ...
RESOLUTION_SPAN = 8        # ... and the next landing point is at most this many spacings away
                           # ("a few ulp": at most 8 such steps, each err <= 2**(q+1), in a row)
NON_FINITE_RETRIES = 5  # consecutive NaN/inf rejections (each shrinking by min_factor) before
                        # the solve gives up: 0.2**5 = 1/3125 of a step proposed from finite errors


def status_error(status: int, *, t: float, h: float, max_steps: int = 0,
                 min_step: float = 0.0) -> GQLibError:
    """The exception for a failed solve's status code, with the time and step size of failure."""
    cls, message = _STATUS_ERRORS[int(status)]
    return cls(message.format(max_steps=max_steps, min_step=min_step), t=t, h=h)


# -- times ------------------------------------------------------------------------------------
def check_times(t: Any, name: str = "t", *, increasing: bool = False) -> np.ndarray:
    """Times as a 1-D float64 host array, finite and strictly monotonic (increasing if asked).

    Any array type: moved to the host once (:func:`gqlib._backend.to_host`).
    """
    try:
        t_np = to_host(t)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be a 1-D array of times, got {type(t).__name__}") from exc
    if t_np.dtype.kind not in "fiu":
        raise TypeError(f"`{name}` must hold real numbers, got dtype {t_np.dtype}")
    t_np = t_np.astype(np.float64)
    if t_np.ndim != 1 or t_np.size < 1:
        raise ValueError(f"`{name}` must be a 1-D array of times (non-empty), got shape "
                         f"{t_np.shape}")
    if not np.all(np.isfinite(t_np)):
        i = int(np.flatnonzero(~np.isfinite(t_np))[0])
        raise ValueError(f"`{name}` must be finite; {name}[{i}] = {t_np[i]}")
    if t_np.size > 1:
        direction = 1.0 if increasing else np.sign(t_np[-1] - t_np[0])
        bad = np.flatnonzero(np.diff(t_np) * direction <= 0) if direction != 0 else np.array([0])
        if bad.size:
            i = int(bad[0]) + 1
            word = "after" if direction >= 0 else "before"
            kind = "increasing" if increasing else "monotonic"
            raise ValueError(f"`{name}` must be strictly {kind}; {name}[{i}] = {t_np[i]} is not "
                             f"{word} {name}[{i - 1}] = {t_np[i - 1]}")
    return t_np


@jit
def substep_count(span, h):
    """Equal steps no longer than ``h`` that cover ``span``: ``max(1, ceil(span / h - 1e-9))``,
    at most ``2**62`` (more than any solve can take; a larger count would overflow int64)."""
    q = span / h - _SUBSTEP_SLACK
    if not q < _MAX_SUBSTEPS:  # also inf and NaN
        return _MAX_SUBSTEPS
    return max(1, math.ceil(q))


def lands_on_outputs(tab, step_size) -> bool:
    """Step onto output times unless the interpolant is as accurate as the method (dense order
    + 1 >= order): interpolating a weaker extension would spoil the outputs."""
    return step_size is not None or tab.dense_order + 1 < tab.order


@jit(inline="always")
def next_target(t, target, t_end, d, tstops, next_stop):
    """The next landing point: ``target`` cut at ``t_end`` and at the first tstop ahead of ``t``.

    ``tstops`` are sorted in the direction ``d``; ``next_stop`` indexes the first not yet passed.
    Returns ``(target, is_stop, next_stop)``.
    """
    if d * (target - t_end) > 0:
        target = t_end
    is_stop = False
    n = len(tstops)
    while next_stop < n and d * (tstops[next_stop] - t) <= 0:
        next_stop += 1
    if next_stop < n:
        s = tstops[next_stop]
        if d * (s - target) <= 0:
            target = s
            is_stop = True
    return target, is_stop, next_stop


# -- initial step (Hairer, Norsett & Wanner I, II.4, as in scipy.integrate) -------------------
@jit
def _pymin(a, b):
    """Python's ``min(a, b)``: keeps ``a`` unless ``b < a`` (matters only for NaN)."""
    return b if b < a else a


@jit
def _pymax(a, b):
    """Python's ``max(a, b)``."""
    return b if b > a else a


@jit
def initial_step_guess(d0, d1, span, stop_gap):
    """First guess ``h0 = 0.01 ||y0|| / ||f0||`` (``1e-6`` when either is below ``1e-5``),
    at most ``span`` and the gap to the first tstop (``inf`` if none)."""
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    return _pymin(_pymin(h0, span), stop_gap)


@jit
def initial_step(h0, d1, df, span, error_order):
    """``h1 = (0.01 / max(d1, d2))^(1/(q+1))`` from ``d2 = df / h0``,
    ``df = ||f(t0 + h0, y0 + h0 f0) - f0||`` (q the error order); returns
    ``min(100 h0, h1, span)``, or 0 when ``h0`` is 0 (``||f0||`` overflowed: the first attempt
    then fails as a step size underflow)."""
    if h0 == 0.0:
        return 0.0
    d2 = df / h0
    if d1 <= 1e-15 and d2 <= 1e-15:
        h1 = _pymax(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / _pymax(d1, d2)) ** (1.0 / (error_order + 1))
    return _pymin(_pymin(100 * h0, h1), span)


@jit
def first_step_status(h):
    """A first step that is NaN or inf (from y0, f(t0, y0) or their scale) cannot be repaired
    by shrinking it: fail before any stage is evaluated at a NaN time."""
    return STATUS_OK if math.isfinite(h) else STATUS_NON_FINITE_START


@jit
def clamp_step(h, min_step, max_step):
    """``min(max(|h|, min_step), max_step)``."""
    return _pymin(_pymax(h, min_step), max_step)


# -- controllers ----------------------------------------------------------------------------
@jit
def pi_factor(err, err_prev, safety, min_factor, max_factor, beta1, beta2, after_reject):
    """``safety * err^(-beta1) * err_prev^beta2`` clipped to ``[min_factor, max_factor]``; no
    growth after a rejection. Both errors are scaled norms (> 0 for ``err_prev``)."""
    if err == 0.0:
        factor = max_factor
    elif not math.isfinite(err):
        factor = min_factor
    else:
        factor = safety * err ** (-beta1) * err_prev ** beta2
        if factor < min_factor:
            factor = min_factor
        if factor > max_factor:
            factor = max_factor
    if after_reject and factor > 1.0:
        factor = 1.0
    return factor


@jit
def _effective_step(t0, h, target, remaining):
    """The step ``t0 + h`` really takes, ``(t0 + h) - t0``, and whether it reaches ``target``.

    Far from 0 the sum rounds to the spacing of floats at ``t0`` (0.5 at 3e15): the state must
    advance by the step the time advanced, not by the step asked for. A nonzero step that
    rounds to nothing becomes one ulp (the error test then decides). A rounding below
    ``2**-30`` of the step (any t below ~1e6 h) keeps ``h`` itself: the state then matches
    scipy's and torchdiffeq's, and earlier gqlib's, bit for bit (near the stability limit the
    controller's accept/reject sequence, hence NFE, would change with the last bit).
    Returns ``(h, landing)``.
    """
    t1 = t0 + h
    if t1 == t0 and h != 0.0:
        t1 = float(np.nextafter(t0, h * np.inf))
    if (t1 - target) * remaining >= 0.0:  # rounded onto (or past) the target: land on it
        return remaining, True
    h_eff = t1 - t0
    if abs(h_eff - h) <= _TIME_ROUNDING_SLACK * abs(h):
        return h, False  # a rounding far below any tolerance: y advances by h bit for bit
    return h_eff, False


@jit
def pi_propose(h_ctrl, t0, target, d):
    """The attempted step ``(h, landing)``: ``|h_ctrl|`` from ``t0`` towards ``target`` (as
    :func:`_effective_step` rounds it), or exactly ``target - t0`` when the step would reach or
    stop just short of it."""
    remaining = target - t0
    habs = abs(h_ctrl)
    if habs >= abs(remaining) * (1.0 - _LANDING_SLACK):
        return remaining, True
    return _effective_step(t0, d * habs, target, remaining)


@jit
def _spacing(t, h):
    """The float spacing at ``t`` in the direction of ``h``: the smallest step ``t`` can take."""
    return abs(np.nextafter(t, np.inf if h >= 0.0 else -np.inf) - t)


@jit
def pi_decide(err, h, h_ctrl, landing, t0, err_prev, after_reject, n_bad, safety, min_factor,
              max_factor, min_accept_factor, beta1, beta2, min_step, max_step, error_order,
              target):
    """Accept when ``err <= 1`` (and ``h != 0``); the next ``|h|`` from :func:`pi_factor`, at
    least ``min_accept_factor`` times ``|h|`` after an accepted step, clamped to
    ``[min_step, max_step]``.

    The float resolution of t. Where the next landing point ``target`` is at most
    :data:`RESOLUTION_SPAN` float spacings of ``t0`` away, the time grid itself limits the step:
    a step of one spacing (the smallest step t can take; :func:`_effective_step` rounds any
    smaller one up to it) is accepted when the controller's ideal step ``|h| err^(-1/(q+1))``
    (q the error order) is at least :data:`RESOLUTION_FRACTION` of it, i.e.
    ``err <= 2**(q+1)``, and y advances by exactly that step; a one-spacing step that fails
    this is a step size underflow. At 2e15 (spacing 0.25) dopri5 on ``y' = -y`` over
    ``[2e15, 2e15 + 1]`` takes four steps with err = 8.6 each, while bosh3 at 3e15 (spacing
    0.5, err = 12891) fails. The span is kept to a few spacings so that such steps, each up to
    ``2**(q+1)`` times the tolerance, cannot add up unseen (hundreds of them lost two digits on
    an oscillator at 2e15). Within it a rejected step shrinks by at least one spacing (else
    rounding ``t0 + h`` could bring back the same step forever). Farther from the landing point
    a step below 10 spacings is a step size underflow at once (scipy's rule): there the solution
    varies faster than the time grid resolves (a singularity), and steps of single spacings
    would only spin.

    A clipped landing step does not shrink the controller's step unless the error asks for it.
    ``n_bad`` counts consecutive rejections with a NaN/inf error; the solve gives up after
    :data:`NON_FINITE_RETRIES` of them, or at once when the step itself is not finite.
    Returns ``(accept, status, h_next, err_prev, after_reject, n_bad)`` (the new memory);
    ``status`` is not OK only on a rejection the step cannot recover from.
    """
    spacing = _spacing(t0, h)
    near = abs(target - t0) <= RESOLUTION_SPAN * spacing
    at_resolution = h != 0.0 and abs(h) <= spacing
    accept = h != 0.0 and (err <= 1.0 or (
        near and at_resolution and err <= RESOLUTION_FRACTION ** (-(error_order + 1.0))))
    factor = pi_factor(err, err_prev, safety, min_factor, max_factor, beta1, beta2,
                       after_reject or not accept)
    if accept and factor < min_accept_factor:
        factor = min_accept_factor  # 1: no shrinking after an accepted step (torchdiffeq, diffrax)
    hnew = abs(h) * factor
    if accept:
        err_prev = _pymax(err, ERR_PREV_INIT)
        after_reject = False
        if landing and factor >= 1.0:
            hnew = _pymax(hnew, abs(h_ctrl))
    else:
        after_reject = True
        if near and not at_resolution:  # rounding t0 + hnew must not give back the same step
            hnew = _pymin(hnew, abs(h) - spacing)
    hnew = clamp_step(hnew, min_step, max_step)
    status = STATUS_OK
    n_bad = 0 if math.isfinite(err) else n_bad + 1
    if not accept:
        tiny = 10 * spacing
        if not math.isfinite(hnew) or n_bad >= NON_FINITE_RETRIES:
            status = STATUS_NON_FINITE
        elif not math.isfinite(err) and (at_resolution or hnew < tiny):
            status = STATUS_NON_FINITE
        elif at_resolution or (hnew < tiny and not near):
            status = STATUS_STEP_TOO_SMALL
        elif min_step > 0 and hnew <= min_step and (abs(h) <= min_step
                                                     or abs(h_ctrl) <= min_step):
            # h_ctrl: h itself may exceed a clamped min_step by the rounding of t0 + h
            status = STATUS_BELOW_MIN_STEP
    return accept, status, hnew, err_prev, after_reject, n_bad


@jit
def constant_propose(step_size, t0, target):
    """``target - t0`` cut into :func:`substep_count` equal steps (the first as
    :func:`_effective_step` rounds it): ``(h, landing)``."""
    remaining = target - t0
    n = substep_count(abs(remaining), step_size)
    if n == 1:
        return remaining, True
    return _effective_step(t0, remaining / n, target, remaining)


@jit
def constant_decide(finite, h):
    """A fixed step is accepted when the new state is finite and ``t0 + h`` moved:
    ``(accept, status)``."""
    if h == 0.0:
        return False, STATUS_STEP_TOO_SMALL
    return finite, (STATUS_OK if finite else STATUS_NON_FINITE_FIXED)
