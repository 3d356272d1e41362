"""The host side of the jax adapter: the core's decisions as NumPy-only callbacks.

Every function here runs on the host inside ``jax.pure_callback`` and must never call into JAX
(a callback that does deadlocks: jax-ml/jax#24255). Each takes per-member scalars (and, for the
start, the output times); under ``jax.vmap`` the callbacks are called with
``vmap_method="broadcast_all"``, so every argument carries the batch's leading dimensions and
:func:`batched` loops over the members: each keeps its own step sequence.

The decisions themselves are the core's scalar kernels, run as plain Python
(:func:`gqlib._jit.plain`): :func:`~gqlib.integrate._policy.pi_propose`,
:func:`~gqlib.integrate._policy.pi_decide`, :func:`~gqlib.integrate._policy.initial_step_guess`,
:func:`~gqlib.integrate._policy.initial_step`, :func:`~gqlib.integrate._policy.next_target`,
:func:`~gqlib.integrate._policy.constant_propose`,
:func:`~gqlib.integrate._policy.constant_decide`, the node rules of :mod:`gqlib.adjoint._nodes`
and :func:`gqlib.gauss_legendre`.

Errors: a failed solve raises the core's exception (:func:`~gqlib.integrate._policy.status_error`,
with t and h) inside the callback. JAX re-raises it as a ``JaxRuntimeError`` whose message holds
the original's class name and text; the exception object itself is kept here
(:func:`remember`), tagged, so that :func:`gqlib.jax.reraise` and the adapter's own eager entry
points can raise the original class again.
"""

from __future__ import annotations

import itertools
import math
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .._jit import plain
from ..adjoint._collocation import collocation_panels
from ..adjoint._nodes import resolved_degree
from ..adjoint._quadrature import node_count, resolution_tolerances, shortfall, warn_short
from ..adjoint._solved import DRIFT_LIMIT
from ..adjoint._stiffness import stiff_message
from ..errors import GQLibError, GradientAccuracyWarning, TooManySteps
from ..integrate._policy import (
    ERR_PREV_INIT,
    STATUS_OK,
    STATUS_TOO_MANY_STEPS,
    check_times,
    clamp_step,
    constant_decide,
    constant_propose,
    first_step_status,
    initial_step,
    initial_step_guess,
    next_target,
    pi_decide,
    pi_propose,
    status_error,
)
from ..quadrature import gauss_legendre

_pi_propose, _pi_decide = plain(pi_propose), plain(pi_decide)
_constant_propose, _constant_decide = plain(constant_propose), plain(constant_decide)
_initial_step_guess, _initial_step = plain(initial_step_guess), plain(initial_step)
_next_target, _clamp, _first_status = plain(next_target), plain(clamp_step), plain(first_step_status)
_NO_STOPS = np.zeros(0)

# -- errors ------------------------------------------------------------------------------------
_ERRORS: OrderedDict[str, BaseException] = OrderedDict()
_LOCK = threading.Lock()
_COUNTER = itertools.count(1)
_KEEP = 64


def remember(exc: BaseException) -> BaseException:
    """Keep ``exc`` (raised in a callback) under a tag written into its message."""
    tag = f"[gqlib.jax error {next(_COUNTER)}]"
    original = exc.args
    exc.args = (f"{exc.args[0] if exc.args else ''} {tag}", *exc.args[1:])
    with _LOCK:
        _ERRORS[tag] = (exc, original)
        while len(_ERRORS) > _KEEP:
            _ERRORS.popitem(last=False)
    return exc


def recall(runtime_error: BaseException) -> BaseException | None:
    """The exception a callback raised, from the text of the error JAX raised instead."""
    text = str(runtime_error)
    with _LOCK:
        for tag in reversed(_ERRORS):
            if tag in text:
                exc, original = _ERRORS.pop(tag)
                exc.args = original  # the message without the tag
                return exc
    return None


def _fail(exc: BaseException):
    raise remember(exc)


