"""Adjoints that solve a backward ODE: GQ, backsolve (+ seminorm) and interpolated.

One :class:`~gqlib.integrate.Stepper` runs the whole backward pass and keeps its step size across
the jumps at output times. The strategies differ in the backward state and its right-hand side:

* :class:`GQAdjoint` (Norcliffe & Deisenroth 2023): ``[y, a]`` (2D); ``dL/dtheta`` by
  Gauss-Legendre quadrature at nodes read from the backward interpolant.
* :class:`BacksolveAdjoint` (Chen et al. 2018): ``[y, a, g]`` (2D + P) with
  ``g' = -a^T df/dtheta``; ``seminorm=True`` leaves ``g`` out of error control (Kidger, Chen &
  Lyons 2021).
* :class:`InterpolatedAdjoint`: ``a`` (D), y from the forward dense output; quadrature as GQ.

**Stability.** Re-integrating y backwards (gq, backsolve) amplifies errors like
``exp(|lambda| T)`` on dissipative dynamics. With ``checkpoints=True`` (default) y restarts from
the forward state at every accepted forward step, so it never drifts further than one step. With
``checkpoints=False`` (the paper's O(D + P) memory) y restarts only at output times. In both modes
the drift ``rms((y_back - y_fwd) / (atol + rtol |y_fwd|))`` (the looser of the forward and backward
tolerances) is measured at every restart, and past :data:`DRIFT_LIMIT` a
:class:`~gqlib.errors.GradientAccuracyWarning` gives it, where, and the remedy; except for fixed
steps with step checkpoints, where the drift is one step's truncation error, which the
tolerances do not set.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .._backend import namespace, to_host, to_host_float
from ..errors import GQLibError, GradientAccuracyWarning, TooManySteps
from ..integrate._norms import resolve_norm
from ..integrate._policy import substep_count
from ..integrate._stepper import Stepper
from ._quadrature import NodeRule, ParameterQuadrature
from ._strategy import AdjointGradient, SolverSettings, _check_bool

__all__ = ["GQAdjoint", "BacksolveAdjoint", "InterpolatedAdjoint", "DRIFT_LIMIT",
           "REINTEGRATION_BUDGET"]

# Drift of the re-integrated y, in units of the tolerance, past which the parameter gradient is
# no longer trusted. Measured on the trust suite (tests/adjoint_trust.py, rtol 1e-5..1e-7, every
# strategy and mode): the relative gradient error is about 0.1 rtol * drift; benign problems
# (Lotka-Volterra, tanh MLP, Van der Pol mu = 1, linear lambda <= 10) reach at most 79 (backsolve
# without checkpoints), every gradient error above the suite's bound came with drift >= 1.5e3.
DRIFT_LIMIT = 200.0

# A backward solve that re-integrates y (gq, backsolve) takes at most this many times the
# forward's step attempts, plus REINTEGRATION_SLACK: past it y has left the forward trajectory
# and the solve crawls on ever shorter steps (Lorenz to t = 5 with checkpoints=False: t = 2.85
# after 100,000 attempts, |y| 5.6e4 against the forward's 48; torch's backward max_steps is
# torchdiffeq's 2**31 - 1, so it ran for minutes). Measured on the adjoint and torch test files
# (365 backward solves): at most 9.3x the forward's attempts (checkpoints=False), 5x with them.
REINTEGRATION_BUDGET = 20
REINTEGRATION_SLACK = 1000


@dataclass(frozen=True, kw_only=True)
class _Solved(SolverSettings):
    """A strategy with a backward solver (settings in :class:`SolverSettings`)."""

    carries_y: ClassVar[bool] = False  # y re-integrated in the backward state
    checkpoints: ClassVar[bool] = False

    def quadrature_rule(self) -> NodeRule | None:
        return None

    def backward(self, cf, sol, grad_y, xp, t_np, *, grad_t: bool) -> AdjointGradient:
        return _SolvedPass(self, cf, sol, grad_y, xp, t_np, grad_t=grad_t).run()


@dataclass(frozen=True, kw_only=True)
class _Reintegrating(_Solved):
    """A backward solve that re-integrates y, restarted from the forward's step checkpoints."""

    carries_y: ClassVar[bool] = True
    checkpoints: bool = True

    def __post_init__(self):
        super().__post_init__()
        _check_bool(self.checkpoints, "checkpoints")

    @property
    def forward_record(self):
        return "checkpoints" if self.checkpoints else None

    def _without_checkpoints_hint(self) -> str:
        return (f", or pass {type(self).__name__}(checkpoints=False) for O(D + P) memory (the "
                "drift of the re-integrated y is then measured and warned about)")


