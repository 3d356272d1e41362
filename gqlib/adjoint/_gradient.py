"""Gradient assembly: ``gqlib.adjoint.gradient`` and its four adjoint strategies.

Problem: ``dy/dt = f(t, y, theta)``, ``y(t_0) = y_0``, loss ``L = sum_i l_i(y(t_i))``. The adjoint
``a(t) = dL/dy(t)`` solves ``da/dt = -a^T df/dy`` backwards from ``a(t_N) = g_N``, jumping by
``g_i = dl_i/dy(t_i)`` at each output time, and

    dL/dy_0   = a(t_0)   (after adding g_0)
    dL/dtheta = integral_{t_0}^{t_N} a^T df/dtheta dt
    dL/dt_i   = g_i^T f(t_i, y(t_i))   (i > 0),    dL/dt_0 = -a(t_0+)^T f(t_0, y_0).

References: Chen et al. (2018); Kidger, Chen & Lyons (2021); Norcliffe & Deisenroth (2023).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

import numpy as np

from .._backend import constant_like, float64_of, namespace
from ..integrate._controller import PIController
from ..integrate._norms import resolve_norm
from ..integrate._stepper import Stepper, evaluate_pieces
from ..integrate._validation import check_max_steps, check_positive, check_times, check_tolerance
from ..interpolate import Solution
from ..quadrature import gauss_legendre
from ..tableaux import get_method
from ._collocation import CollocationBackward, default_nodes
from ._field import CountedField
from ._nodes import (
    MAX_SPLITS,
    SAMPLES,
    adaptive_count,
    chebyshev_points,
    paper_count,
    resolved_degree,
)

__all__ = ["gradient", "AdjointGradient", "ADJOINTS", "NODE_RULES"]

ADJOINTS = ("gq", "backsolve", "interpolated", "collocation")
NODE_RULES = ("adaptive", "paper")


@dataclass
class AdjointGradient:
    """Gradients of a loss on an ODE solution.

    Attributes
    ----------
    y0 : array
        dL/dy0, shaped like y0.
    params : array or None
        dL/dtheta as a flat array (None when the field has no ``vjp_params``).
    t : array or None
        dL/dt_i for every output time, shape ``(len(t),)``; None when ``grad_t=False``.
    stats : dict
        ``nfe_f``, ``nfe_vjp_y``, ``nfe_vjp_params``, ``n_nodes``, ``n_panels``, ``n_accepted``,
        ``n_rejected``, ``n_steps``, ``state_size`` (entries of the backward solver's state) of the
        backward pass, and ``seconds``: host time spent in the
        field by kind (``f``, ``vjp_y`` including fused ``f_vjp_y``, ``vjp_params``).
    """

    y0: Any
    params: Any
    t: Any
    stats: dict = dc_field(default_factory=dict)


def gradient(field: Any, sol: Solution, grad_y: Any, *, adjoint: str = "gq", method=None,
             rtol: float | None = None, atol: float | None = None,
             step_size: float | None = None, first_step: float | None = None, norm=None,
             seminorm: bool = False, nodes: str | int = "adaptive", gtol: float = 0.1,
             extra_nodes: int = 0, max_nodes: int = 64, max_steps: int = 100_000,
             controller: PIController | None = None, min_step: float = 0.0,
             max_step: float = math.inf, sweeps: int | None = None,
             grad_t: bool = True) -> AdjointGradient:
    r"""Gradients of ``L = sum_i l_i(y(t_i))`` from ``grad_y[i] = dl_i/dy(t_i)``.

    Parameters
    ----------
    field : VectorField
        The forward vector field with its VJPs (see :class:`gqlib.adjoint.VectorField`).
    sol : Solution
        The forward solve ``gqlib.solve(field, y0, t, ...)`` (``dense_output=True`` for
        ``adjoint="interpolated"``).
    grad_y : array, shape ``(len(t), *y0.shape)``
        dl_i/dy(t_i); rows may be zero.
    adjoint : {"gq", "backsolve", "interpolated", "collocation"}
        ``"gq"``: backward solve of ``[y, a]`` (2D) with dense output; ``dL/dtheta`` by
        Gauss-Legendre quadrature of ``a^T df/dtheta`` with y and a read from the backward
        interpolant. ``"backsolve"``: the augmented ``[y, a, g]`` solve (2D + P).
        ``"interpolated"``: y from the forward dense output, only ``a`` solved backwards (D).
        ``"collocation"``: y from the forward dense output; on each panel (a forward step cut
        at the output times) ``a`` by ``nodes``-point Gauss-Legendre collocation and
        ``dL/dtheta`` by the same nodes' quadrature, one linearisation of the field per node
        (see :mod:`gqlib.adjoint._collocation`). No backward solver: passing ``method``,
        ``rtol``, ``atol``, ``norm``, the step controls or the gq node settings raises;
        ``step_size`` caps the panels and ``max_steps`` their number.
    method, rtol, atol, step_size, first_step, norm, controller, min_step, max_step, max_steps
        The backward solve's settings; default: the forward solve's.
    seminorm : bool
        ``backsolve`` only: exclude ``g`` from error control (Kidger, Chen & Lyons 2021).
    nodes : {"adaptive", "paper"} or int
        Node rule for ``gq``/``interpolated`` (see :mod:`gqlib.adjoint._nodes`); an int fixes the
        count per panel (a panel is an output interval cut at tstops). ``collocation``: an int
        (collocation order ``2 nodes``); left at ``"adaptive"`` it is ``ceil(p / 2)`` for the
        forward method's order ``p``.
    sweeps : int, optional
        ``collocation`` only: Picard sweeps of the stage equations (the order is
        ``min(sweeps + 1, 2 nodes)``); default ``2 nodes - 1``.
    grad_t : bool
        Compute dL/dt (an extra evaluation per output time for ``interpolated`` and
        ``collocation``); when False, ``AdjointGradient.t`` is None.
    gtol : float
        The paper's constant C for ``nodes="paper"``.
    extra_nodes : int
        Nodes added to the adaptive rule's count as margin.
    max_nodes : int
        Cap on nodes per panel.

    Returns
    -------
    AdjointGradient

    Examples
    --------
    >>> import numpy as np, gqlib
    >>> from gqlib.adjoint import FunctionField, gradient
    >>> k = 0.5
    >>> field = FunctionField(lambda t, y: -k * y, lambda t, y, a: -k * a,
    ...                       lambda t, y, a: np.array([-np.sum(a * y)]))
    >>> sol = gqlib.solve(field, np.ones(1), [0.0, 1.0], rtol=1e-10, atol=1e-12)
    >>> g = gradient(field, sol, np.array([[0.0], [1.0]]))   # L = y(1) = exp(-k)
    >>> bool(abs(g.params[0] + np.exp(-k)) < 1e-8)            # dL/dk = -exp(-k)
    True
    """
    if adjoint not in ADJOINTS:
        raise ValueError(f"`adjoint` must be one of {ADJOINTS}, got {adjoint!r}")
    if not isinstance(sol, Solution):
        raise TypeError(f"`sol` must be the Solution of gqlib.solve, got {type(sol).__name__}")
    cf = CountedField(field)
    xp = namespace(sol.y)
    if tuple(getattr(grad_y, "shape", ())) != tuple(sol.y.shape):
        raise ValueError(f"`grad_y` must have shape {tuple(sol.y.shape)} (len(t), *y0.shape), got "
                         f"{tuple(getattr(grad_y, 'shape', ()))}")
    if namespace(grad_y) is not xp and type(grad_y) is not type(sol.y):
        raise TypeError(f"`grad_y` must be the same array type as the solution "
                        f"({type(sol.y).__name__}), got {type(grad_y).__name__}")
    t_np = check_times(sol.t)
    if not isinstance(grad_t, bool):
        raise TypeError(f"`grad_t` must be a bool, got {type(grad_t).__name__}")
    if adjoint == "collocation":
        solver_args = dict(method=method, rtol=rtol, atol=atol, first_step=first_step, norm=norm,
                           controller=controller, min_step=min_step, max_step=max_step,
                           gtol=gtol, extra_nodes=extra_nodes, max_nodes=max_nodes)
        colloc = _collocation_settings(sol, nodes=nodes, sweeps=sweeps, step_size=step_size,
                                       seminorm=seminorm, max_steps=max_steps, **solver_args)
    elif sweeps is not None:
        raise ValueError('`sweeps` applies to adjoint="collocation" only')
    if t_np.size == 1:  # no interval: dL/dy0 = g_0, nothing else depends on anything
        zero = xp.sum(grad_y[0]) * 0.0
        params = None
        if cf.has_params:
            params = cf.vjp_params(float(t_np[0]), sol.y[0], grad_y[0] * 0.0) * 0.0
        return AdjointGradient(grad_y[0], params, xp.stack([zero]) if grad_t else None,
                               {**cf.stats, "n_nodes": 0, "n_panels": 0, "n_accepted": 0,
                                "n_rejected": 0, "n_steps": 0, "state_size": 0,
                                "seconds": dict(cf.seconds)})
    if adjoint == "interpolated" and sol.dense is None:
        raise ValueError('adjoint="interpolated" reads y from the forward dense output: solve '
                         "with `dense_output=True`")
    if adjoint == "collocation":
        return _collocation(cf, sol, grad_y, xp, t_np, grad_t=grad_t, **colloc)
    if seminorm and adjoint != "backsolve":
        raise ValueError('`seminorm=True` applies to adjoint="backsolve" only (gq and '
                         "interpolated never put the parameter gradient in the solver)")
    if isinstance(nodes, bool) or not (nodes in NODE_RULES or (isinstance(nodes, int) and nodes >= 1)):
        raise ValueError(f"`nodes` must be one of {NODE_RULES} or a positive int, got {nodes!r}")
    gtol = check_positive(gtol, "gtol", allow_none=False)
    if isinstance(extra_nodes, bool) or not isinstance(extra_nodes, int) or extra_nodes < 0:
        raise ValueError(f"`extra_nodes` must be a non-negative int, got {extra_nodes!r}")
    if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
        raise ValueError(f"`max_nodes` must be a positive int, got {max_nodes!r}")
    opts = sol.options
    tab = get_method(method if method is not None else opts.get("method", "dopri5"))
    rtol = check_tolerance(rtol if rtol is not None else opts.get("rtol", 1e-7), "rtol")
    atol = check_tolerance(atol if atol is not None else opts.get("atol", 1e-9), "atol")
    for name, tol in (("rtol", rtol), ("atol", atol)):
        if not isinstance(tol, float):
            raise ValueError(f"`{name}` of the backward solve must be a scalar (the backward state "
                             f"stacks y, a{' and the parameter gradient' if adjoint == 'backsolve' else ''}); "
                             f"the forward solve used an array: pass a scalar `{name}` to gradient()")
    if step_size is None and method is None:
        step_size = opts.get("step_size")
    step_size = check_positive(step_size, "step_size")
    if step_size is None and not tab.adaptive:
        raise ValueError(f"backward method {tab.name!r} is fixed-step: give `step_size`")
    first_step = check_positive(first_step, "first_step")
    max_steps = check_max_steps(max_steps)

    job = _Backward(cf, sol, grad_y, xp, t_np, tab, adjoint=adjoint, rtol=rtol, atol=atol,
                    step_size=step_size, first_step=first_step, norm=norm, seminorm=seminorm,
                    nodes=nodes, gtol=gtol, extra_nodes=extra_nodes, max_nodes=max_nodes,
                    max_steps=max_steps, controller=controller, min_step=min_step,
                    max_step=max_step, grad_t=grad_t)
    return job.run()


_SOLVER_DEFAULTS = dict(method=None, rtol=None, atol=None, first_step=None, norm=None,
                       controller=None, min_step=0.0, max_step=math.inf, gtol=0.1, extra_nodes=0,
                       max_nodes=64)


def _collocation_settings(sol, *, nodes, sweeps, step_size, seminorm, max_steps,
                          **solver_args) -> dict:
    """Validate the collocation adjoint's arguments (it runs no backward solver)."""
    if sol.dense is None and len(sol.t) > 1:
        raise ValueError('adjoint="collocation" reads y from the forward dense output: solve '
                         "with `dense_output=True`")
    for name, value in solver_args.items():
        default = _SOLVER_DEFAULTS[name]
        given = value is not None if default is None else not (
            isinstance(value, (int, float)) and value == default)
        if given:
            raise ValueError(f'adjoint="collocation" takes no `{name}`: it runs no backward solver '
                             "(its accuracy is set by `nodes`, `sweeps` and the panels, which "
                             "follow the forward steps; `step_size` caps them)")
    if seminorm:
        raise ValueError('`seminorm=True` applies to adjoint="backsolve" only')
    if nodes == "adaptive":
        nodes = default_nodes(get_method(sol.options.get("method", "dopri5")).order)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f'`nodes` must be a positive int for adjoint="collocation", got {nodes!r}')
    if sweeps is None:
        sweeps = 2 * nodes - 1
    if isinstance(sweeps, bool) or not isinstance(sweeps, int) or sweeps < 0:
        raise ValueError(f"`sweeps` must be a non-negative int, got {sweeps!r}")
    return dict(nodes=nodes, sweeps=sweeps, max_panel=check_positive(step_size, "step_size"),
                max_panels=check_max_steps(max_steps))