# -- batching ----------------------------------------------------------------------------------
def batched(fn, core_ndims, out_dtypes, out_shapes=None):
    """A callback looping ``fn`` (one member's values in, a tuple out) over leading batch dims.

    ``core_ndims[i]`` is the number of trailing dims of argument i that belong to one member;
    output i has shape ``out_shapes[i]`` per member (default scalars).
    """
    out_shapes = out_shapes or [()] * len(out_dtypes)
    def callback(*args):
        arrs = [np.asarray(a) for a in args]
        batch = ()
        for a, nd in zip(arrs, core_ndims, strict=True):
            shape = a.shape[: a.ndim - nd]
            if len(shape) > len(batch):
                batch = shape
        arrs = [np.broadcast_to(a, batch + a.shape[a.ndim - nd:])
                for a, nd in zip(arrs, core_ndims, strict=True)]
        n = int(np.prod(batch)) if batch else 1
        flat = [a.reshape((n,) + a.shape[len(batch):]) for a in arrs]
        outs = [np.empty((n, *sh), dtype=dt) for dt, sh in zip(out_dtypes, out_shapes,
                                                                 strict=True)]
        for m in range(n):
            res = fn(*[f[m] if f.ndim > 1 else f[m].item() for f in flat])
            for o, r in zip(outs, res, strict=True):
                o[m] = r
        return tuple(o.reshape(batch + o.shape[1:]) for o in outs)
    return callback


# -- the controller's settings -------------------------------------------------------------------
@dataclass(frozen=True)
class Decisions:
    """The settings every decision of one solve needs (hashable: part of the jit cache key).

    ``controller`` is the core's controller, started for the method (``None`` in fixed-step
    mode); ``error_order`` the method's.
    """

    controller: object
    step_size: float | None
    error_order: int | None
    first_step: float | None
    max_steps: int
    check_t: bool  # the output times were traced: validate them on the host
    # prefixed to a failure's message: which solve failed ("the backward solve of GQAdjoint");
    # empty for the forward
    context: str = ""

    def _error(self, status, **kw):
        exc = status_error(status, **kw)
        if not self.context:
            return exc
        return type(exc)(f"{self.context} failed: {exc.args[0]}", t=exc.t, h=exc.h)

    @property
    def err_prev0(self) -> float:
        """The PI controller's memory before the first step."""
        return ERR_PREV_INIT

    # -- start ---------------------------------------------------------------------------------
    def start_guess(self, active, t_out, d0, d1):
        """The first guess h0 (Hairer's rule), after checking the times if they were traced."""
        if not active:
            return (0.0,)
        if self.check_t:
            try:
                check_times(np.asarray(t_out, dtype=np.float64))
            except (TypeError, ValueError) as exc:
                _fail(exc)
        span = abs(float(t_out[-1]) - float(t_out[0]))
        if self.step_size is not None or self.first_step is not None:
            return (0.0,)
        return (_initial_step_guess(d0, d1, span, math.inf),)

    def start_step(self, active, t0, t_end, target, h0, d1, df):
        """The first step's controller size and the first attempt ``(h_ctrl, h, landing)``."""
        if not active:
            return 0.0, 0.0, True
        d = 1.0 if t_end >= t0 else -1.0
        target, _, _ = _next_target(t0, target, t_end, d, _NO_STOPS, 0)
        if self.step_size is not None:
            h, landing = _constant_propose(self.step_size, t0, target)
            return self.step_size, h, landing
        span = abs(t_end - t0)
        if self.first_step is not None:
            h = self.first_step
        else:
            h = _initial_step(h0, d1, df, span, self.error_order) if span > 0 else 0.0
        c = self.controller
        h = _clamp(abs(h), c.min_step, c.max_step)
        status = _first_status(h)
        if status != STATUS_OK:
            _fail(self._error(status, t=t0, h=h))
        hs, landing = _pi_propose(h, t0, target, d)
        return d * h, hs, landing

    # -- one attempt ---------------------------------------------------------------------------
    def step(self, active, err, h, h_ctrl, landing, t0, t1, t_end, target_acc, target_rej,
             n_steps, err_prev, after_reject, n_bad):
        """Decide on the attempt just made and propose the next one.

        Returns ``(accept, h_ctrl, err_prev, after_reject, n_bad, h_next, landing_next)``.
        """
        if not active:
            return False, h_ctrl, err_prev, after_reject, n_bad, 0.0, True
        d = 1.0 if t_end >= t0 else -1.0
        c = self.controller
        if c is None:
            accept, status = _constant_decide(err == 0.0, h)
            if status != STATUS_OK:
                _fail(self._error(status, t=t0, h=h))
        else:
            accept, status, hnew, err_prev, after_reject, n_bad = _pi_decide(
                err, h, h_ctrl, landing, t0, err_prev, after_reject, n_bad, c.safety,
                c.min_factor, c.max_factor, c.min_accept_factor, c.beta1, c.beta2, c.min_step,
                c.max_step,
                c.error_order, target_rej)  # the attempt's landing point
            h_ctrl = d * hnew
            if status != STATUS_OK:
                _fail(self._error(status, t=t0, h=hnew, min_step=c.min_step))
        t_new, target = (t1, target_acc) if accept else (t0, target_rej)
        if accept and t_new == t_end:
            return accept, h_ctrl, err_prev, after_reject, n_bad, 0.0, True
        if n_steps + 1 > self.max_steps:  # the next attempt would be one too many
            _fail(self._error(STATUS_TOO_MANY_STEPS, t=t_new, h=h_ctrl,
                               max_steps=self.max_steps))
        target, _, _ = _next_target(t_new, target, t_end, d, _NO_STOPS, 0)
        if c is None:
            h_next, landing_next = _constant_propose(self.step_size, t_new, target)
        else:
            h_next, landing_next = _pi_propose(h_ctrl, t_new, target, d)
        return accept, h_ctrl, err_prev, after_reject, n_bad, h_next, landing_next


