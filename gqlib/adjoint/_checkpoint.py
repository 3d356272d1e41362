"""The discrete adjoint of the explicit Runge-Kutta step, from step checkpoints.

Each accepted forward step ``y1 = y0 + h sum_j b_j K_j``, ``K_j = f(tau_j, y0 + h sum_{l<j}
A_jl K_l)`` is recomputed from its checkpoint ``y0`` (one linearisation of the field per stage:
a forward pass kept for its backward pass) and its stages are back-propagated with the field's
VJPs, last stage first::

    Kbar_j = h b_j ybar_1 + (output terms),     Ybar_j = Kbar_j^T df/dy (tau_j, Y_j),
    Kbar_l += h A_jl Ybar_j  (l < j),            ybar_0 = ybar_1 + sum_j Ybar_j (+ output terms),
    thetabar += Kbar_j^T df/dtheta (tau_j, Y_j).

Outputs that the forward interpolated inside a step are differentiated through that step's
interpolant (the method's ``Q = K^T P``, or cubic Hermite), with the forward's stage times,
including the one-sided times at tstops. The result is the gradient of the computed discrete
solution, equal to direct backpropagation through the solver to round-off, with memory
``O(S D)`` for the checkpoints plus one step's stages (ACA, Zhuang et al. 2020; diffrax's
``RecursiveCheckpointAdjoint``). Step sizes are frozen (detached), as in direct backpropagation.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .._backend import detached, to_host_float
from ..errors import GradientAccuracyWarning, NondeterministicField, NonFiniteState
from ..integrate._segment import CountedRHS, RKCoefficients, Segment, combine
from ..interpolate import DenseOutput
from ..tableaux import get_method
from ._field import _Counted
from ._rows import RowStack, stack_rows_for
from ._solved import _loosest
from ._stiffness import (
    AGREE_RTOLS,
    STIFF_CHECK_FROM,
    STIFF_GROWTH_LIMIT,
    StiffnessMonitor,
    disagree_message,
    stiff_message,
)
from ._strategy import AdjointGradient, AdjointStrategy

__all__ = ["CheckpointAdjoint", "RECOMPUTE_LIMIT"]

# How far, in units of eps (max|y0| + max|y1 - y0|), a recomputed step may end from the
# forward's end state before the field is taken to be non-deterministic. Measured: at most 18.5
# over 10,628 steps of the adjoint test files (NumPy and torch, float64; the stiffest Van der
# Pol mu = 5) and 14.8 over 2,622 steps of tanh MLPs with a -50 y decay (torch float32 and
# float64, dopri5, bosh3, rk4); dropout (p = 0.3) ends 3e12 away in float64, about 6e3 in
# float32.
RECOMPUTE_LIMIT = 1000.0
# Float spacings of t by which a recomputed step's size (t1 - t0) may differ from the forward's
# h, in the limit above (measured: Lorenz at t0 = 1e4, float64, ended 5000 round-offs away from
# the forward's state, all of it from h).
TIME_SPACINGS = 4.0


@dataclass(frozen=True, kw_only=True)
class CheckpointAdjoint(AdjointStrategy):
    """Discrete adjoint of the forward Runge-Kutta steps, recomputed from step checkpoints.

    Equals direct backpropagation through the solver (to round-off) at the cost of one
    recomputed forward pass plus direct's backward pass; memory ``O(S D + s * activations)``
    for S forward steps of s stages. It differentiates exactly what the forward computed.

    Parameters
    ----------
    keep_stages : float
        Where the forward can record its stage linearisations (a field with ``linearize``, run
        through a :class:`StageKeeper`, as ``gqlib.torch`` does), it keeps the steps that fit
        in ``keep_stages`` times the parameter gradient's bytes, the first ones, and the
        backward pass recomputes only the others (all kept: direct backpropagation's cost).
        Default 1: at most one more parameter-sized buffer, which pays where parameters dwarf
        the activations (a wide network at a small batch). 0: always recompute.
    stiff_fallback : AdjointStrategy, optional
        The strategy whose gradient is returned instead where the forward's steps went past the
        method's stability boundary long enough that the discrete derivative amplifies a stiff
        component more than :data:`~gqlib.adjoint.STIFF_GROWTH_LIMIT` (``stats["stiff_growth"]``,
        estimated from the stages the pass evaluates, :mod:`gqlib.adjoint._stiffness`). It reads
        a dense output rebuilt from the checkpoints (one more forward pass without VJPs). A
        continuous adjoint (``InterpolatedAdjoint()``, what ``"auto"`` sets) is the remedy:
        its derivative is the ODE's, which decays where the discrete steps' grows. Between
        :data:`~gqlib.adjoint.STIFF_CHECK_FROM` and the limit both gradients are computed and
        the discrete one is returned, with a warning where they differ by more than
        ``AGREE_RTOLS`` forward rtols (``stats["stiff_difference"]``). Used after an
        error-controlled forward of order >= 4 only (measured worse after fixed steps and
        low-order methods); elsewhere, and where None (the default), a
        :class:`~gqlib.errors.GradientAccuracyWarning` past the limit.

    Raises
    ------
    NondeterministicField
        In the backward pass, where a recomputed step does not end, to round-off
        (:data:`RECOMPUTE_LIMIT`), where the forward's did: the field is not a function of
        ``(t, y)`` alone (dropout in training mode, noise, state changed since the forward),
        and the gradient of the recomputed step would be wrong. Kept steps are the forward's
        own calls and need no check; where the keeper holds replay tokens (the random state
        before each forward call, :class:`StageKeeper`), a recomputed call first restores its
        own.
    """

    name: ClassVar[str] = "checkpoint"
    exact_discrete: ClassVar[bool] = True  # backward-solve settings have nothing to set
    keep_stages: float = 1.0
    stiff_fallback: AdjointStrategy | None = None

    def __post_init__(self):
        k = self.keep_stages
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not (0 <= k < math.inf):
            raise ValueError(f"`keep_stages` must be a finite number >= 0, got {k!r}")
        fb = self.stiff_fallback
        if fb is not None and (not isinstance(fb, AdjointStrategy)
                               or isinstance(fb, CheckpointAdjoint)
                               or fb.forward_record not in ("dense", "checkpoints", None)):
            raise TypeError(f"`stiff_fallback` must be None or a continuous adjoint strategy "
                            f"(InterpolatedAdjoint(), ...), got {fb!r}")

    @property
    def forward_record(self):
        return "checkpoints"

    def keep_bytes(self, n_params: int | None, itemsize: float, state_size: int = 0) -> int:
        """The budget of the forward's kept stage linearisations: ``keep_stages`` times the
        bytes of the parameter gradient (0 without parameters)."""
        return int(self.keep_stages * (n_params or 0) * itemsize)

    def backward(self, cf, sol, grad_y, xp, t_np, *, grad_t: bool) -> AdjointGradient:
        run = _DiscretePass(cf, sol, grad_y, xp, t_np, grad_t=grad_t)
        out = run.run()
        growth = out.stats["stiff_growth"]
        if growth is None or not growth > STIFF_CHECK_FROM:
            return out
        method = sol.options.get("method", "dopri5")
        k0, k1 = run.stiff.steps
        span = (method, float(run.ck.t[k0]), float(run.ck.t[k1 + 1]), k0, k1, growth)
        fb = self.stiff_fallback
        if fb is None or not _fallback_suits(fb, sol):
            if growth > STIFF_GROWTH_LIMIT:
                warnings.warn(stiff_message(*span), GradientAccuracyWarning, stacklevel=4)
            return out
        # the forward's dense output, rebuilt from the checkpoints, for the continuous adjoint
        rebuilt = copy.copy(sol)
        rebuilt.dense = run.dense_output()
        fb.check_solution(rebuilt)
        other = fb.backward(cf, rebuilt, grad_y, xp, t_np, grad_t=grad_t)
        if growth > STIFF_GROWTH_LIMIT:  # past the boundary: the ODE's gradient, not the steps'
            other.stats.update(strategy=fb.name, stiff_growth=growth, stiff_fallback=fb.name,
                               stiff_compared=None, stiff_difference=None)
            return other
        # near it: the discrete gradient stands, unless the two disagree (a nonlinear stiff
        # amplification the linear growth model misses: scaled Robertson, tsit5, rtol 1e-3,
        # growth 2.9, the discrete gradient 4e17 off, the continuous one 6e-5)
        diff = _relative_difference(out, other, xp)
        out.stats.update(stiff_compared=fb.name, stiff_difference=diff)
        if diff <= AGREE_RTOLS * _loosest(sol.options.get("rtol", 1e-7)):
            return out
        warnings.warn(disagree_message(*span, diff, fb.name), GradientAccuracyWarning,
                      stacklevel=4)
        return out


def _fallback_suits(fb: AdjointStrategy, sol) -> bool:
    """Whether ``fb`` can stand in for the discrete adjoint on ``sol``: an error-controlled
    forward of a method of order >= 4 whose interpolant ``fb`` can read (after fixed steps, or
    with a low-order method's Hermite interpolant, the continuous adjoint was measured worse:
    rk38 at h lambda = 2.6, fehlberg2, adaptive_heun on a forced stiff linear field, review)."""
    method = sol.options.get("method", "dopri5")
    tab = get_method(method)
    return (sol.options.get("step_size") is None and tab.adaptive and tab.order >= 4
            and not fb.poor_interpolants(method))


def _relative_difference(a: AdjointGradient, b: AdjointGradient, xp) -> float:
    """``max(|dy0_a - dy0_b| / |dy0_b|, |dtheta_a - dtheta_b| / |dtheta_b|)`` (2-norms)."""
    worst = 0.0
    for u, v in ((a.y0, b.y0), (a.params, b.params)):
        if u is None or v is None:
            continue
        num = to_host_float(xp.sqrt(xp.sum((u - v) ** 2)))
        den = to_host_float(xp.sqrt(xp.sum(v ** 2)))
        r = num / den if den > 0 else (0.0 if num == 0 else math.inf)
        worst = math.inf if math.isnan(r) else max(worst, r)  # max(0.0, nan) would be 0.0
    return worst


class _DiscretePass:
    def __init__(self, cf, sol, grad_y, xp, t_np, *, grad_t: bool):
        self.cf, self.sol, self.g, self.xp, self.t, self.grad_t = cf, sol, grad_y, xp, t_np, grad_t
        self.tab = get_method(sol.options.get("method", "dopri5"))
        self.ck = sol.checkpoints
        self.stops = set(float(s) for s in sol.tstops)
        self.d = 1.0 if t_np[-1] >= t_np[0] else -1.0
        self.n_steps = 0
        tab = self.tab
        self.A, self.C = tab.A, tab.C
        self.B = np.zeros(tab.A.shape[0])
        self.B[: tab.stages] = tab.B  # extra dense-output stages have no weight in y1
        self.P = tab.P
        # host-side coefficients once per pass, not once per step
        self._last = tab.stages - 1
        self._need = {(i, m): self._needed_stages(i, m) for i in (False, True)
                      for m in (False, True)}
        self._terms = [[(l, float(self.A[j, l])) for l in range(j) if self.A[j, l] != 0.0]
                       for j in range(tab.A.shape[0])]
        self._b = [(j, float(self.B[j])) for j in range(tab.A.shape[0]) if self.B[j] != 0.0]
        self._P_rows = ([] if self.P is None else
                        [j for j in range(self.P.shape[0]) if np.any(self.P[j])])
        # a row-wise field at a small batch: stage VJPs in y only, the parameter VJPs of many
        # stages as one call on their stacked rows
        rows = stack_rows_for(cf, sol.y.shape[1:])
        self.stack = RowStack(cf, xp, rows) if rows else None
        # the forward's stage linearisations, where it kept them (gqlib.adjoint._kept)
        self.kept = getattr(cf, "kept", None)
        # a field that draws random numbers (the keeper replays them): its values' differences
        # hold the draws', no stiffness estimate from them (replay.wanted: the draws seen)
        replay = None if self.kept is None else self.kept.replay
        self.random = replay is not None and bool(getattr(replay, "wanted", True))
        if self.kept is not None and self.kept.n_tracked == 0:
            self.kept = None
        self.n_kept = 0
        # h |lambda| per step from the stages it evaluates anyway (gqlib.adjoint._stiffness)
        self.stiff = StiffnessMonitor(tab, xp)
        self.seen: dict = {}

    def _needed(self, interior: bool, merged: bool = False) -> list[int]:
        return self._need[interior, merged]

    def _dense_weights(self, theta: float, merged: bool = False) -> list[tuple[int, float]]:
        """``(j, sum_p P[j, p] theta^(p + 1))`` for the stages of the method's interpolant
        (without the f(t1, y1) stage when ``merged``)."""
        powers = theta ** np.arange(1, self.P.shape[1] + 1)
        return [(j, float(self.P[j] @ powers)) for j in self._P_rows
                if not (merged and self.tab.fsal and j == self._last)]

    def _needed_stages(self, interior: bool, merged: bool = False) -> list[int]:
        """Stages the step's outputs depend on (b_j != 0, a P row when an output is
        interpolated, and what those stages read), in increasing order; without the FSAL
        stage f(t1, y1) when ``merged`` (the next step's first stage stands in for it)."""
        tab = self.tab
        n_all = tab.A.shape[0] if (interior and self.P is not None) else tab.stages
        need = set()
        for j in range(tab.stages):
            if self.B[j] != 0.0:
                need.add(j)
        if interior:
            if self.P is not None:
                need |= {j for j in range(self.P.shape[0]) if np.any(self.P[j])}
            else:
                need.add(0)
                if tab.fsal:
                    need.add(tab.stages - 1)
        if merged and tab.fsal:
            need.discard(self._last)
        for j in range(n_all - 1, -1, -1):
            if j in need:
                need |= {l for l in range(j) if self.A[j, l] != 0.0}
        return sorted(need)

    def _f1_mergeable(self) -> bool:
        """Whether an interior output's dependence on f(t1, y1) can be handed to the next
        step's first stage ``f(t0', y0')`` (the same call, FSAL): the method's f(t1, y1) is an
        FSAL stage that no other stage reads, or the separate Hermite call."""
        tab = self.tab
        if not tab.fsal:
            return self.P is None  # Hermite's own f(t1, y1) call
        last = tab.stages - 1
        if self.B[last] != 0.0:
            return False
        n_all = tab.A.shape[0] if self.P is not None else tab.stages
        return not any(self.A[j, last] != 0.0 for j in range(last + 1, n_all))

    def _stage_time(self, j: int, t0: float, t1: float, h: float) -> float:
        """Stage ``j``'s time as the forward took it: ``h`` is the stepper's step size for the
        method's stages, ``t1 - t0`` for the dense output's extra stages (the Segment's)."""
        if j >= self.tab.stages:
            h = t1 - t0
        c = float(self.C[j])
        if j == 0:
            return math.nextafter(t0, self.d * math.inf) if (t0 in self.stops and
                                                             t0 != self.ck.t[0]) else t0
        if c == 1.0 and j < self.tab.stages:
            return math.nextafter(t1, -self.d * math.inf) if t1 in self.stops else t1
        return t0 + c * h

    def _hermite(self, th: float, h: float) -> tuple[float, float, float]:
        """Cubic Hermite on a step: ``y(th) = y0 + s (y1 - y0) + c0 f0 + c1 f1`` -> (s, c0, c1)."""
        return 3 * th ** 2 - 2 * th ** 3, h * (th - 2 * th ** 2 + th ** 3), h * (th ** 3 - th ** 2)

    def _needs_f1(self, thetas, merged: bool = False) -> bool:
        """Hermite outputs of a method without FSAL evaluate f(t1, y1) (as the forward did),
        unless the next step's first stage stands in for it (``merged``)."""
        return bool(thetas) and self.P is None and not self.tab.fsal and not merged

    def _f1_weight(self, th: float, h: float) -> float:
        """The weight of f(t1, y1) in the interpolant at ``th`` of a step of size ``h``."""
        if self.P is not None:
            powers = th ** np.arange(1, self.P.shape[1] + 1)
            return h * float(self.P[self._last] @ powers)
        return self._hermite(th, h)[2]

    def step_forward(self, f, k: int, y0, thetas, merged: bool = False, with_k0: bool = False):
        """The forward's step ``k`` from ``y0`` with the field ``f``: ``[y1, *y(theta_i)]``
        (and ``K_0 = f(t0, y0)`` last when ``with_k0``).

        ``f`` is called for the needed stages in increasing order, then once more at
        ``(t1, y1)`` when :meth:`_needs_f1` (the order :meth:`step_back` relies on). With
        ``merged`` the interpolated outputs leave out their f(t1, y1) term (the caller
        back-propagates it through the next step's first stage, the same call).
        """
        t0, t1 = float(self.ck.t[k]), float(self.ck.t[k + 1])
        h, hd = float(self.ck.h[k]), t1 - t0  # the stepper's step; the interpolant's
        K = {}
        for j in self._needed(bool(thetas), merged):
            # the forward stepper's arithmetic (y0 + h sum_l a_jl K_l, combine's order): a
            # re-summed stage differs by round-off, which the next stages amplify by up to
            # h |lambda| |a| each near the stability boundary (dop853 on y' = A y, eigenvalues
            # to -200: 1150 round-offs at the step's end, past RECOMPUTE_LIMIT)
            hj = h if j < self.tab.stages else hd  # extra dense stages: the Segment's
            Y = y0 + hj * combine(K, self._terms[j]) if self._terms[j] else y0
            K[j] = f(self._stage_time(j, t0, t1, h), Y)
            if j == 0 or j == self.stiff.j:  # detached: a traced K[j] holds the step's graph
                self.seen[j] = (detached(Y), detached(K[j]))
        y1 = y0 + h * combine(K, self._b)
        outs = [y1]
        f1 = None
        if self.P is None and thetas and not merged:
            f1 = f(self._end_time(t1), y1) if self._needs_f1(thetas) else K[self.tab.stages - 1]
        for th in thetas:
            y = y0
            if self.P is not None:
                for j, w in self._dense_weights(th, merged):
                    y = y + (hd * w) * K[j]
            else:
                s3, c0, c1 = self._hermite(th, hd)
                y = y + s3 * (y1 - y0) + c0 * K[0]
                if f1 is not None:
                    y = y + c1 * f1
            outs.append(y)
        if with_k0:
            outs.append(K[0])
        return outs

    def _end_time(self, t1: float) -> float:
        return math.nextafter(t1, -self.d * math.inf) if t1 in self.stops else t1

    def step_back_fused(self, k: int, a1, outputs, into, merged=False, k0bar=None):
        """:meth:`step_back` in one backward pass of the field's framework (``pullback``)."""
        thetas = [th for th, _ in outputs]
        with_k0 = k0bar is not None
        outs, vjp = self.cf.pullback(
            lambda f, y: self.step_forward(f, k, y, thetas, merged, with_k0), self.ck.y[k])
        self.excess = self._mismatch(k, outs[0])
        cot = [a1, *(g for _, g in outputs)]
        if with_k0:
            cot.append(k0bar)
        return vjp(cot, into)

    def step_back(self, k: int, a1, outputs, into, merged=False, k0bar=None):
        """Back-propagate step ``k`` (from checkpoint k to k + 1) stage by stage: ``ybar_0`` and
        ``into + thetabar`` from ``ybar_1 = a1``, the output cotangents ``[(theta, g)]`` inside
        the step and ``k0bar``, a cotangent on its first stage (the previous step's f(t1, y1)
        terms). The forward is :meth:`step_forward` with every field call linearised."""
        cf = self.cf
        h, hd = float(self.ck.h[k]), float(self.ck.t[k + 1] - self.ck.t[k])
        thetas = [th for th, _ in outputs]
        lins, points = [], []

        def record(t, Y):
            lin = cf.linearize(t, Y)
            lins.append(lin)
            value = lin.value
            points.append((t, Y, value))
            return value

        stages = self._needed(bool(thetas), merged)
        kept, tokens = self._kept_step(k, thetas, merged)
        if kept is None:
            f = record if tokens is None else self._replaying(record, tokens, stages)
            outs = self.step_forward(f, k, self.ck.y[k], thetas, merged)
            self.excess = self._mismatch(k, outs[0])
            if tokens is not None and stages[-1] >= self.tab.stages and not merged:
                # replayed extra stages do not reach y1: the outputs they give are checked too
                self.excess = self.xp.maximum(self.excess, self._mismatch_outputs(k, outs[1:]))
        else:  # the forward's own linearisations: nothing recomputed
            for j in stages:
                t, Y, lin = kept[j]
                lins.append(_Counted(cf, lin, t, Y))
                points.append((t, Y, lin.value))
                if j == 0 or j == self.stiff.j:
                    self.seen[j] = (detached(Y), detached(lin.value))
        kbar = dict.fromkeys(stages)

        def add(j, v):
            kbar[j] = v if kbar[j] is None else kbar[j] + v

        if k0bar is not None:
            add(0, k0bar)
        ybar0, y1bar, f1bar = a1, a1, None
        for th, g in outputs:
            ybar0 = ybar0 + g
            if self.P is not None:
                for j, w in self._dense_weights(th, merged):
                    add(j, (hd * w) * g)
                continue
            s3, c0, c1 = self._hermite(th, hd)
            ybar0, y1bar = ybar0 - s3 * g, y1bar + s3 * g
            add(0, c0 * g)
            if merged:
                continue
            if self._needs_f1(thetas):
                f1bar = c1 * g if f1bar is None else f1bar + c1 * g
            else:
                add(self.tab.stages - 1, c1 * g)
        params = into
        if f1bar is not None:  # f1 = f(t1, y1): the last recorded call
            vy, params = self._vjp(lins[-1], points[-1], f1bar, params)
            y1bar = y1bar + vy
        ybar0 = ybar0 + (y1bar - a1)  # y1 = y0 + h sum_j b_j K_j
        for j, w in self._b:
            add(j, (h * w) * y1bar)
        for idx in range(len(stages) - 1, -1, -1):
            j, lin = stages[idx], lins[idx]
            lins[idx] = None  # its graph goes as soon as its VJP is done (lower peak)
            if kbar[j] is None:
                continue
            vy, params = self._vjp(lin, points[idx], kbar[j], params)
            del lin
            ybar0 = ybar0 + vy
            hj = h if j < self.tab.stages else hd
            for l, w in self._terms[j]:
                add(l, (hj * w) * vy)
        return ybar0, params

    def dense_output(self) -> DenseOutput:
        """The forward's dense output, rebuilt from the checkpoints: each step's stages
        recomputed with the field's values alone (no linearisation), at the forward's stage
        times (one-sided at tstops); y1 is the forward's own."""
        cf, tab, ck = self.cf, self.tab, self.ck
        rhs = CountedRHS(cf.f, {"nfe": 0}, check=False)
        coef = RKCoefficients(tab)
        segments, f_next = [], None
        for k in range(len(ck) - 1):
            t0, t1 = float(ck.t[k]), float(ck.t[k + 1])
            h, y0 = float(ck.h[k]), ck.y[k]
            K = []
            for j in range(tab.stages):
                if j == 0 and f_next is not None:
                    K.append(f_next)
                    continue
                if tab.fsal and j == tab.stages - 1:
                    Y = ck.y[k + 1]  # the forward's own y1
                else:
                    Y = y0 + h * combine(K, self._terms[j]) if self._terms[j] else y0
                K.append(cf.f(self._stage_time(j, t0, t1, h), Y))
            end_is_stop = t1 in self.stops
            f1 = K[tab.stages - 1] if tab.fsal else None
            f_next = f1 if (tab.fsal and not end_is_stop) else None
            segments.append(Segment(t0, t1, y0, ck.y[k + 1], K, coef, rhs, end_is_stop, f1,
                                    h_step=h))
        return DenseOutput(segments)

    def _estimate(self, k: int, following: dict) -> None:
        """Step ``k``'s ``h |lambda|`` (:class:`StiffnessMonitor`): its stage ``j`` (``c_j =
        1``) against the next step's first stage ``f(t1, y1)`` (not across a tstop, where f may
        jump)."""
        j = self.stiff.j
        if j is None or 0 not in following or j not in self.seen:
            return
        t1 = float(self.ck.t[k + 1])
        if t1 in self.stops:
            return
        y1, f1 = following[0]
        yj, fj = self.seen[j]
        self.stiff.add(k, float(self.ck.h[k]), detached(f1), detached(fj), detached(y1), detached(yj))

    def _fail(self, k: int, a):
        xp = self.xp
        t0, t1 = float(self.ck.t[k]), float(self.ck.t[k + 1])
        if not bool(xp.all(xp.isfinite(a))):
            raise NonFiniteState("the adjoint became non-finite in the discrete (checkpoint) "
                                 "backward pass", t=t0, h=t1 - t0)
        allowed, scale = (float(v) for v in self._round_off(k))
        off = float(self.excess) + allowed
        raise NondeterministicField(
            f"the checkpoint adjoint recomputed the step from t = {t0!r} to {t1!r} and reached "
            f"a state {off / scale if scale else off:.3g} (relative, max norm) from the forward's, "
            f"where round-off allows {allowed / scale if scale else allowed:.2g}: the "
            "field did not return the values it returned in the forward pass, and the gradient "
            "of a recomputed step would be wrong", t=t0, h=t1 - t0)

    def _mismatch(self, k: int, y1):
        """How far the recomputed ``y1`` of step ``k`` is from the forward's, against
        :data:`RECOMPUTE_LIMIT` round-offs: ``max|y1 - y1_fwd| - RECOMPUTE_LIMIT eps (max|y0| +
        max|y1_fwd - y0|)``, a device scalar, > 0 when the field did not return what it
        returned in the forward pass."""
        allowed, _ = self._round_off(k)
        return self.xp.max(self.xp.abs(y1 - self.ck.y[k + 1])) - allowed

    def _mismatch_outputs(self, k: int, ys):
        """:meth:`_mismatch` of the outputs ``ys`` interpolated inside step ``k`` (not merged)
        against the forward's, with the step's round-off allowance."""
        allowed, _ = self._round_off(k)
        xp = self.xp
        return xp.max(xp.stack([xp.max(xp.abs(y - self.sol.y[i]))
                                for y, i in zip(ys, self.inner, strict=True)])) - allowed

    def _round_off(self, k: int):
        """``(allowed, scale)`` of step ``k``, device scalars: how far a recomputed end state
        may lie from the forward's, ``RECOMPUTE_LIMIT eps scale + TIME_SPACINGS ulp(t) / |h|
        max|y1_fwd - y0|`` with ``scale = max|y0| + max|y1_fwd - y0|``. The second term: where
        the checkpoints lack the forward's step sizes (the numba driver's), the recomputed
        step is ``t1 - t0``, which far from t = 0 differs from the forward's ``h`` by up to the
        float spacing of t (the forward keeps ``h`` where that rounding is below 2**-30 of it,
        for bit parity with scipy and torchdiffeq)."""
        xp = self.xp
        y0, y1f = self.ck.y[k], self.ck.y[k + 1]
        t0, t1 = float(self.ck.t[k]), float(self.ck.t[k + 1])
        step = xp.max(xp.abs(y1f - y0))
        scale = xp.max(xp.abs(y0)) + step
        time = TIME_SPACINGS * math.ulp(max(abs(t0), abs(t1))) / abs(t1 - t0)
        return RECOMPUTE_LIMIT * float(xp.finfo(y1f.dtype).eps) * scale + time * step, scale

    def _kept_step(self, k: int, thetas, merged: bool):
        """``(stages, tokens)``: step ``k``'s stages as the forward linearised them
        (:class:`StageKeeper`), else None and the replay tokens of its calls, else None."""
        if self.kept is None or self._needs_f1(thetas, merged):
            return None, None
        t0, t1 = float(self.ck.t[k]), float(self.ck.t[k + 1])
        n_all = self.tab.A.shape[0] if (thetas and self.P is not None) else self.tab.stages
        times = [self._stage_time(j, t0, t1, float(self.ck.h[k])) for j in range(n_all)]
        calls = self.kept.take(k, times, self.ck.y[k])
        if calls is None:
            return None, None
        if all(r.lin is not None for r in calls):
            self.n_kept += 1
            return [(r.t, r.y, r.lin) for r in calls], None
        # tokens for every call the recomputed step makes: dense-output extra stages (dop853's)
        # the forward did not call (an output interpolated only in another pass) have none, and
        # unreplayed draws there would silently change the outputs' terms
        if all(r.token is not None for r in calls) and \
                max(self._needed(bool(thetas), merged)) < len(calls):
            return None, [r.token for r in calls]
        return None, None

    def _replaying(self, f, tokens, stages):
        """``f`` called for ``stages`` in order (as :meth:`step_forward` calls it), each call
        after the keeper's replay restored the state its forward call began with (the random
        draws of a field with dropout)."""
        replay, it = self.kept.replay, iter(stages)

        def g(t, Y):
            replay.apply(tokens[next(it)])
            return f(t, Y)
        return g

    def _vjp(self, lin, point, v, into):
        """``(v^T df/dy, into + v^T df/dtheta)`` of one recorded call; with a row stack the
        parameter part is queued (``point = (t, Y, f(t, Y))``)."""
        if self.stack is not None:
            t, Y, value = point
            return lin.vjp_y(v), self.stack.add(t, Y, value, v, into)
        if self.cf.has_params:
            return lin.vjp(v, into)
        return lin.vjp_y(v), None

    def run(self) -> AdjointGradient:
        xp, cf, t, g, ys, ck = self.xp, self.cf, self.t, self.g, self.sol.y, self.ck
        N = len(t) - 1
        keys = self.d * ck.t
        # each output after t_0: at boundary k (landed), or inside step k (interpolated)
        where = {}
        for i in range(1, N + 1):
            key = self.d * float(t[i])
            k = int(np.searchsorted(keys, key, side="left"))
            if k < len(keys) and keys[k] == key:
                where.setdefault(("at", k), []).append(i)
            else:
                where.setdefault(("in", k - 1), []).append(i)
        S = len(ck) - 1
        a = None
        for i in where.get(("at", S), []):
            a = g[i] if a is None else a + g[i]
        params = None
        # a field that accumulates parameter VJPs in place goes stage by stage: one pass per
        # step would sum the step's stages into a second P-sized buffer first (measured,
        # torch, W = 1024 batch 4: 1.5x direct backprop's backward against 1.9-2.0x fused)
        fused = self.cf.has_pullback and not (self.cf.accumulates and self.cf.has_params) \
            and self.stack is None and self.kept is None
        back = self.step_back_fused if fused else self.step_back
        mergeable = self._f1_mergeable()
        for k in range(S - 1, -1, -1):
            t0, t1 = float(ck.t[k]), float(ck.t[k + 1])
            outs = [((float(t[i]) - t0) / (t1 - t0), g[i]) for i in where.get(("in", k), [])]
            a_in = a if a is not None else g[N] * 0.0
            # FSAL: step k's f(t1, y1) is step k + 1's first stage; its cotangent from step k's
            # interpolated outputs (k0bar of step k + 1) goes into that stage's backward pass,
            # one call instead of two
            merged = mergeable and bool(outs) and k + 1 < S and t1 not in self.stops
            k0bar = None
            if k > 0 and mergeable and t0 not in self.stops:
                tp = float(ck.t[k - 1])
                for i in where.get(("in", k - 1), []):
                    term = self._f1_weight((float(t[i]) - tp) / (t0 - tp), t0 - tp) * g[i]
                    k0bar = term if k0bar is None else k0bar + term
            cf.observe("step", t1, a_in, t0 - t1)
            self.excess, self.inner = None, where.get(("in", k), [])
            following, self.seen = self.seen, {}
            a, params = back(k, a_in, outs, params, merged, k0bar)
            self._estimate(k, following)
            cf.observe("accept", t1, a_in, t0 - t1)
            self.n_steps += 1
            for i in where.get(("at", k), []):
                a = a + g[i]
            ok = xp.all(xp.isfinite(a))
            if self.excess is not None:  # a recomputed step: did it land where the forward did?
                ok = ok & (self.excess <= 0.0)
            if not bool(ok):  # one host sync per step
                self._fail(k, a)
        if self.stack is not None:
            params = self.stack.flush(params)
        # a is now dL/dy(t_0) without g_0 when no output sits at boundary 0 besides t_0 itself
        dldt = None
        if self.grad_t:
            vals = [None] * (N + 1)
            for i in range(1, N + 1):
                vals[i] = xp.sum(g[i] * cf.f(float(t[i]), ys[i]))
            vals[0] = -xp.sum(a * cf.f(float(t[0]), ys[0]))
            dldt = xp.stack(vals)
        if params is None and cf.has_params:
            params = cf.vjp_params(float(t[0]), ys[0], g[0] * 0.0) * 0.0
        stats = {**cf.stats, "n_nodes": 0, "n_panels": 0, "n_accepted": self.n_steps,
                 "n_rejected": 0, "n_steps": self.n_steps,
                 "state_size": int(np.prod(tuple(ys.shape[1:]))), "max_drift": 0.0,
                 "n_row_stacks": 0 if self.stack is None else self.stack.n_stacks,
                 "n_kept_steps": self.n_kept,
                 "stiff_growth": None if (self.random or self.stiff.j is None)
                 else self.stiff.growth,
                 "stiff_fallback": None, "stiff_compared": None, "stiff_difference": None,
                 "seconds": dict(cf.seconds)}
        return AdjointGradient(a + g[0], params, dldt, stats)