@dataclass(frozen=True, kw_only=True)
class _Quadrature:
    """The node settings of :class:`NodeRule`, as a strategy's own fields."""

    nodes: str | int = "adaptive"
    gtol: float = 0.1
    extra_nodes: int = 0
    max_nodes: int = 64

    def quadrature_rule(self) -> NodeRule:
        return NodeRule(self.nodes, self.gtol, self.extra_nodes, self.max_nodes)

    def interpolant_methods(self, forward_method: str) -> tuple[str, ...]:
        # the nodes read the backward solver's interpolant
        return (self.method if self.method is not None else forward_method,)


@dataclass(frozen=True, kw_only=True)
class GQAdjoint(_Quadrature, _Reintegrating):
    """Gauss-Legendre quadrature adjoint (Norcliffe & Deisenroth 2023).

    Solves ``[y, a]`` backwards (2D) and takes ``dL/dtheta`` by Gauss-Legendre quadrature of
    ``a^T df/dtheta`` at nodes read from the backward interpolant. Memory ``O(S D + D + P)`` with
    step checkpoints (S forward steps), ``O(D + P)`` without.

    Parameters
    ----------
    checkpoints : bool
        Restart y from the forward state at every forward step (default); False restarts only at
        output times and warns when y drifts.
    nodes, gtol, extra_nodes, max_nodes
        The node rule (:class:`gqlib.adjoint.NodeRule`).
    method, rtol, atol, ...
        The backward solve (:class:`SolverSettings`); default the forward's.
    """

    name: ClassVar[str] = "gq"

    def __post_init__(self):
        _Reintegrating.__post_init__(self)
        self.quadrature_rule()

    def state_blocks(self, D: int, P: int) -> dict[str, slice]:
        return {"y": slice(0, D), "a": slice(D, 2 * D)}


@dataclass(frozen=True, kw_only=True)
class InterpolatedAdjoint(_Quadrature, _Solved):
    """y from the forward dense output, only ``a`` solved backwards (D); quadrature as GQ.

    Stable where re-integrating y is not (dissipative dynamics). Memory ``O(S s D + P)``.
    """

    name: ClassVar[str] = "interpolated"

    def __post_init__(self):
        SolverSettings.__post_init__(self)
        self.quadrature_rule()

    @property
    def forward_record(self):
        return "dense"

    def interpolant_methods(self, forward_method: str) -> tuple[str, ...]:
        # y from the forward's dense output, a from the backward solver's
        return (forward_method, *_Quadrature.interpolant_methods(self, forward_method))

    def state_blocks(self, D: int, P: int) -> dict[str, slice]:
        return {"a": slice(0, D)}


@dataclass(frozen=True, kw_only=True)
class BacksolveAdjoint(_Reintegrating):
    """The augmented backward solve ``[y, a, g]`` (2D + P), ``g' = -a^T df/dtheta``
    (Chen et al. 2018).

    Parameters
    ----------
    seminorm : bool
        Leave ``g`` out of the error norm (Kidger, Chen & Lyons 2021).
    checkpoints : bool
        As in :class:`GQAdjoint`.
    """

    name: ClassVar[str] = "backsolve"
    seminorm: bool = False

    def __post_init__(self):
        super().__post_init__()
        _check_bool(self.seminorm, "seminorm")
        if self.seminorm and self.norm is not None:
            raise ValueError("give `seminorm=True` or a `norm`, not both")

    def state_blocks(self, D: int, P: int) -> dict[str, slice]:
        blocks = {"y": slice(0, D), "a": slice(D, 2 * D)}
        if P:
            blocks["params"] = slice(2 * D, 2 * D + P)
        return blocks