def fail_non_finite(what: str):
    """A callback raising NonFiniteState for an adjoint that became NaN/inf."""
    from ..errors import NonFiniteState

    def callback(active, t, h):
        a, tt, hh = (np.asarray(x).reshape(-1) for x in (active, t, h))
        for m in range(a.size):
            if a[m]:
                _fail(NonFiniteState(what, t=float(tt[m % tt.size]), h=float(hh[m % hh.size])))
        return np.zeros(np.shape(active), dtype=bool)
    return callback


def fail_cotangent(bad, i, t):
    """A callback raising the core's ValueError for a non-finite output cotangent (the loss's
    gradient dL/dys), naming the first bad row ``i`` and its time ``t``."""
    b, ii, tt = (np.asarray(x).reshape(-1) for x in (bad, i, t))
    for m in range(b.size):
        if b[m]:
            _fail(ValueError(
                f"the cotangent of odeint's outputs (dL/dys, from the loss) must be finite; "
                f"row {int(ii[m % ii.size])} (t = {float(tt[m % tt.size])!r}) holds NaN or inf "
                "(check the loss)"))
    return np.zeros(np.shape(bad), dtype=bool)


class Panels:
    """The host side of the quadrature: a panel's node count (0: split it), its rule, and for
    rules without error control (paper, fixed) the worst shortfall so far (the core's
    :func:`~gqlib.adjoint._quadrature.shortfall`), encoded as ``(nodes, needed, t)`` with
    nodes 0 for none and needed -1 for "not resolved at any degree sampled"."""

    def __init__(self, rule, rtol, atol, eps):
        self.rule = rule
        self.tols = resolution_tolerances(rtol, atol, eps)
        self.check_tols = resolution_tolerances(rtol, atol, eps, 1.0)
        self.max_nodes = rule.max_nodes

    def __call__(self, active, a, b, depth, samples, span, nfe_forward, s_n, s_need, s_t):
        xr = np.zeros(self.max_nodes)
        wr = np.zeros(self.max_nodes)
        if not active:
            return 0, xr, wr, s_n, s_need, s_t
        samples = np.asarray(samples, dtype=np.float64)
        need = None
        if self.rule.nodes == "adaptive":
            need = resolved_degree(np, samples, *self.tols)
        n = node_count(self.rule, b - a, depth, span=abs(span), nfe_forward=nfe_forward,
                       need=need)
        if n is None:
            return 0, xr, wr, s_n, s_need, s_t
        if self.rule.nodes != "adaptive":
            short = None if s_n == 0 else (s_n, None if s_need < 0 else s_need, s_t)
            short = shortfall(short, n, resolved_degree(np, samples, *self.check_tols),
                              0.5 * (a + b))
            if short is not None:
                s_n, s_need, s_t = short[0], -1 if short[1] is None else short[1], short[2]
        x, w = gauss_legendre(n)
        xr[:n], wr[:n] = x, w
        return n, xr, wr, s_n, s_need, s_t