def _collocation(cf, sol, grad_y, xp, t_np, *, nodes, sweeps, max_panel, max_panels,
                 grad_t) -> AdjointGradient:
    job = CollocationBackward(cf, sol, grad_y, xp, t_np, nodes=nodes, sweeps=sweeps,
                              max_panel=max_panel, grad_t=grad_t, max_panels=max_panels)
    dy0, params, dldt = job.run()
    stats = {**cf.stats, "n_nodes": nodes * job.n_panels, "n_panels": job.n_panels,
             "n_accepted": job.n_panels, "n_rejected": 0, "n_steps": job.n_panels,
             "state_size": int(np.prod(tuple(sol.y.shape[1:]))), "seconds": dict(cf.seconds)}
    return AdjointGradient(dy0, params, dldt, stats)


class _Backward:
    """One backward pass (state kept flat: [y, a] for gq, a for interpolated, [y, a, g] for
    backsolve), driven through one Stepper that keeps its step size across the jumps."""

    def __init__(self, cf, sol, grad_y, xp, t_np, tab, *, adjoint, rtol, atol, step_size,
                 first_step, norm, seminorm, nodes, gtol, extra_nodes, max_nodes, max_steps,
                 controller, min_step, max_step, grad_t):
        self.grad_t = grad_t
        self.cf, self.sol, self.g, self.xp, self.t = cf, sol, grad_y, xp, t_np
        self.tab, self.adjoint = tab, adjoint
        self.shape = tuple(sol.y.shape[1:])
        self.D = int(np.prod(self.shape)) if self.shape else 1
        self.solver_kw = dict(rtol=rtol, atol=atol, step_size=step_size, first_step=first_step,
                              max_steps=max_steps, controller=controller, min_step=min_step,
                              max_step=max_step)
        self.rtol, self.atol = rtol, atol
        self.norm_arg, self.seminorm = norm, seminorm
        self.nodes, self.gtol, self.extra, self.max_nodes = nodes, gtol, extra_nodes, max_nodes
        self.span = float(t_np[-1] - t_np[0])
        self.nfe_forward = int(sol.stats.get("nfe", 0))
        self.n_nodes = 0
        self.n_panels = 0
        self.tstops = tuple(sol.tstops)

    # -- small helpers -------------------------------------------------------------------------
    def flat(self, x):
        return self.xp.reshape(x, (-1,))

    def unflat(self, v):
        return self.xp.reshape(v, self.shape)

    def dot(self, u, v):
        return self.xp.sum(u * v)

    def _norm(self):
        rms = resolve_norm("rms")
        D, xp = self.D, self.xp
        if self.seminorm:
            return lambda e: rms(e[: 2 * D])
        if self.norm_arg is not None:
            return resolve_norm(self.norm_arg)  # given for the backward state itself
        inherited = self.sol.options.get("norm", "rms")
        if not callable(inherited):
            return resolve_norm(inherited)
        # the forward norm was written for y's shape: apply it to each state-shaped block
        # (y and a) and take the largest, with RMS over a parameter block
        blocks = 1 if self.adjoint == "interpolated" else 2

        def blockwise(e):
            out = inherited(self.unflat(e[:D]))
            for k in range(1, blocks):
                out = xp.maximum(out, inherited(self.unflat(e[k * D:(k + 1) * D])))
            if e.shape[0] > blocks * D:
                out = xp.maximum(out, rms(e[blocks * D:]))
            return out

        return blockwise

    # -- right-hand sides ---------------------------------------------------------------------------
    def rhs_gq(self, t, z):
        D = self.D
        y, a = self.unflat(z[:D]), self.unflat(z[D:])
        fy, vy = self.cf.f_vjp_y(t, y, a)
        return self.xp.concat([self.flat(fy), -self.flat(vy)])

    def rhs_interpolated(self, t, a):
        y = self.sol.dense(t)
        return -self.flat(self.cf.vjp_y(t, y, self.unflat(a)))

    def rhs_backsolve(self, t, z):
        D = self.D
        y, a = self.unflat(z[:D]), self.unflat(z[D:2 * D])
        fy, vy, vp = self.cf.f_vjp(t, y, a)
        return self.xp.concat([self.flat(fy), -self.flat(vy), -self.flat(vp)])

    # -- the pass ----------------------------------------------------------------------------------
    def run(self) -> AdjointGradient:
        xp, cf, t, g, ys = self.xp, self.cf, self.t, self.g, self.sol.y
        N = len(t) - 1  # >= 1: gradient() answers a single output time itself
        dldt = [None] * (N + 1)
        y_N, g_N = ys[N], g[N]
        params_acc = None
        if self.adjoint == "gq":
            z0 = xp.concat([self.flat(y_N), self.flat(g_N)])
            rhs = self.rhs_gq
        elif self.adjoint == "interpolated":
            z0 = self.flat(g_N)
            rhs = self.rhs_interpolated
        elif cf.has_params:  # backsolve
            p0 = cf.vjp_params(float(t[N]), y_N, g_N) * 0.0  # learns P; counted
            z0 = xp.concat([self.flat(y_N), self.flat(g_N), self.flat(p0)])
            rhs = self.rhs_backsolve
        else:  # backsolve without parameters is the [y, a] solve
            z0 = xp.concat([self.flat(y_N), self.flat(g_N)])
            rhs = self.rhs_gq
        stepper = Stepper(rhs, float(t[N]), z0, float(t[0]), self.tab, norm=self._norm(),
                          tstops=self.tstops, **self.solver_kw)
        if self.grad_t:
            dldt[N] = self.dot(g_N, self._f_at_output(stepper, N))
        quadrature = cf.has_params and self.adjoint != "backsolve"
        for i in range(N, 0, -1):
            t_lo = float(t[i - 1])
            segments = []  # one interval's steps, kept only when the quadrature reads them
            while stepper.t != t_lo:
                seg = stepper.step(t_lo)
                if quadrature:
                    # build the interpolant now: a Hermite f(t1, y1) is then the next step's
                    # first stage instead of an extra evaluation later
                    _ = seg.Q
                    segments.append(seg)
            if quadrature:
                contrib = self._quadrature(segments, float(t[i]), t_lo)
                if params_acc is None:
                    params_acc = contrib
                else:
                    params_acc += contrib
            z = stepper.y
            D = self.D
            a_before = self.unflat(z[:D] if self.adjoint == "interpolated" else z[D:2 * D])
            if i - 1 == 0:
                if self.grad_t:
                    dldt[0] = -self.dot(a_before, cf.f(t_lo, ys[0]))
                dy0 = a_before + g[0]
                if self.adjoint == "backsolve" and cf.has_params:
                    params_acc = z[2 * D:]
                break
            a_new = a_before + g[i - 1]
            if self.adjoint == "gq":
                stepper.reset(xp.concat([self.flat(ys[i - 1]), self.flat(a_new)]))
            elif self.adjoint == "interpolated":
                stepper.reset(self.flat(a_new))
            else:
                stepper.reset(xp.concat([self.flat(ys[i - 1]), self.flat(a_new), z[2 * D:]]))
            if self.grad_t:
                dldt[i - 1] = self.dot(g[i - 1], self._f_at_output(stepper, i - 1))
        return AdjointGradient(dy0, params_acc, xp.stack(dldt) if self.grad_t else None,
                               self._stats(stepper))

    def _f_at_output(self, stepper, i):
        """f(t_i, y_i): free from the backward stepper's first stage for gq and backsolve."""
        if self.adjoint == "interpolated":
            return self.cf.f(float(self.t[i]), self.sol.y[i])
        return self.unflat(stepper.current_f()[: self.D])

    def _stats(self, stepper):
        s = dict(self.cf.stats)
        s["n_nodes"] = self.n_nodes
        s["n_panels"] = self.n_panels
        for key in ("n_accepted", "n_rejected", "n_steps"):
            s[key] = stepper.stats[key]
        # size of the state inside the backward solver: 2D (gq), D (interpolated), 2D + P
        s["state_size"] = int(stepper.y.shape[0])
        # host seconds inside the field, by kind (fused f+vjp_y calls count as vjp_y)
        s["seconds"] = dict(self.cf.seconds)
        return s

    # -- quadrature ------------------------------------------------------------------------------
    def _quadrature(self, segments, t_hi: float, t_lo: float):
        """integral_{t_lo}^{t_hi} a^T df/dtheta dt over one output interval, oriented forward
        (``t_hi`` is the later output time in the forward direction)."""
        lo, hi = sorted((t_lo, t_hi))
        cuts = [s for s in self.tstops if lo < s < hi]
        edges = sorted({lo, hi, *cuts})
        total = None
        sign = 1.0 if t_hi > t_lo else -1.0
        backward = _SegmentReader(segments, segments[0].y0)
        for a, b in zip(edges[:-1], edges[1:], strict=True):
            part = self._panel(backward, a, b, depth=0)
            if total is None:
                total = part
            else:
                total += part
        return total if sign > 0 else -total

    def _panel(self, reader, a: float, b: float, depth: int):
        """``integral_a^b phi dt`` (a < b) on one smooth panel."""
        xp = self.xp
        if self.nodes == "paper":
            n = paper_count(b - a, self.span, self.nfe_forward, self.gtol, self.max_nodes)
        elif isinstance(self.nodes, int):
            n = min(self.nodes, self.max_nodes)
        else:
            tc = reader.times(f"cheb{SAMPLES}", chebyshev_points(SAMPLES), a, b)
            zc = reader.at(tc, a, b)
            if self.adjoint == "interpolated":
                yc = evaluate_pieces(self.sol.dense.pieces_between(a, b), *tc, zc)
                zc = xp.concat([xp.reshape(yc, (SAMPLES, -1)), zc], axis=1)
            d = resolved_degree(xp, zc, self.rtol, self.atol)
            if d is None and depth < MAX_SPLITS:
                m = 0.5 * (a + b)
                return self._panel(reader, a, m, depth + 1) + self._panel(reader, m, b, depth + 1)
            d = SAMPLES - 4 if d is None else d
            n = adaptive_count(d, self.extra, self.max_nodes)
        x_ref, w_ref = gauss_legendre(n)
        x = 0.5 * (a + b) + 0.5 * (b - a) * x_ref
        w = 0.5 * (b - a) * w_ref
        x_dev = reader.times(f"gl{n}", x_ref, a, b)
        z = reader.at(x_dev, a, b)
        if self.adjoint == "interpolated":
            y_nodes = evaluate_pieces(self.sol.dense.pieces_between(a, b), *x_dev, z)
        self.n_nodes += n
        self.n_panels += 1
        acc = None
        D = self.D
        for k in range(n):
            if self.adjoint == "interpolated":
                y, av = y_nodes[k], self.unflat(z[k])
            else:
                y, av = self.unflat(z[k, :D]), self.unflat(z[k, D:])
            # the VJP is linear in a: weight the state-sized adjoint, not the P-sized result
            term = self.cf.vjp_params(float(x[k]), y, float(w[k]) * av)
            if acc is None:  # our own copy: the field may return (and reuse) its own buffer
                acc = xp.asarray(term, copy=True)
            else:  # in place where the array library allows it (NumPy, torch)
                acc += term
        return acc


class _SegmentReader:
    """Evaluates the backward interpolant of one output interval at a rule's points, mapped to a
    panel, entirely on the state's device (see :func:`evaluate_pieces`)."""

    def __init__(self, segments, like):
        self.pieces = [(s.t0, s.h, s.y0, s.Q) for s in segments]
        self.like = like

    def times(self, name: str, ref: np.ndarray, a: float, b: float):
        """The points ``ref`` of [-1, 1] mapped to [a, b]: (host array, float64 device array),
        the same numbers, computed by the same float64 operations."""
        base = constant_like(name, ref, self.like, dtype=float64_of(self.like))
        mid, half = 0.5 * (a + b), 0.5 * (b - a)
        return mid + half * np.asarray(ref, dtype=np.float64), mid + half * base

    def at(self, times, a: float, b: float):
        t_host, t_dev = times
        sel = [p for p in self.pieces if min(p[0], p[0] + p[1]) < b and max(p[0], p[0] + p[1]) > a]
        return evaluate_pieces(sel, t_host, t_dev, self.like)

