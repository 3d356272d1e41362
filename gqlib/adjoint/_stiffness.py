"""How far the discrete adjoint's steps amplify a stiff component: a stiffness estimate per step.

An explicit Runge-Kutta step multiplies a component along an eigenvalue ``lambda`` of the
Jacobian by the method's stability function ``R(h lambda)``. Once a decaying stiff component is
below the tolerances, error control lets the step grow to the edge of the stability region and
past it for a while (until the component comes back above the tolerances and a step is
rejected). The solution stays accurate, but the discrete derivative of those steps carries the
product of ``|R(h lambda)| > 1`` over them, where the ODE's own derivative decays: the
checkpoint adjoint (= direct backpropagation) can then be wrong by many orders of magnitude
(Van der Pol mu = 50 at rtol 1e-7: 3e20 relative, docs/failures.md).

Each step's ``|lambda|`` is estimated as in Hairer's DOPRI5 stiffness detection (Hairer & Wanner,
*Solving ODEs II*, IV.2): two stage evaluations at the same time, here the step's last stage
with ``c = 1`` at ``Y_j`` and the next step's first one at ``y1``,

    rho = ||f(t1, y1) - f(t1, Y_j)|| / ||y1 - Y_j||,

a Rayleigh quotient of the Jacobian in the direction the stiff component oscillates in. The
growth over a run of steps is bounded by ``sum log|R(-h rho)|`` on the negative real axis; its
largest value over any run of consecutive steps (Kadane's maximum sum) is
:attr:`StiffnessMonitor.growth`, in nepers. Steps whose ``h rho`` lies inside the stability
interval count negatively, so isolated steps at the edge, as every stiff solve at loose
tolerances takes, add up to little.
"""

from __future__ import annotations

import math

import numpy as np

from .._backend import detached, to_host
from ..integrate._segment import combine

__all__ = ["StiffnessMonitor", "stability_polynomial", "STIFF_GROWTH_LIMIT", "STIFF_CHECK_FROM",
           "AGREE_RTOLS", "stiff_message", "disagree_message", "DIRECT_REMEDY"]

# The largest growth (nepers) the checkpoint adjoint accepts: e^4.6 = 100 (measured,
# validation/stiff_growth.py, docs/failures.md).
STIFF_GROWTH_LIMIT = math.log(100.0)
# From this growth (nepers) on, a checkpoint adjoint with a stiff fallback also computes the
# fallback's gradient and compares: non-stiff problems measure 0-1.3 (trust suite, MLPs; the
# linear lambda = 200 problem 1.04), stiff ones 1.9-2.3 at every tolerance where the steps
# are stability-limited (Van der Pol, validation/stiff_growth.py), and the scaled Robertson
# problem 2.9 with a discrete gradient 4e17 (relative) off (review).
STIFF_CHECK_FROM = 1.5
# Below STIFF_GROWTH_LIMIT, where the discrete and the continuous gradients differ (relative) by
# more than this many forward rtols, the discrete one is returned with a warning (each is within
# 10 rtol of the ODE's on the trust suite; 100 flags only a gross disagreement).
AGREE_RTOLS = 100.0


REMEDY = ("adjoint='interpolated' or 'collocation' (continuous adjoints), or "
          "CheckpointAdjoint(stiff_fallback=InterpolatedAdjoint()) as 'auto' sets it")


# direct backpropagation (gqlib.torch's adjoint=None) differentiates the same steps
DIRECT_REMEDY = ("an adjoint (odeint_adjoint's default falls back to the interpolated adjoint on "
                 "such solves) or adjoint='interpolated'/'collocation'")