class CollocationPanels:
    """The host side of the collocation adjoint: panel ``j`` of the output interval from ``s``
    to ``e`` (the core's :func:`~gqlib.adjoint._collocation.collocation_panels` on the forward's
    accepted steps), as ``(start, end, last)``; raises the core's TooManySteps past
    ``max_panels`` panels in all."""

    def __init__(self, max_panel, max_panels):
        self.max_panel, self.max_panels = max_panel, max_panels

    def __call__(self, active, s, e, j, ck_t0, ck_t1, n_acc, n_panels):
        if not active:
            return 0.0, 0.0, True
        n_acc = int(n_acc)
        ends = np.concatenate([np.asarray(ck_t0[:n_acc], dtype=np.float64),
                               [float(ck_t1[n_acc - 1])]])
        panels = collocation_panels(float(s), float(e), ends, _NO_STOPS, self.max_panel)
        p, q = panels[int(j)]
        if n_panels + 1 > self.max_panels:
            _fail(TooManySteps(f"more than max_panels = {self.max_panels} collocation panels",
                               t=float(p), h=float(q - p)))
        return p, q, int(j) + 1 == len(panels)


def short_rule_warning(rule, who: str):
    """A host callback: the core's warning for a node rule that under-resolved a panel."""
    def callback(s_n, s_need, s_t):
        s_n, s_need, s_t = (np.asarray(x).reshape(-1) for x in (s_n, s_need, s_t))
        for m in range(s_n.size):
            if s_n[m] > 0:
                need = None if s_need[m % s_need.size] < 0 else int(s_need[m % s_need.size])
                warn_short(rule, (int(s_n[m]), need, float(s_t[m % s_t.size])), who,
                           stacklevel=2)
        return np.asarray(False)
    return callback


def warn_drift(strategy, fixed: bool):
    """A host callback: the core's drift warning for the largest drift of the pass."""
    def callback(drift, at):
        drift, at = np.asarray(drift).reshape(-1), np.asarray(at).reshape(-1)
        for m in range(drift.size):
            x = float(drift[m])
            if not (x > DRIFT_LIMIT or np.isnan(x)) or (strategy.checkpoints and fixed):
                continue
            mode = ("with step checkpoints" if strategy.checkpoints else
                    "with restarts at the output times only (checkpoints=False)")
            remedy = ("pass checkpoints=True (the default; O(steps x D) memory), " if not
                      strategy.checkpoints else "")
            warnings.warn(
                f"{type(strategy).__name__}: the backward re-integration of y drifted {x:.3g} "
                f"tolerance units from the forward solution ({mode}; largest at t = "
                f"{float(at[m % at.size])!r}, limit {DRIFT_LIMIT:g}): the parameter gradient "
                f"may be inaccurate (dissipative or chaotic dynamics). Remedy: {remedy}use "
                "InterpolatedAdjoint or CheckpointAdjoint, which do not re-integrate y, or "
                "tighten rtol/atol", GradientAccuracyWarning, stacklevel=2)
        return np.asarray(False)
    return callback


JAX_REMEDY = ("adjoint='interpolated' or 'collocation' (continuous adjoints), or "
              "CheckpointAdjoint(stiff_fallback=InterpolatedAdjoint()) (in gqlib.jax 'auto' "
              "does not set it: it costs compile time and memory on every backward pass)")


def stiff_warning(method: str):
    """A host callback: the core's warning (:func:`~gqlib.adjoint._stiffness.stiff_message`) for
    a checkpoint backward pass whose stiffness growth is past the limit (``over``)."""
    def callback(over, growth, k0, k1, t_first, t_last):
        over, growth, k0, k1, t_first, t_last = (
            np.asarray(x).reshape(-1) for x in (over, growth, k0, k1, t_first, t_last))
        for m in range(over.size):
            if over[m]:
                at = [float(x[m % x.size]) for x in (growth, t_first, t_last)]
                warnings.warn(stiff_message(method, at[1], at[2], int(k0[m % k0.size]),
                                            int(k1[m % k1.size]), at[0], remedy=JAX_REMEDY),
                              GradientAccuracyWarning, stacklevel=2)
        return np.asarray(False)
    return callback


def overflow_error(what):
    def callback(flag, t):
        flag, t = np.asarray(flag).reshape(-1), np.asarray(t).reshape(-1)
        for m in range(flag.size):
            if flag[m]:
                raise remember(TooManySteps(what, t=float(t[m % t.size]), h=float("nan")))
        return np.asarray(False)
    return callback


__all__ = ["Decisions", "Panels", "CollocationPanels", "batched", "remember", "recall",
           "fail_non_finite", "fail_cotangent",
           "warn_drift", "stiff_warning", "overflow_error", "short_rule_warning", "GQLibError"]