class _SolvedPass:
    """One backward pass of a :class:`_Solved` strategy (flat backward state)."""

    def __init__(self, strategy: _Solved, cf, sol, grad_y, xp, t_np, *, grad_t: bool):
        self.s, self.cf, self.sol, self.g, self.xp, self.t = strategy, cf, sol, grad_y, xp, t_np
        # solve for a / scale (:func:`cotangent_scale`), the results scaled back in run()
        self.scale = cotangent_scale(xp, grad_y)
        if self.scale != 1.0:
            self.g = grad_y / self.scale
        self.grad_t = grad_t
        self.settings = strategy.resolve(sol)
        self.shape = tuple(sol.y.shape[1:])
        self.D = int(np.prod(self.shape)) if self.shape else 1
        self.rtol, self.atol = self.settings["rtol"], self.settings["atol"]
        self.with_g = isinstance(strategy, BacksolveAdjoint) and cf.has_params
        rule = strategy.quadrature_rule()
        self.quadrature = None
        if rule is not None and cf.has_params:
            self.quadrature = ParameterQuadrature(
                rule, cf, xp, rtol=self.rtol, atol=self.atol, span=float(t_np[-1] - t_np[0]),
                nfe_forward=int(sol.stats.get("nfe", 0)), tstops=sol.tstops, D=self.D,
                shape=self.shape, y_source=None if strategy.carries_y else sol.dense)
        self.max_drift, self.drift_at = 0.0, float(t_np[-1])
        self._drifts, self._drift_times = [], []  # device scalars, moved to the host once
        # drift in units of the looser of the two tolerances: the forward checkpoints are only
        # as accurate as the forward solve
        opts = sol.options
        self.drift_rtol = max(self.rtol, _loosest(opts.get("rtol", self.rtol)))
        self.drift_atol = max(self.atol, _loosest(opts.get("atol", self.atol)))

    # -- state layout and right-hand sides ------------------------------------------------------
    def flat(self, x):
        return self.xp.reshape(x, (-1,))

    def unflat(self, v):
        return self.xp.reshape(v, self.shape)

    def blocks(self, P: int) -> dict[str, slice]:
        return self.s.state_blocks(self.D, P)

    def rhs(self, t, z):
        D, xp = self.D, self.xp
        if not self.s.carries_y:
            y = self.sol.dense(t)
            return -self.flat(self.cf.vjp_y(t, y, self.unflat(z)))
        y, a = self.unflat(z[:D]), self.unflat(z[D:2 * D])
        if self.with_g:
            fy, vy, vp = self.cf.f_vjp(t, y, a)
            return xp.concat([self.flat(fy), -self.flat(vy), -self.flat(vp)])
        fy, vy = self.cf.f_vjp_y(t, y, a)
        return xp.concat([self.flat(fy), -self.flat(vy)])

    def norm(self, P: int):
        """The backward norm: given, the seminorm, or the forward norm on each y-shaped block."""
        rms = resolve_norm("rms")
        if getattr(self.s, "seminorm", False):
            D2 = 2 * self.D
            return lambda e: rms(e[:D2])
        if self.s.norm is not None:
            return resolve_norm(self.s.norm)
        inherited = self.sol.options.get("norm", "rms")
        if not callable(inherited):
            return resolve_norm(inherited)
        xp = self.xp
        state = [b for k, b in self.blocks(P).items() if k != "params"]
        extra = self.blocks(P).get("params")

        def blockwise(e):  # the forward norm was written for y's shape
            out = None
            for b in state:
                v = inherited(self.unflat(e[b]))
                out = v if out is None else xp.maximum(out, v)
            if extra is not None:
                out = xp.maximum(out, rms(e[extra]))
            return out
        return blockwise

    # -- drift of the re-integrated y ------------------------------------------------------------
    def restart(self, stepper, y_ref, t: float, a_new=None):
        """Put the forward state ``y_ref`` (and the adjoint ``a_new``) into the backward state,
        measuring how far the re-integrated y had drifted from it."""
        xp, D, z = self.xp, self.D, stepper.y
        if not self.s.carries_y:
            stepper.reset(self.flat(a_new))
            return
        y_ref = self.flat(y_ref)
        self.jump = y_ref - z[:D]
        scaled = (z[:D] - y_ref) / (self.drift_atol + self.drift_rtol * xp.abs(y_ref))
        self._drifts.append(xp.sqrt(xp.mean(scaled * scaled)))
        self._drift_times.append(t)
        parts = [y_ref, z[D:2 * D] if a_new is None else self.flat(a_new)]
        if z.shape[0] > 2 * D:
            parts.append(z[2 * D:])
        stepper.reset(xp.concat(parts))

    def collect_drift(self):
        """The largest drift and where (one device-to-host transfer for the whole pass)."""
        if not self._drifts:
            return
        drifts = to_host(self.xp.stack(self._drifts), np.float64)
        i = int(np.argmax(np.where(np.isnan(drifts), np.inf, drifts)))  # NaN counts as worst
        self.max_drift, self.drift_at = float(drifts[i]), self._drift_times[i]

    def warn_drift(self):
        self.collect_drift()
        if not self.max_drift > DRIFT_LIMIT and not np.isnan(self.max_drift):
            return
        if self.s.checkpoints and self.settings["step_size"] is not None:
            # fixed steps restarted at every forward step: the drift is one step's truncation
            # error, the size of the forward's own error, and rtol/atol do not set it
            return
        mode = ("with step checkpoints" if self.s.checkpoints else
                "with restarts at the output times only (checkpoints=False)")
        remedy = ("pass checkpoints=True (the default; O(steps x D) memory), " if not
                  self.s.checkpoints else "")
        warnings.warn(
            f"{type(self.s).__name__}: the backward re-integration of y drifted "
            f"{self.max_drift:.3g} tolerance units from the forward solution ({mode}; largest "
            f"at t = {self.drift_at!r}, limit {DRIFT_LIMIT:g}): the parameter gradient may be "
            f"inaccurate (dissipative or chaotic dynamics). Remedy: {remedy}use "
            "InterpolatedAdjoint or CheckpointAdjoint, which do not re-integrate y, or tighten "
            "rtol/atol", GradientAccuracyWarning, stacklevel=4)

    # -- the pass ------------------------------------------------------------------------------
    def inner_checkpoints(self, t_hi: float, t_lo: float):
        """Indices of the forward step boundaries strictly inside (t_lo, t_hi), backwards."""
        ck = self.sol.checkpoints
        if not self.s.checkpoints or not self.s.carries_y or ck is None:
            return []
        d = 1.0 if t_hi > t_lo else -1.0
        idx = np.flatnonzero((d * ck.t > d * t_lo) & (d * ck.t < d * t_hi))
        return idx[::-1].tolist()

    def check_fixed_backward(self):
        """A fixed-step backward solve has no error estimate: warn when its steps are longer
        than the adaptive forward's steps over the same interval, which error control or
        stability kept short (the adjoint equation has the same Jacobian)."""
        ck = self.sol.checkpoints
        h = self.settings["step_size"]
        if h is None or ck is None or self.sol.options.get("step_size") is not None:
            return
        fwd_steps = np.abs(np.diff(ck.t))
        worst = None
        for lo, hi in zip(self.t[:-1], self.t[1:], strict=True):
            span = abs(float(hi - lo))
            h_back = span / substep_count.py_func(span, h)
            inside = (np.minimum(ck.t[:-1], ck.t[1:]) < max(lo, hi)) & \
                (np.maximum(ck.t[:-1], ck.t[1:]) > min(lo, hi))
            h_fwd = float(fwd_steps[inside].max()) if inside.any() else span
            if h_back > h_fwd * (1 + 1e-9) and (worst is None or h_back / h_fwd > worst[0]):
                worst = (h_back / h_fwd, float(lo), h_back, h_fwd)
        if worst is not None:
            ratio, at, h_back, h_fwd = worst
            warnings.warn(
                f"{type(self.s).__name__}: the fixed-step backward solve takes steps of {h_back:.3g}"
                f" near t = {at!r}, {ratio:.3g}x the adaptive forward's longest step there "
                f"({h_fwd:.3g}); with no error estimate the adjoint may be inaccurate or unstable."
                " Remedy: an adaptive backward method, a smaller step_size, or CheckpointAdjoint",
                GradientAccuracyWarning, stacklevel=4)

    def run(self) -> AdjointGradient:
        xp, cf, t, g, ys = self.xp, self.cf, self.t, self.g, self.sol.y
        N = len(t) - 1  # >= 1: gradient() answers a single output time itself
        self.check_fixed_backward()
        dldt = [None] * (N + 1)
        parts = [] if not self.s.carries_y else [self.flat(ys[N])]
        parts.append(self.flat(g[N]))
        P = 0
        if self.with_g:
            p0 = cf.vjp_params(float(t[N]), ys[N], g[N]) * 0.0  # learns P; counted
            P = int(p0.shape[0])
            parts.append(self.flat(p0))
        z0 = parts[0] if len(parts) == 1 else xp.concat(parts)
        st = self.settings
        a_slice = self.blocks(P)["a"]
        max_steps, self.budget = st["max_steps"], None
        n_forward = int(self.sol.stats.get("n_steps", 0) or 0)
        if self.s.carries_y and n_forward:
            budget = REINTEGRATION_BUDGET * n_forward + REINTEGRATION_SLACK
            if budget < max_steps:
                max_steps, self.budget = budget, (budget, n_forward)
        observer = None
        if cf.observer is not None:
            def observer(event, t0, z, h):
                cf.observe(event, t0, self.unflat(z[a_slice]), h)
        stepper = Stepper(self.rhs, float(t[N]), z0, float(t[0]), st["tab"], norm=self.norm(P),
                          tstops=self.sol.tstops, rtol=st["rtol"], atol=st["atol"],
                          step_size=st["step_size"], first_step=st["first_step"],
                          max_steps=max_steps, controller=st["controller"],
                          min_step=st["min_step"], max_step=st["max_step"], observer=observer)
        if self.grad_t:
            dldt[N] = self.dot(g[N], self.f_at_output(stepper, N))
        params = None
        ck = self.sol.checkpoints
        for i in range(N, 0, -1):
            t_lo = float(t[i - 1])
            segments, shifts, shift = [], [], None  # shift: the restart jumps so far
            for k in [*self.inner_checkpoints(float(t[i]), t_lo), None]:
                target = t_lo if k is None else float(ck.t[k])
                while stepper.t != target:
                    seg = self.step(stepper, target)
                    if self.quadrature is not None:
                        _ = seg.Q  # now: a Hermite f(t1, y1) is then the next first stage
                        segments.append(seg)
                        shifts.append(shift)
                if k is not None:
                    self.restart(stepper, ck.y[k], target)
                    if self.quadrature is not None:
                        shift = self.jump if shift is None else shift + self.jump
            if self.quadrature is not None:
                params = self.quadrature.interval(segments, float(t[i]), t_lo, params, shifts)
            a_before = self.unflat(stepper.y[a_slice])
            if i - 1 == 0:
                if self.s.carries_y:
                    self.restart(stepper, ys[0], t_lo)  # measures the drift at t_0
                if self.grad_t:
                    dldt[0] = -self.dot(a_before, cf.f(t_lo, ys[0]))
                dy0 = a_before + g[0]
                if self.with_g:
                    params = stepper.y[2 * self.D:]
                break
            self.restart(stepper, ys[i - 1], t_lo, a_new=a_before + g[i - 1])
            if self.grad_t:
                dldt[i - 1] = self.dot(g[i - 1], self.f_at_output(stepper, i - 1))
        self.warn_drift()
        if self.quadrature is not None:
            params = self.quadrature.finish(params)
            self.quadrature.warn_short(type(self.s).__name__)
        c = self.scale
        if c != 1.0:
            dy0 = dy0 * c
            if params is not None:  # the pass's own P-sized accumulator: no second buffer
                params *= c
            dldt = [d * c for d in dldt] if self.grad_t else dldt
        return AdjointGradient(dy0, params, xp.stack(dldt) if self.grad_t else None,
                               self.stats(stepper))

    def step(self, stepper, target):
        """One backward step; a failure while re-integrating y names that as the likely cause."""
        try:
            return stepper.step(target)
        except GQLibError as exc:
            if not self.s.carries_y:
                raise
            what = f"failed: {exc.args[0]}"
            if isinstance(exc, TooManySteps) and self.budget is not None:
                what = (f"took more than {self.budget[0]} step attempts ({REINTEGRATION_BUDGET}x "
                        f"the forward's {self.budget[1]} + {REINTEGRATION_SLACK}) and reached "
                        f"t = {exc.t!r} with h = {exc.h:.3g}: y has left the forward trajectory")
            raise type(exc)(
                f"the backward solve of {type(self.s).__name__} {what}. "
                "The backward re-integration of y is unstable on dissipative or chaotic dynamics "
                + ("" if self.s.checkpoints else "and restarts only at output times here "
                   "(checkpoints=False); pass checkpoints=True, ")
                + "use InterpolatedAdjoint or CheckpointAdjoint, or tighten rtol/atol",
                t=exc.t, h=exc.h) from exc

    def dot(self, u, v):
        return self.xp.sum(u * v)

    def f_at_output(self, stepper, i):
        """f(t_i, y_i): free from the backward stepper's first stage when it carries y."""
        if not self.s.carries_y or float(self.t[i]) in self.sol.tstops:
            # (at a tstop the stepper's first stage is one-sided: dL/dt_i wants f at t_i)
            return self.cf.f(float(self.t[i]), self.sol.y[i])
        return self.unflat(stepper.current_f()[: self.D])

    def stats(self, stepper) -> dict:
        s = dict(self.cf.stats)
        q = self.quadrature
        s["n_nodes"] = 0 if q is None else q.n_nodes
        s["n_row_stacks"] = 0 if q is None or q.stack is None else q.stack.n_stacks
        s["n_panels"] = 0 if q is None else q.n_panels
        for key in ("n_accepted", "n_rejected", "n_steps"):
            s[key] = stepper.stats[key]
        s["state_size"] = int(stepper.y.shape[0])
        s["max_drift"] = self.max_drift
        s["seconds"] = dict(self.cf.seconds)
        return s


def cotangent_scale(xp, grad_y) -> float:
    """``max|dL/dy|`` on the host, 1 where that is zero (the gradient is zero) or not finite
    (checked elsewhere). The continuous passes are linear in the cotangents and test their
    adjoint ``a`` against tolerances as ``a / scale``: the backward atol then means the same
    whatever the loss's scale (a loss times 1e-8 left the interpolated adjoint's ``a`` under
    atol, 98 % off on Lotka-Volterra, silently)."""
    scale = to_host_float(xp.max(xp.abs(grad_y))) if math.prod(grad_y.shape) else 0.0
    return scale if 0.0 < scale < math.inf else 1.0


def _loosest(tol) -> float:
    """The largest entry of a scalar or per-element tolerance, as a host float."""
    if isinstance(tol, (int, float)):
        return float(tol)
    return to_host_float(namespace(tol).max(tol))