def stiff_message(method: str, t_first: float, t_last: float, k0: int, k1: int, growth: float,
                  remedy: str = REMEDY, who: str = "the checkpoint (discrete) adjoint") -> str:
    """The :class:`~gqlib.errors.GradientAccuracyWarning` text for a discrete backward pass whose
    forward steps ``k0..k1`` (over ``[t_first, t_last]``) amplify a stiff component by up to
    ``e^growth`` (the core's and gqlib.jax's checkpoint adjoints, gqlib.torch's direct mode)."""
    return (f"{who}: the forward's {method} steps over t in "
            f"[{t_first!r}, {t_last!r}] (steps {k0}-{k1}) went past the method's stability "
            f"boundary on a stiff component (h |lambda| estimated from the stages), so the "
            f"derivative of the discrete steps amplifies it by up to e^{growth:.3g} where the "
            f"ODE's decays; the gradient may be far off (Van der Pol mu = 50 at rtol 1e-7: 3e20 "
            f"relative). Remedies: {remedy}")


def disagree_message(method: str, t_first: float, t_last: float, k0: int, k1: int,
                     growth: float, diff: float, other: str) -> str:
    """The warning where the discrete and the continuous (``other``) gradients disagree on a
    solve whose steps came near the stability boundary, without the growth that explains it."""
    return (f"the checkpoint (discrete) adjoint and the {other} adjoint disagree by {diff:.3g} "
            f"(relative) on a {method} solve whose steps over t in [{t_first!r}, {t_last!r}] "
            f"(steps {k0}-{k1}) came near the method's stability boundary on a stiff component "
            f"(growth e^{growth:.3g} estimated from the stages): one of them is off. Returned the "
            f"discrete one (= direct backpropagation). Check with a tighter rtol, or "
            f"adjoint='collocation'")


def stability_polynomial(tab) -> np.ndarray:
    """Coefficients (highest power first, for ``np.polyval``) of the explicit method's stability
    function ``R(z) = 1 + sum_k z^k b^T A^(k-1) 1``: the step's factor on ``y' = lambda y``,
    ``z = h lambda``."""
    s = tab.stages
    A, b = np.asarray(tab.A, float)[:s, :s], np.asarray(tab.B, float)[:s]
    coeffs, v = [1.0], np.ones(s)
    for _ in range(s):
        coeffs.append(float(b @ v))
        v = A @ v
    return np.trim_zeros(np.array(coeffs[::-1]), "f")  # dopri5: degree 6 of 7 stages


def estimate_pair(tab) -> int | None:
    """The stage ``j < stages`` with ``c_j = 1`` whose point is not ``y1`` (its row of A is not
    b), the last such: paired with the next step's first stage at ``(t1, y1)``. None where the
    method has none (euler, midpoint, bosh3, ...: no estimate)."""
    A, B, C = np.asarray(tab.A, float), np.asarray(tab.B, float), np.asarray(tab.C, float)
    s = tab.stages
    for j in range(s - 1, 0, -1):
        if C[j] == 1.0 and not np.array_equal(A[j, :s], B):
            return j
    return None


_TABLEAU_DATA: dict = {}


def _tableau_data(tab):
    """``(j, stability polynomial, A[j]'s nonzeros)`` of ``tab``, computed once per tableau
    (a monitor per direct-mode solve: 37 us of NumPy otherwise)."""
    hit = _TABLEAU_DATA.get(id(tab))
    if hit is None or hit[0] is not tab:
        j = estimate_pair(tab)
        row = None if j is None else \
            [(i, float(w)) for i, w in enumerate(np.asarray(tab.A, float)[j, :j]) if w != 0.0]
        hit = _TABLEAU_DATA[id(tab)] = (tab, (j, stability_polynomial(tab), row))
    return hit[1]


