"""The collocation adjoint: Gauss-Legendre collocation of ``a`` on the forward dense output.

The adjoint equation ``da/dt = -a^T J(t)``, ``J(t) = df/dy(t, y(t))``, is linear in ``a``. On a
panel from ``s`` (where ``a`` is known) to ``e = s + H``, ``n``-point Gauss-Legendre collocation
(the implicit Runge-Kutta method of order ``2n``, Butcher 1964) takes stages at
``tau_i = s + c_i H`` and solves

    A_i = a_s - H sum_j alpha_ij A_j^T J(tau_j),     a_e = a_s - H sum_j b_j A_j^T J(tau_j),

with ``c``, ``b`` the Gauss-Legendre nodes and weights on [0, 1] and
``alpha_ij = integral_0^{c_i} l_j(s) ds`` (``l_j`` the Lagrange basis on ``c``). The stage
equations are solved by Picard sweeps from ``A_i = a_s``; each sweep gains one order, so ``m``
sweeps give a method of order ``min(m + 1, 2n)``. ``y(tau_i)`` is read from the forward solve's
dense output, so every node needs one forward pass of the field (a *linearisation*) and then one
backward pass per sweep through the same graph. The parameter gradient is the same nodes' Gauss
quadrature ``integral a^T df/dtheta dt = -H sum_i b_i A_i^T df/dtheta(tau_i)`` (Norcliffe &
Deisenroth 2023), fused into the last sweep: the collocation method applied to the augmented
system ``[a, g]``, so it has the same order.

The cost per panel is ``n`` forward passes and ``n (m + 1)`` backward passes; no adaptive solve,
no error estimate, no dense output of the backward pass. Panels are the output intervals, cut at
tstops and, where an interval is longer than a forward step it overlaps, at the forward steps'
ends (see :meth:`CollocationBackward.panels`), and at most ``max_panel`` long when given. With a
fixed number of sweeps the scheme is explicit: on ``a' = lambda a`` its stability function is
the degree ``m + 1`` Taylor polynomial of ``exp``, which is why panels never exceed the forward's
steps.

References: Butcher, Implicit Runge-Kutta processes, Math. Comp. 18 (1964); Hairer, Norsett &
Wanner, Solving ODEs I, section II.7 (collocation methods).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import numpy as np

from .._backend import constant_like, float64_of, to_host
from ..errors import NonFiniteState, StepSizeTooSmall, TooManySteps
from ..integrate._stepper import evaluate_pieces
from ..integrate._validation import check_positive
from ..quadrature import gauss_legendre
from ..tableaux import get_method
from ._solved import _loosest, cotangent_scale
from ._strategy import AdjointGradient, AdjointStrategy, _check_int

__all__ = ["collocation_coefficients", "collocation_panels", "CollocationAdjoint",
           "CollocationBackward", "default_nodes", "PICARD_LIMIT"]

# A panel's Picard sweeps must contract: the last sweep's change at most PICARD_LIMIT times the
# one before. On a' = lambda a that ratio tends to |H lambda| rho(alpha), and 0.5 keeps
# |H lambda| inside the real stability interval of the m-sweep scheme (degree m + 1 Taylor
# polynomial) for every node count 1-6 (n = 1: |H lambda| <= 1 against 2; n = 3: 2.77 against
# 3.55). An adaptive forward solve does not bound |h lambda| by its own stability limit: once the
# stiff components are below atol its accepted steps overshoot it (dopri5: |h lambda| up to 6.5
# on a lambda = 200 problem, where the sweeps amplify a stiff component 52 times per panel).
PICARD_LIMIT = 0.5

# ... and, after an adaptive forward, converge: the error left after the last sweep, estimated
# from the measured contraction q as q / (1 - q) |last change|, at most SWEEP_LIMIT forward
# tolerances (rtol |A| + atol, rms over the panel's stages). Contracting is not enough where q
# is near PICARD_LIMIT and the sweeps few: on a forced lambda = -200 problem the estimate reached 2.3e4-5.0e4 tolerances and the
# parameter gradient was 5-6x past the trust suite's bound; the trust suite's problems reach at
# most 50 (Van der Pol mu = 5), so a limit of 1000 leaves their panels as they were.
SWEEP_LIMIT = 1000.0


@dataclass(frozen=True, kw_only=True)
class CollocationAdjoint(AdjointStrategy):
    """y from the forward dense output, ``a`` by Gauss-Legendre collocation per panel, and the
    same nodes' quadrature for ``dL/dtheta``: no backward solver (module docstring).

    Parameters
    ----------
    nodes : int, optional
        Collocation nodes per panel (order ``2 nodes``); default ``ceil(p / 2)`` for the forward
        method's order p.
    sweeps : int, optional
        Picard sweeps (order ``min(sweeps + 1, 2 nodes)``); default ``2 nodes - 1``.
    max_panel : float, optional
        Longest panel (panels never exceed the forward's steps anyway).
    max_panels : int
        Cap on the number of panels (raises TooManySteps past it).
    """

    name: ClassVar[str] = "collocation"
    nodes: int | None = None
    sweeps: int | None = None
    max_panel: float | None = None
    max_panels: int = 100_000

    def __post_init__(self):
        if self.nodes is not None:
            _check_int(self.nodes, "nodes", 1)
        if self.sweeps is not None:
            _check_int(self.sweeps, "sweeps", 0)
        check_positive(self.max_panel, "max_panel")
        _check_int(self.max_panels, "max_panels", 1)

    @property
    def forward_record(self):
        return "dense"

    def interpolant_methods(self, forward_method: str) -> tuple[str, ...]:
        return (forward_method,)  # y at the nodes from the forward's dense output

    def counts(self, method: str) -> tuple[int, int]:
        """``(nodes, sweeps)`` per panel for a forward solved with ``method``."""
        nodes = self.nodes
        if nodes is None:
            nodes = default_nodes(get_method(method).order)
        return nodes, 2 * nodes - 1 if self.sweeps is None else self.sweeps

    def backward(self, cf, sol, grad_y, xp, t_np, *, grad_t: bool) -> AdjointGradient:
        nodes, sweeps = self.counts(sol.options.get("method", "dopri5"))
        job = CollocationBackward(cf, sol, grad_y, xp, t_np, nodes=nodes, sweeps=sweeps,
                                  max_panel=self.max_panel, grad_t=grad_t,
                                  max_panels=self.max_panels)
        dy0, params, dldt = job.run()
        done = job.n_panels - job.n_rejected  # n_panels counts every attempt
        stats = {**cf.stats, "n_nodes": nodes * job.n_panels, "n_panels": done,
                 "n_accepted": done, "n_rejected": job.n_rejected, "n_steps": job.n_panels,
                 "state_size": int(np.prod(tuple(sol.y.shape[1:]))), "max_drift": 0.0,
                 "seconds": dict(cf.seconds)}
        return AdjointGradient(dy0, params, dldt, stats)


@lru_cache(maxsize=32)
def collocation_coefficients(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c, b, alpha)`` of ``n``-point Gauss-Legendre collocation on [0, 1] (float64).

    ``alpha_ij = integral_0^{c_i} l_j(s) ds = c_i sum_q b_q l_j(c_i c_q)``: the same Gauss rule
    on [0, c_i] is exact for ``l_j`` (degree n - 1). The Lagrange basis is evaluated in product
    form, which stays accurate where a monomial (Vandermonde) solve loses digits as n grows.
    """
    x, w = gauss_legendre(n)
    c = 0.5 * (np.asarray(x, dtype=np.float64) + 1.0)
    b = 0.5 * np.asarray(w, dtype=np.float64)
    alpha = np.empty((n, n))
    for j in range(n):
        others = np.delete(c, j)
        denom = np.prod(c[j] - others)
        pts = c[:, None] * c[None, :]                              # (i, q): c_i c_q
        lj = np.prod(pts[..., None] - others, axis=-1) / denom     # l_j(c_i c_q)
        alpha[:, j] = c * (lj @ b)
    return c, b, alpha


def default_nodes(forward_order: int) -> int:
    """Nodes per panel matching the forward method: order ``2n >= p``."""
    return max(1, math.ceil(forward_order / 2))


def collocation_panels(s: float, e: float, step_ends: np.ndarray, tstops: np.ndarray,
                       max_panel: float | None) -> list[tuple[float, float]]:
    """Panels of the output interval from ``s`` to ``e`` (in that order), for forward steps
    ending at ``step_ends`` (all boundaries, in either order of time) and ``tstops`` (sorted):
    see :meth:`CollocationBackward.panels`."""
    lo, hi = sorted((s, e))
    ends = step_ends
    inner = ends[(ends > lo) & (ends < hi)]
    if len(inner):
        # the forward steps overlapping [lo, hi]: from the last end <= lo to the first >= hi
        below, above = ends[ends <= lo], ends[ends >= hi]
        left = below.max() if below.size else lo
        right = above.min() if above.size else hi
        around = np.concatenate([[left], np.sort(inner), [right]])
        if hi - lo <= np.min(np.diff(around)):
            inner = np.array([x for x in tstops if lo < x < hi], dtype=np.float64)
    inner = np.sort(inner)
    edges = np.concatenate([[s], inner[::-1] if e < s else inner, [e]])
    out = []
    for p, q in zip(edges[:-1], edges[1:], strict=True):
        k = 1 if max_panel is None else max(1, math.ceil(abs(q - p) / max_panel))
        cuts = [p + (q - p) * j / k for j in range(k)] + [float(q)]
        out.extend(zip(cuts[:-1], cuts[1:], strict=True))
    return out


class CollocationBackward:
    """One backward pass of the collocation adjoint (see the module docstring)."""

    def __init__(self, cf, sol, grad_y, xp, t_np, *, nodes: int, sweeps: int,
                 max_panel: float | None, grad_t: bool, max_panels: int):
        self.cf, self.sol, self.g, self.xp, self.t = cf, sol, grad_y, xp, t_np
        self.n, self.sweeps, self.max_panel, self.grad_t = nodes, sweeps, max_panel, grad_t
        self.c, self.b, self.alpha = collocation_coefficients(nodes)
        self.step_ends = np.concatenate([sol.dense.t0, [sol.dense.t_last]])
        self.tstops = np.sort(np.asarray(sol.tstops, dtype=np.float64))
        self.n_panels = 0
        self.n_rejected = 0
        self.max_panels = max_panels
        self.eps = float(xp.finfo(sol.y.dtype).eps)
        # the sweeps' convergence is held to the forward's tolerances where it had any (an
        # adaptive forward); on fixed forward steps the scheme is what the user chose
        self.tols = None if sol.options.get("step_size") is not None else \
            (_loosest(sol.options.get("rtol", 1e-6)), _loosest(sol.options.get("atol", 1e-9)))
        # the test on a / max|dL/dy| (:func:`cotangent_scale`), that is with atol times it on
        # a: the same panels at any loss scale (a loss times 1e-8 passed every sweep test;
        # gqlib.jax, nodes=2, sweeps=1, Lotka-Volterra: 10 % off)
        if self.tols is not None:
            self.tols = (self.tols[0], self.tols[1] * cotangent_scale(xp, grad_y))

    def dot(self, u, v):
        return self.xp.sum(u * v)

    def panels(self, s: float, e: float) -> list[tuple[float, float]]:
        """Panels of the output interval from ``s`` to ``e`` (in that order).

        No panel is longer than a forward step it overlaps (the forward's error control and
        stability resolved y on its steps): an interval no longer than the shortest forward step
        it overlaps is one panel (y is C^1 across a step end), cut only at tstops (kinks of f,
        where the forward steps end too); a longer interval is cut at every forward step end
        inside it. Each panel is at most ``max_panel`` long.
        """
        return collocation_panels(s, e, self.step_ends, self.tstops, self.max_panel)

    def run(self):
        xp, cf, t, g, ys = self.xp, self.cf, self.t, self.g, self.sol.y
        N = len(t) - 1
        dldt = [None] * (N + 1)
        if self.grad_t:
            dldt[N] = self.dot(g[N], cf.f(float(t[N]), ys[N]))
        a = g[N]
        acc = None
        for i in range(N, 0, -1):
            for s, e in self.panels(float(t[i]), float(t[i - 1])):
                a, acc = self.advance(s, e, a, acc)
            if not bool(xp.all(xp.isfinite(a))):  # one host sync per output interval
                raise NonFiniteState("the adjoint became non-finite in the collocation "
                                     "backward pass", t=float(t[i - 1]),
                                     h=float(t[i - 1] - t[i]))
            if i - 1 == 0:
                if self.grad_t:
                    dldt[0] = -self.dot(a, cf.f(float(t[0]), ys[0]))
                dy0 = a + g[0]
                break
            a = a + g[i - 1]
            if self.grad_t:
                dldt[i - 1] = self.dot(g[i - 1], cf.f(float(t[i - 1]), ys[i - 1]))
        return dy0, acc, (xp.stack(dldt) if self.grad_t else None)

    def advance(self, s: float, e: float, a, acc):
        """``a`` carried over the panel from ``s`` to ``e`` in sub-panels on which the Picard
        sweeps contract (:data:`PICARD_LIMIT`): a sub-panel whose sweeps do not is halved and
        redone, and the rest of the panel keeps the halved length."""
        # Python floats: a NumPy float64 scalar would promote a float32 adjoint (NEP 50)
        s, e = float(s), float(e)
        pos, H = s, e - s
        while pos != e:
            q = e if abs(H) >= abs(e - pos) * (1.0 - 1e-12) else pos + H
            if q == pos:
                raise StepSizeTooSmall("the collocation panels shrank below the time resolution "
                                       "(the Picard sweeps never contracted)", t=pos, h=H)
            self.cf.observe("step", pos, a, q - pos)
            lins, A, ok = self.stages(pos, q, a)
            if not ok:
                self.n_rejected += 1
                self.cf.observe("reject", pos, a, q - pos)
                H = 0.5 * (q - pos)
                continue
            a_s = a
            a, acc = self.finish(pos, q, a, acc, lins, A)
            self.cf.observe("accept", pos, a_s, q - pos)
            pos = q
        return a, acc

    def panel(self, s: float, e: float, a, acc=None):
        """``a`` carried from ``s`` to ``e`` in one panel, whether or not its sweeps contract;
        ``acc`` plus the parameter integral over the panel (in place when the field
        accumulates)."""
        s, e = float(s), float(e)
        lins, A, _ = self.stages(s, e, a)
        return self.finish(s, e, a, acc, lins, A)

    def stages(self, s: float, e: float, a):
        """The panel's linearisations, its stage values after the sweeps, and whether the
        sweeps contracted: the last sweep's change at most :data:`PICARD_LIMIT` times the one
        before it (the first sweep's is measured against ``a`` itself), or at round-off."""
        n, H = self.n, e - s
        c, alpha = self.c, self.alpha
        self.n_panels += 1
        if self.n_panels > self.max_panels:
            raise TooManySteps(f"more than max_panels = {self.max_panels} collocation panels",
                               t=s, h=H)
        # nodes in increasing time for the dense read; Gauss nodes are symmetric (1 - c_k =
        # c_{n-1-k}), so for H < 0 node k is the (n-1-k)-th of them
        lo, hi = min(s, e), max(s, e)
        like = self.sol.y
        base = constant_like(f"collocation{n}", c, like, dtype=float64_of(like))
        t_up = lo + (hi - lo) * c
        y_up = evaluate_pieces(self.sol.dense.pieces_between(lo, hi), t_up,
                               lo + (hi - lo) * base, like)
        order = range(n) if H > 0 else range(n - 1, -1, -1)
        lins = [self.cf.linearize(float(t_up[j]), y_up[j]) for j in order]
        A = [a] * n
        before = last = None
        for _ in range(self.sweeps):
            v = [lin.vjp_y(Ak) for lin, Ak in zip(lins, A, strict=True)]
            new = [a - H * _combine(alpha[i], v) for i in range(n)]
            before = last if last is not None else sum(self.dot(Ak, Ak) for Ak in A)
            last = sum(self.dot(Nk - Ak, Nk - Ak) for Nk, Ak in zip(new, A, strict=True))
            A = new
        if last is None:
            return lins, A, True
        xp = self.xp
        size = sum(self.dot(Ak, Ak) for Ak in A)
        last, before, size = (float(x) for x in to_host(xp.stack([last, before, size]),
                                                          np.float64))
        eps = self.eps
        # not (q > limit): a NaN passes here and is reported by the finiteness check
        ok = not (last > PICARD_LIMIT ** 2 * before and last > (64.0 * eps) ** 2 * size)
        if ok and self.tols is not None:
            count = n * int(np.prod(tuple(A[0].shape)))
            ok = sweeps_converged(last, before, size, count, *self.tols)
        return lins, A, ok

    def finish(self, s: float, e: float, a, acc, lins, A):
        """The last pass over the panel's stages: ``a`` at ``e`` and ``acc`` plus the
        parameter integral."""
        n, H, b = self.n, e - s, self.b
        # last pass: weighted cotangents w_k A_k, w_k = -H b_k, give both a_e and the integral
        a_e = a
        for k in range(n):
            wk = float(-H * b[k])
            if self.cf.has_params:
                vy, acc = lins[k].vjp(wk * A[k], acc)
            else:
                vy = lins[k].vjp_y(wk * A[k])
            a_e = a_e + vy
        return a_e, acc


def sweeps_converged(last: float, before: float, size: float, count: int, rtol: float,
                     atol: float) -> bool:
    """Whether the Picard sweeps' remaining error, ``q / (1 - q) |last change|`` with the
    measured contraction ``q = |last change| / |change before|`` (squared norms given), is
    within :data:`SWEEP_LIMIT` tolerances, ``rtol |A| + atol`` in rms over ``count`` numbers
    (``size = |A|^2``). A ratio ``q >= 1`` is left to the contraction test."""
    if not before > 0.0 or not last < before:
        return True
    q = math.sqrt(last / before)
    rms = math.sqrt(last / count) * q / (1.0 - q)
    return rms <= SWEEP_LIMIT * (rtol * math.sqrt(size / count) + atol)


def _combine(row: np.ndarray, vs: list):
    """``sum_j row[j] vs[j]`` (host coefficients, device vectors)."""
    out = float(row[0]) * vs[0]
    for coef, v in zip(row[1:], vs[1:], strict=True):
        out = out + float(coef) * v
    return out

