"""The parameter integral of the GQ and interpolated adjoints by Gauss-Legendre quadrature.

``integral a(t)^T df/dtheta(t, y(t)) dt`` over one output interval, cut at tstops into panels,
with ``a`` (and ``y``) read from the backward solver's interpolant at the nodes: the solver never
stops at them (Norcliffe & Deisenroth 2023). Node counts come from :mod:`._nodes`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .._backend import constant_like, float64_of, namespace
from ..errors import GradientAccuracyWarning
from ..integrate._stepper import evaluate_pieces
from ..quadrature import gauss_legendre
from ._nodes import (
    MAX_SPLITS,
    SAMPLES,
    adaptive_count,
    chebyshev_points,
    paper_count,
    resolved_degree,
)
from ._rows import RowStack, stack_rows_for

__all__ = ["NodeRule", "ParameterQuadrature", "node_count", "resolution_tolerances", "shortfall",
           "warn_short"]

NODE_RULES = ("adaptive", "paper")

# The adaptive rule resolves the sampled backward state to this fraction of the backward
# tolerance. Measured (validation/node_rule.py, Van der Pol mu = 1 and 5, rtol 1e-5..1e-7): at the
# full tolerance the quadrature error reached 12x rtol on mu = 5; at a tenth it stays at or below
# 0.31 rtol, for 4.7-8.1 nodes per output interval instead of 4.1-6.0.
RESOLUTION = 0.1
# Chebyshev coefficients of sampled values stop decaying at the round-off of the samples, so the
# relative resolution asked for is floored at this many units of the dtype's epsilon (float32 at
# rtol 1e-7 otherwise split every panel to the limit: 39,000-76,000 backward evaluations).
ROUNDOFF_FLOOR = 100.0


def resolution_tolerances(rtol: float, atol: float, eps: float,
                          resolution: float = RESOLUTION) -> tuple[float, float]:
    """The tolerances the adaptive rule resolves the sampled backward state to: ``resolution``
    times the backward ones, never below ROUNDOFF_FLOOR eps (samples carry round-off of about
    eps |z|)."""
    floor = ROUNDOFF_FLOOR * eps
    return max(resolution * rtol, floor), max(resolution * atol, floor * 1e-300)


def node_count(rule: NodeRule, length: float, depth: int, *, span: float, nfe_forward: int,
               need: int | None = None) -> int | None:
    """Gauss-Legendre nodes for a panel of ``length`` at split ``depth``, or None to halve it.

    ``need`` is the resolved Chebyshev degree of the sampled backward state
    (:func:`~gqlib.adjoint._nodes.resolved_degree`; None when unresolved), used by the adaptive
    rule only. Plain Python: the jax adapter calls it from a host callback.
    """
    if rule.nodes == "paper":
        return paper_count(length, span, nfe_forward, rule.gtol, rule.max_nodes)
    if isinstance(rule.nodes, int):
        return min(rule.nodes, rule.max_nodes)
    if need is None and depth < MAX_SPLITS:
        return None
    return adaptive_count(SAMPLES - 4 if need is None else need, rule.extra_nodes, rule.max_nodes)


def shortfall(short, n: int, d: int | None, t: float):
    """The worse of a recorded shortfall ``short`` (``(nodes given, nodes needed or None, t)``
    or None) and a panel's: ``n`` nodes where the backward state is resolved at Chebyshev degree
    ``d`` (None: not at any degree sampled) near ``t``."""
    if d is None:  # not resolved at degree SAMPLES - 4: no single rule can be trusted here
        if short is None or short[1] is not None:
            return (n, None, t)
        return short
    need = max(1, (d + 2) // 2)  # the fewest nodes exact to degree d (2 n - 1 >= d), no margin
    if n < need and (short is None or (short[1] is not None
                                       and need / n > short[1] / short[0])):
        return (n, need, t)
    return short


def warn_short(rule: NodeRule, short, who: str, stacklevel: int = 2) -> None:
    """One GradientAccuracyWarning for a rule that left a panel under-resolved."""
    if short is None:
        return
    n, need, t = short
    needs = (f"needs {need}" if need is not None else
             f"is not resolved by a polynomial of degree {SAMPLES - 4}, so no single rule")
    warnings.warn(
        f"{who}: nodes={rule.nodes!r} put {n} Gauss-Legendre node(s) on a panel (near "
        f"t = {t!r}) whose backward state {needs} to reach the backward tolerance: the "
        "parameter gradient may be inaccurate. Remedy: nodes='adaptive' (the default, which "
        "splits such panels), or more nodes", GradientAccuracyWarning, stacklevel=stacklevel)


@dataclass(frozen=True)
class NodeRule:
    """How many Gauss-Legendre nodes a panel gets (see :mod:`gqlib.adjoint._nodes`).

    Parameters
    ----------
    nodes : {"adaptive", "paper"} or int
        ``"adaptive"``: resolve the sampled backward state to the backward tolerance;
        ``"paper"``: ``min(ceil(gtol * NFE_fwd * |dt| / |T|), max_nodes)``; an int: that many.
    gtol : float
        The paper's constant C.
    extra_nodes : int
        Nodes added to the adaptive count as margin.
    max_nodes : int
        Cap per panel.
    """

    nodes: str | int = "adaptive"
    gtol: float = 0.1
    extra_nodes: int = 0
    max_nodes: int = 64

    def __post_init__(self):
        n = self.nodes
        if isinstance(n, bool) or not (n in NODE_RULES or (isinstance(n, int) and n >= 1)):
            raise ValueError(f"`nodes` must be one of {NODE_RULES} or a positive int, got {n!r}")
        if isinstance(self.gtol, bool) or not isinstance(self.gtol, (int, float)) \
                or not self.gtol > 0 or not np.isfinite(self.gtol):
            raise ValueError(f"`gtol` must be a positive number, got {self.gtol!r}")
        for name, least in (("extra_nodes", 0), ("max_nodes", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise ValueError(f"`{name}` must be an int >= {least}, got {v!r}")


class ParameterQuadrature:
    """The quadrature of one backward pass: node counts, nodes and the accumulated VJPs.

    ``y_source`` is None when the backward state is ``[y, a]`` (gq), or the forward dense output
    when it is ``a`` alone (interpolated).
    """

    def __init__(self, rule: NodeRule, cf, xp, *, rtol: float, atol: float, span: float,
                 nfe_forward: int, tstops, D: int, shape, y_source=None):
        self.rule, self.cf, self.xp = rule, cf, xp
        self.rtol, self.atol = rtol, atol
        self.span, self.nfe_forward = span, nfe_forward
        self.tstops, self.D, self.shape = tuple(tstops), D, shape
        self.y_source = y_source
        self.n_nodes = 0
        self.n_panels = 0
        self.short = None  # (nodes given, nodes needed, t) of the worst under-resolved panel
        rows = stack_rows_for(cf, shape)  # a row-wise field at a small batch: nodes stacked
        self.stack = RowStack(cf, xp, rows) if rows else None

    def interval(self, segments, t_hi: float, t_lo: float, into=None, shifts=None):
        """``into + integral_{t_lo}^{t_hi}`` over one output interval, oriented forward
        (``t_hi`` is the later output time in the forward direction; ``segments`` its backward
        steps), accumulated in place into ``into`` (a new buffer when None).

        ``shifts`` (gq with step checkpoints): per segment, None or the sum of the restart jumps
        ``y_checkpoint - y_reintegrated`` before it in this interval (y-sized). The node rule
        samples the segments moved back by their shift, so that restarts, whose jumps are the
        drift of the re-integrated y and not a feature of the integrand, are not resolved."""
        lo, hi = sorted((t_lo, t_hi))
        sign = 1.0 if t_hi > t_lo else -1.0  # the VJP is linear in a: orient the weights
        edges = sorted({lo, hi, *(s for s in self.tstops if lo < s < hi)})
        reader = _SegmentReader(segments, segments[0].y0, shifts)
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            into = self._panel(reader, a, b, 0, into, sign)
        return into

    def _count(self, reader, a: float, b: float, depth: int):
        """Nodes for ``[a, b]``, or None when the panel must be halved."""
        rule = self.rule
        if rule.nodes == "adaptive":  # from the sampled backward state
            return node_count(rule, b - a, depth, span=self.span, nfe_forward=self.nfe_forward,
                              need=self._needed(reader, a, b))
        n = node_count(rule, b - a, depth, span=self.span, nfe_forward=self.nfe_forward)
        self._check_fixed(reader, a, b, n)
        return n

    def _check_fixed(self, reader, a: float, b: float, n: int) -> None:
        """A rule without error control (paper, fixed): compare it with the resolved degree
        (interpolant samples only, no field calls) and remember the worst shortfall."""
        self.short = shortfall(self.short, n, self._needed(reader, a, b, resolution=1.0),
                               0.5 * (a + b))

    def _needed(self, reader, a: float, b: float, resolution: float = RESOLUTION):
        """Chebyshev degree at which the sampled backward state is resolved on [a, b]."""
        xp = self.xp
        tc = reader.times(f"cheb{SAMPLES}", chebyshev_points(SAMPLES), a, b)
        zc = reader.at(tc, a, b, continuous=True)
        if self.y_source is not None:
            yc = evaluate_pieces(self.y_source.pieces_between(a, b), *tc, zc,
                                 origin=0.5 * (a + b))
            zc = xp.concat([xp.reshape(yc, (SAMPLES, -1)), zc], axis=1)
        rtol, atol = resolution_tolerances(self.rtol, self.atol, float(xp.finfo(zc.dtype).eps),
                                           resolution)
        return resolved_degree(xp, zc, rtol, atol)

    def warn_short(self, who: str) -> None:
        """One GradientAccuracyWarning for a rule that left a panel under-resolved."""
        warn_short(self.rule, self.short, who, stacklevel=6)

    def _panel(self, reader, a: float, b: float, depth: int, into, sign: float):
        """``into + sign * integral_a^b a^T df/dtheta dt`` (a < b) on one smooth panel, in
        place (one parameter-sized buffer for the whole pass)."""
        n = self._count(reader, a, b, depth)
        if n is None:
            m = 0.5 * (a + b)
            into = self._panel(reader, a, m, depth + 1, into, sign)
            return self._panel(reader, m, b, depth + 1, into, sign)
        xp, D = self.xp, self.D
        x_ref, w_ref = gauss_legendre(n)
        x = 0.5 * (a + b) + 0.5 * (b - a) * x_ref
        w = 0.5 * (b - a) * w_ref
        x_dev = reader.times(f"gl{n}", x_ref, a, b)
        z = reader.at(x_dev, a, b)
        if self.y_source is not None:
            y_nodes = evaluate_pieces(self.y_source.pieces_between(a, b), *x_dev, z,
                                      origin=0.5 * (a + b))
        self.n_nodes += n
        self.n_panels += 1
        for k in range(n):
            if self.y_source is not None:
                y, av = y_nodes[k], xp.reshape(z[k], self.shape)
            else:
                y, av = xp.reshape(z[k, :D], self.shape), xp.reshape(z[k, D:2 * D], self.shape)
            # the VJP is linear in a: weight the state-sized adjoint, not the P-sized result
            if self.stack is not None:
                into = self.stack.add(float(x[k]), y, None, (sign * float(w[k])) * av, into)
            else:
                into = self.cf.vjp_params_into(float(x[k]), y, (sign * float(w[k])) * av, into)
        return into

    def finish(self, into):
        """``into`` with the nodes still queued in a row stack added (call once, at the end)."""
        return into if self.stack is None else self.stack.flush(into)


class _SegmentReader:
    """Evaluates the backward interpolant of one output interval at a rule's points, mapped to a
    panel, entirely on the state's device (see :func:`evaluate_pieces`); ``continuous=True``
    reads the pieces moved back by their ``shifts`` (restart jumps of the re-integrated y)."""

    def __init__(self, segments, like, shifts=None):
        self.pieces = [(s.t0, s.h, s.y0, s.Q) for s in segments]
        self.like = like
        self.smooth = self.pieces
        if shifts is not None and any(d is not None for d in shifts):
            xp = namespace(like)
            self.smooth = [p if d is None else
                           (p[0], p[1], p[2] - xp.concat([d, xp.zeros_like(p[2][d.shape[0]:])]),
                            p[3]) for p, d in zip(self.pieces, shifts, strict=True)]

    def times(self, name: str, ref: np.ndarray, a: float, b: float):
        """The points ``ref`` of [-1, 1] mapped to [a, b], as offsets from the panel's middle
        ``(a + b) / 2`` (the ``origin`` of :func:`evaluate_pieces`): (host array, float64
        device array), the same numbers, computed by the same float64 operations."""
        base = constant_like(name, ref, self.like, dtype=float64_of(self.like))
        half = 0.5 * (b - a)
        return half * np.asarray(ref, dtype=np.float64), half * base

    def at(self, times, a: float, b: float, continuous: bool = False):
        t_host, t_dev = times
        pieces = self.smooth if continuous else self.pieces
        sel = [p for p in pieces if min(p[0], p[0] + p[1]) < b and max(p[0], p[0] + p[1]) > a]
        return evaluate_pieces(sel, t_host, t_dev, self.like, origin=0.5 * (a + b))