class StiffnessMonitor:
    """Collects ``h rho`` per step of a discrete backward pass and gives the largest growth of a
    stiff component over consecutive steps (see the module docstring).

    :meth:`add` queues two device scalars per step, read back once, in :attr:`growth`;
    :meth:`watch` feeds it the forward's accepted steps instead (``solve``'s ``on_step``).
    """

    def __init__(self, tab, xp):
        self.xp = xp
        # stage j's row of A in the stepper's (and the checkpoint pass's) order, for watch
        self.j, self.poly, self._row = _tableau_data(tab)
        self._h, self._num, self._den, self._k = [], [], [], []
        self._done = self._kadane = None  # host reads, cached until the next add
        # watch: the last step's (k, h, Y_j, f(t1, Y_j), t1 at a tstop) until the next step
        # gives f(t1, y1)
        self._pending = None
        self.step_times: list[tuple[float, float]] = []  # watch: (t0, t1) of step k

    def watch(self, seg) -> None:
        """The forward's next accepted step (a :class:`~gqlib.integrate.Segment`, in order):
        the previous step's stage ``j`` against this one's first stage ``f(t1, y1)``, paired as
        the checkpoint pass pairs them (not across a tstop, none for the last step), with the
        stage point ``Y_j = y0 + h combine(K, A[j])`` recomputed outside any autograd graph."""
        k = len(self.step_times)
        self.step_times.append((seg.t0, seg.t1))
        if self.j is None:
            return
        prev = self._pending
        if prev is not None and not prev[4]:
            pk, h, yj, fj, _ = prev
            self.add(pk, h, detached(seg.K[0]), fj, detached(seg.y0), yj)
        K = [detached(x) for x in seg.K[:self.j + 1]]
        yj = detached(seg.y0) + seg.h_step * combine(K, self._row)
        self._pending = (k, seg.h_step, yj, K[self.j], seg.end_is_stop)

    @property
    def active(self) -> bool:
        return self.j is not None

    def add(self, k: int, h: float, f1, fj, y1, yj) -> None:
        """Step ``k`` of size ``h``: ``f1 = f(t1, y1)`` (the next step's first stage), ``fj =
        f(t1, Y_j)``."""
        xp = self.xp
        self._k.append(k)
        self._h.append(abs(h))
        dk, dy = f1 - fj, y1 - yj
        self._num.append(xp.sum(dk * dk))  # squared norms: the roots once, on the host
        self._den.append(xp.sum(dy * dy))
        self._done = self._kadane = None

    def _read(self):
        if self._done is None:
            xp = self.xp
            if not self._h:
                self._done = (np.zeros(0), np.zeros(0, int))
                return self._done
            num = np.asarray(to_host(xp.stack(self._num)), float)
            den = np.asarray(to_host(xp.stack(self._den)), float)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                rho = np.where(den > 0, np.sqrt(num / den), 0.0)
            hr = np.where(np.isfinite(rho), np.asarray(self._h) * rho, 0.0)
            self._done = (hr, np.asarray(self._k))
        return self._done

    @property
    def h_rho(self) -> np.ndarray:
        """``h rho`` per step, in the order added."""
        return self._read()[0]

    def _run(self) -> tuple[float, tuple[int, int] | None]:
        """Kadane's maximum sum of ``log|R(-h rho)|`` over consecutive steps, and its span."""
        if self._kadane is not None:
            return self._kadane
        hr = self.h_rho
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            logs = np.log(np.abs(np.polyval(self.poly, -hr)))
        logs = np.where(np.isnan(logs), 0.0, np.clip(logs, -700.0, 700.0))
        best, run, start, span = 0.0, 0.0, 0, None
        for i, v in enumerate(logs):
            if run <= 0.0:
                start, run = i, 0.0
            run += float(v)
            if run > best:
                best, span = run, (start, i)
        self._kadane = (best, span)
        return self._kadane

    @property
    def growth(self) -> float:
        """The largest ``sum log|R(-h rho)|`` over a run of consecutive steps (nepers, >= 0)."""
        return self._run()[0]

    def forward_warning(self, method: str, remedy: str, who: str) -> str | None:
        """The warning text where the watched steps' growth passes :data:`STIFF_GROWTH_LIMIT`
        (None below it: the steps' derivative is trusted)."""
        growth = self.growth
        if not growth > STIFF_GROWTH_LIMIT:
            return None
        k0, k1 = self.steps
        return stiff_message(method, float(self.step_times[k0][0]),
                             float(self.step_times[k1][1]), k0, k1, growth, remedy, who)

    @property
    def steps(self) -> tuple[int, int] | None:
        """The forward steps ``(first, last)`` of that run (None at zero growth)."""
        span = self._run()[1]
        if span is None:
            return None
        ks = self._read()[1]
        return int(min(ks[span[0]], ks[span[1]])), int(max(ks[span[0]], ks[span[1]]))


