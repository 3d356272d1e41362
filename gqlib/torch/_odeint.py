"""``odeint`` and ``odeint_adjoint``: torchdiffeq's interface on gqlib's solvers and adjoints.

Direct mode (``adjoint=None``) runs :func:`gqlib.solve` on the tensors with autograd recording, so
backpropagation differentiates the discretisation. Adjoint mode wraps the solve in a
``torch.autograd.Function``: the forward pass solves without a graph, the backward pass hands the
core a vector field whose VJPs come from ``torch.autograd.grad`` and lets
:func:`gqlib.adjoint.gradient` assemble dL/dy0, dL/dt and dL/dtheta.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import gqlib
from gqlib.adjoint import DEFAULT_ADJOINT, AdjointStrategy
from gqlib.adjoint._stiffness import DIRECT_REMEDY, StiffnessMonitor
from gqlib.errors import GradientAccuracyWarning
from gqlib.integrate._policy import check_times
from gqlib.tableaux import get_method

from ._adjoint import (
    AdjointJob,
    OdeintAdjointFn,
    _rng_states,
    adjoint_params_of,
    backward_adaptive,
    exempt_params_of,
    frozen_params_of,
)
from ._callbacks import step_observers
from ._events import locate_event
from ._field import UserFunc, state_norm
from ._options import fixed_grid, resolve_adjoint, resolve_forward

__all__ = ["odeint", "odeint_adjoint", "OdeintStats"]


@dataclass
class OdeintStats:
    """Cost counters of one :func:`odeint` call, filled in as the passes run.

    Attributes
    ----------
    method : str
        The gqlib method that ran the forward pass (torchdiffeq's ``rk4`` shows as ``rk38``).
    adjoint : str or None
        The adjoint strategy's name (``"gq"``, ``"backsolve"``, ``"interpolated"``,
        ``"collocation"``, ``"checkpoint"``), or None for direct backpropagation.
    forward : dict
        The forward solve's ``nfe`` (calls of ``func``), ``n_steps`` (attempts), ``n_accepted``,
        ``n_rejected``; in direct mode also ``stiff_growth``: how far the derivative of the
        steps amplifies a stiff component (nepers, as the checkpoint adjoint's; None where not
        measured: no graph recorded, a method without an estimate, a func drawing random
        numbers).
    backward : dict or None
        After ``backward()`` through an adjoint: ``nfe_f``, ``nfe_vjp_y``, ``nfe_vjp_params``,
        ``n_nodes``, ``n_accepted``, ``n_rejected`` (and the core's further counters) of the
        latest backward pass, and ``nfe_check``: the calls of ``func`` whose graphs were
        searched for tensors outside ``adjoint_params`` (2 at the first backward pass); None
        before it, and always None in direct mode (autograd replays the forward graph: one VJP
        per forward evaluation).
    """

    method: str
    adjoint: str | None
    forward: dict = field(default_factory=dict)
    backward: dict | None = None

    @property
    def nfe(self) -> int:
        """Forward evaluations of ``func``."""
        return int(self.forward.get("nfe", 0))

    @property
    def nfe_backward(self) -> int | None:
        """Backward evaluations of ``func`` (plain and with a VJP), None before backward."""
        if self.backward is None:
            return None
        return int(self.backward.get("nfe_f", 0))


@torch.compiler.disable  # a graph break: torch.compile of a caller runs the solve eagerly
def odeint(func: Callable, y0, t: torch.Tensor, *, rtol=1e-7, atol=1e-9, method: str | None = "dopri5",
           options: dict | None = None, event_fn: Callable | None = None,
           adjoint: str | AdjointStrategy | None = None,
           adjoint_rtol=None, adjoint_atol=None, adjoint_method: str | None = None,
           adjoint_options: dict | None = None,
           adjoint_params: Sequence[torch.Tensor] | None = None, return_stats: bool = False):
    r"""Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0``; torchdiffeq's ``odeint`` on gqlib.

    Every argument torchdiffeq shares has torchdiffeq's meaning. ``adjoint=None`` (the default)
    backpropagates through the solver's operations (as torchdiffeq's ``odeint``); ``"gq"``
    (Gauss-Legendre quadrature adjoint, Norcliffe & Deisenroth 2023), ``"backsolve"`` (Chen et
    al. 2018; ``adjoint_options={"norm": "seminorm"}`` for Kidger et al. 2021) and
    ``"interpolated"`` solve an adjoint equation backwards instead, in O(1) graph memory.

    Parameters
    ----------
    func : callable or nn.Module
        ``func(t, y) -> dy/dt``; ``t`` a 0-dim tensor of y's dtype on y's device, ``y`` shaped
        like ``y0`` (a tuple of tensors for a tuple ``y0``).
    y0 : Tensor or tuple of Tensors
        Initial state, any shape (batch dimensions welcome), float32 or float64, on any device.
    t : Tensor, shape (n,)
        Output times, strictly increasing or decreasing; ``t[0]`` is the initial time.
    rtol, atol : float or Tensor
        Tolerances (adaptive methods), scalars or per element of ``y0`` (tuples per component).
    method : str
        torchdiffeq's names: ``dopri5`` (default), ``dopri8``, ``tsit5``, ``bosh3``,
        ``adaptive_heun``, ``fehlberg2`` (adaptive); ``euler``, ``midpoint``, ``heun2``,
        ``heun3``, ``rk4`` (the 3/8 rule, as in torchdiffeq) (fixed-step); gqlib adds ``heun``,
        ``ralston``, ``rk38``, ``dop853``.
    options : dict
        torchdiffeq's solver options (see ``docs/torch.md``); unknown ones raise.
    event_fn : callable, optional
        ``event_fn(t, y) -> Tensor``: solve from ``t[0]`` (towards ``t[1]``; later times are
        ignored) until its first sign change (of any element), located by bisection on the
        dense output; returns ``(event_t, solution)`` with ``solution`` at ``[t[0], event_t]``,
        differentiable at fixed ``event_t`` in every mode. :func:`odeint_event` adds the event
        time's gradient.
    adjoint : None, str or a strategy object
        None: direct backpropagation. A core strategy (:mod:`gqlib.adjoint`: ``GQAdjoint``,
        ``BacksolveAdjoint``, ``InterpolatedAdjoint``, ``CollocationAdjoint``,
        ``CheckpointAdjoint``) or its alias (``"gq"``, ``"backsolve"``, ``"interpolated"``,
        ``"collocation"``, ``"checkpoint"``); see docs/adjoint.md.
    adjoint_rtol, adjoint_atol, adjoint_method, adjoint_options
        With an alias: the backward solve's settings; default: the forward's (torchdiffeq's
        rules). ``adjoint_options`` also takes the strategy's own settings (``nodes``,
        ``checkpoints``, ``sweeps``, ...). With a strategy object: not allowed (the object holds
        its settings).
    adjoint_params : sequence of Tensors, optional
        The tensors to differentiate in adjoint mode; default: ``func.parameters()`` for an
        ``nn.Module``, and the drift's and diffusion's parameters for a
        :func:`gqlib.sde.wong_zakai` field of two ``nn.Module``s (required for any other callable:
        pass ``()`` if there are none).
    return_stats : bool
        Also return an :class:`OdeintStats` (forward counters now, backward ones after
        ``backward()``).

    Returns
    -------
    Tensor or tuple of Tensors, shape ``(len(t), *y0.shape)``
        The solution at ``t``; ``(solution, stats)`` with ``return_stats=True``.

    Raises
    ------
    TypeError, ValueError
        Invalid arguments, named in the message.
    NotImplementedError
        Double backward through an adjoint; a call under a ``torch.func`` transform.
    gqlib.errors.GQLibError
        A failed solve (step size underflow, non-finite state, too many steps), with the time.

    Examples
    --------
    >>> import torch
    >>> from gqlib.torch import odeint
    >>> k = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    >>> y = odeint(lambda t, y: -k * y, torch.ones(1, dtype=torch.float64),
    ...            torch.tensor([0.0, 1.0], dtype=torch.float64), adjoint="gq",
    ...            adjoint_params=(k,))
    >>> y[-1].sum().backward()
    >>> bool(abs(k.grad + torch.exp(-k.detach())) < 1e-7)   # d/dk exp(-k) = -exp(-k)
    True
    """
    if _functorch_active():
        raise NotImplementedError(
            "gqlib.torch.odeint cannot run under torch.func transforms (vmap, grad, jacrev, "
            "jvp): its step loop decides on the host from the state's values (error norm, "
            "finiteness); batch with a leading dimension of `y0` instead, and differentiate "
            "with backward() or torch.autograd.grad")
    if event_fn is not None and not callable(event_fn):
        raise TypeError(f"`event_fn` must be callable as event_fn(t, y), got "
                        f"{type(event_fn).__name__}")
    if not callable(func):
        raise TypeError(f"`func` must be callable as func(t, y), got {type(func).__name__}")
    if not isinstance(return_stats, bool):
        raise TypeError(f"`return_stats` must be a bool, got {type(return_stats).__name__}")
    state, shapes = _state(y0)
    t_np = _times(t, state)
    rtol_c = _tolerance(rtol, "rtol", shapes, state)
    atol_c = _tolerance(atol, "atol", shapes, state)
    fwd = resolve_forward(method, options, rtol=rtol_c, atol=atol_c)
    adj_options, rowwise = _rowwise_option(adjoint_options, adjoint, shapes, state)
    if adjoint is not None:
        acfg = resolve_adjoint(adjoint, fwd, method=adjoint_method, options=adj_options,
                               adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, rtol=rtol,
                               atol=atol, forward_method=method)
        params = adjoint_params_of(func, adjoint_params)
        frozen = frozen_params_of(func, adjoint_params)
        exempt = exempt_params_of(func, adjoint_params)
    fn = UserFunc(func, shapes, state.dtype, state.device)
    kw = dict(fwd.solve_kwargs)
    span = abs(float(t_np[-1] - t_np[0]))
    stops = _tstops(fwd, fn, state, t, t_np)
    if stops is not None:
        kw["tstops"] = stops
    perturb = fwd.options.get("perturb", False) and t_np.size > 1
    if stops is not None or perturb:
        fn.with_time_map(() if stops is None else stops,
                         ends=(t_np[0], t_np[-1]) if perturb else None)
    if fwd.adaptive:
        kw["norm"] = state_norm(fwd.norm, fn, state.shape)
    else:
        # without step_size: one step per interval between landing points (t, tstops, grid)
        kw["step_size"] = fwd.step_size if fwd.step_size is not None else 2.0 * span or 1.0
    if event_fn is not None:
        direction = 1.0 if t_np.size < 2 or t_np[-1] >= t_np[0] else -1.0
        t_e, _ = locate_event(fn, state.detach(), float(t_np[0]), direction, event_fn,
                              {k: v for k, v in kw.items() if k != "tstops"}
                              | ({"tstops": fwd.jump_t} if fwd.jump_t is not None else {}))
        event_t = torch.tensor(t_e, dtype=t.dtype, device=t.device)
        if t_e == float(t_np[0]):
            out = tuple(torch.stack([c, c]) for c in y0) if shapes is not None else \
                torch.stack([y0, y0])
            return (event_t, out, OdeintStats(method=fwd.method, adjoint=None)) if return_stats \
                else (event_t, out)
        res = odeint(func, y0, torch.stack([t[0], event_t.to(t.dtype)]), rtol=rtol, atol=atol,
                     method=method, options=options, adjoint=adjoint, adjoint_rtol=adjoint_rtol,
                     adjoint_atol=adjoint_atol, adjoint_method=adjoint_method,
                     adjoint_options=adjoint_options, adjoint_params=adjoint_params,
                     return_stats=return_stats)
        return (event_t, *res) if return_stats else (event_t, res)
    # after the event search: the callbacks fire in the solve that follows it
    fwd_obs, bwd_obs = step_observers(
        func, fn, adaptive=fwd.adaptive, method=method or "dopri5",
        adjoint_adaptive=None if adjoint is None else backward_adaptive(acfg.strategy, fwd))
    if fwd_obs is not None:
        kw["observer"] = fwd_obs
    stats = OdeintStats(method=fwd.method,
                        adjoint=None if adjoint is None else acfg.strategy.name)

    if adjoint is None:
        ys = _direct(fn, state, t, t_np, kw, stats)
    else:
        ctx = AdjointJob(fn=fn, t=t, t_np=t_np, solve_kwargs=kw, cfg=acfg, fwd=fwd, span=span,
                          stats=stats, params=params, shape=state.shape, observer=bwd_obs,
                          rowwise=rowwise,
                          grad_params=torch.is_grad_enabled() and bool(params), frozen=frozen,
                          may_backward=torch.is_grad_enabled() and (
                              bool(params) or state.requires_grad or t.requires_grad),
                          exempt=exempt)
        ys = OdeintAdjointFn.apply(ctx, state, t, *params)
    out = ys if shapes is None else fn.split(ys)
    return (out, stats) if return_stats else out


@torch.compiler.disable
def odeint_adjoint(func: Callable, y0, t: torch.Tensor, *, rtol=1e-7, atol=1e-9,
                   method: str | None = None, options: dict | None = None,
                   event_fn: Callable | None = None, adjoint_rtol=None, adjoint_atol=None,
                   adjoint_method: str | None = None, adjoint_options: dict | None = None,
                   adjoint_params: Sequence[torch.Tensor] | None = None,
                   return_stats: bool = False, adjoint: str | AdjointStrategy | None = None):
    """torchdiffeq's ``odeint_adjoint`` (same signature) with gqlib's default strategy.

    Equivalent to ``odeint(..., adjoint=gqlib.adjoint.DEFAULT_ADJOINT)`` (the same default as
    :func:`gqlib.adjoint.gradient`); switch from torchdiffeq by changing the import.
    ``adjoint_options={"norm": "seminorm"}`` is accepted; it matters only to a strategy that puts
    the parameter gradient in its backward solver (backsolve). ``return_stats`` and ``adjoint``
    (another strategy) are gqlib's additions.

    Examples
    --------
    >>> import torch
    >>> from gqlib.torch import odeint_adjoint
    >>> f = torch.nn.Linear(2, 2).double()
    >>> y = odeint_adjoint(lambda t, y: f(y), torch.ones(2, dtype=torch.float64),
    ...                    torch.linspace(0, 1, 3, dtype=torch.float64),
    ...                    adjoint_params=tuple(f.parameters()))
    >>> y.shape
    torch.Size([3, 2])
    """
    return odeint(func, y0, t, rtol=rtol, atol=atol, method=method, options=options,
                  event_fn=event_fn, adjoint=DEFAULT_ADJOINT if adjoint is None else adjoint,
                  adjoint_rtol=adjoint_rtol,
                  adjoint_atol=adjoint_atol, adjoint_method=adjoint_method,
                  adjoint_options=adjoint_options, adjoint_params=adjoint_params,
                  return_stats=return_stats)


# -- validation at the door --------------------------------------------------------------------
def _rowwise_option(options: Any, adjoint: Any, shapes, state: torch.Tensor):
    """``adjoint_options`` without gqlib's ``rowwise`` key, and that key (default False).

    ``rowwise=True`` is the user's word that ``func`` ignores ``t`` and maps each row of ``y``
    (dim 0) on its own: a small-batch backward pass then stacks the rows of many calls into one
    parameter VJP (``gqlib.adjoint._rows``; every stack is checked against the calls' values).
    """
    if not isinstance(options, dict) or "rowwise" not in options:
        return options, False
    options = dict(options)
    rowwise = options.pop("rowwise")
    if not isinstance(rowwise, bool):
        raise TypeError(f"adjoint_options['rowwise'] must be a bool, got {type(rowwise).__name__}")
    if adjoint is None:
        raise ValueError("adjoint_options['rowwise'] needs an adjoint (adjoint=None "
                         "backpropagates directly)")
    if rowwise and (shapes is not None or state.ndim < 2):
        got = "a tuple" if shapes is not None else f"shape {tuple(state.shape)}"
        raise ValueError("adjoint_options['rowwise']=True needs a tensor y0 with a batch "
                         f"dimension (dim 0) of rows, got {got}")
    return options or None, rowwise



def _state(y0) -> tuple[torch.Tensor, list[torch.Size] | None]:
    """The core's state: ``y0`` itself, or the flat concatenation of a tuple ``y0``."""
    if torch.is_tensor(y0):
        _check_float(y0, "y0")
        return y0, None
    if isinstance(y0, (tuple, list)):
        if len(y0) == 0:
            raise ValueError("`y0` must be a tensor or a non-empty tuple of tensors, got ()")
        for i, c in enumerate(y0):
            if not torch.is_tensor(c):
                raise TypeError(f"`y0[{i}]` must be a torch.Tensor, got {type(c).__name__}")
            _check_float(c, f"y0[{i}]")
            if c.device != y0[0].device:
                raise ValueError(f"`y0[{i}]` is on {c.device} but `y0[0]` on {y0[0].device}; "
                                 "put all components on one device")
        return torch.cat([c.reshape(-1) for c in y0]), [c.shape for c in y0]
    raise TypeError(f"`y0` must be a torch.Tensor or a tuple of tensors, got {type(y0).__name__}")


def _functorch_active() -> bool:
    """Whether a torch.func transform (vmap, grad, ...) is tracing this call."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    return bool(active()) if active is not None else False


def _check_float(x: torch.Tensor, name: str) -> None:
    if not x.dtype.is_floating_point:
        raise TypeError(f"`{name}` must be a floating point tensor (float32 or float64), got "
                        f"dtype {x.dtype}")


def _times(t, state: torch.Tensor) -> np.ndarray:
    if not torch.is_tensor(t):
        raise TypeError(f"`t` must be a 1-D torch.Tensor of times, got {type(t).__name__}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"`t` must be a floating point tensor, got dtype {t.dtype}")
    if t.ndim != 1:
        raise ValueError(f"`t` must be one-dimensional, got shape {tuple(t.shape)}")
    return check_times(t)  # one sync: the times live on the host as float64


def _tolerance(value, name: str, shapes, state: torch.Tensor):
    """A float, or a tensor of per-element tolerances on the state's dtype and device."""
    if isinstance(value, (tuple, list)):
        if shapes is None:
            raise TypeError(f"`{name}` may be a tuple only for a tuple `y0`, got a "
                            f"{type(value).__name__}")
        if len(value) != len(shapes):
            raise ValueError(f"a tuple `{name}` must have one entry per component of `y0` "
                             f"({len(shapes)}), got {len(value)}")
        parts = [torch.as_tensor(v, dtype=state.dtype, device=state.device).expand(s.numel())
                 for v, s in zip(value, shapes, strict=True)]
        for v in value:
            if torch.is_tensor(v) and v.numel() != 1:
                raise ValueError(f"each entry of a tuple `{name}` must be a scalar")
        return torch.cat(parts)
    if torch.is_tensor(value):
        if value.requires_grad:
            raise ValueError(f"`{name}` cannot require gradient")
        if value.numel() == 1:
            return float(value.item())
        target = state.shape
        try:
            ok = torch.broadcast_shapes(value.shape, target) == target
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"`{name}` of shape {tuple(value.shape)} does not broadcast to the "
                             f"state's shape {tuple(target)}")
        return value.detach().to(dtype=state.dtype, device=state.device)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a positive number or a tensor, got "
                        f"{type(value).__name__}")
    return float(value)


def _tstops(fwd, fn: UserFunc, state: torch.Tensor, t: torch.Tensor, t_np: np.ndarray):
    """``jump_t``, ``step_t`` and, where asked for, the fixed grid's points: the core's tstops."""
    parts = [x for x in (fwd.jump_t, fwd.step_t) if x is not None]
    if fwd.grid_constructor is not None:
        grid = fwd.grid_constructor(fn.call, state, t)
        if not torch.is_tensor(grid) or grid.ndim != 1 or grid.numel() < 2:
            raise ValueError("options['grid_constructor'] must return a 1-D tensor of at least "
                             f"two times, got {grid!r}")
        g = check_times(grid, "grid")
        if g[0] != t_np[0] or g[-1] != t_np[-1]:
            raise ValueError(f"options['grid_constructor'] must return a grid from t[0] = "
                             f"{t_np[0]} to t[-1] = {t_np[-1]}, got one from {g[0]} to {g[-1]}")
        parts.append(g[1:-1])
    elif fwd.step_size is not None and fwd.options.get("perturb", False) and t_np.size > 1:
        parts.append(fixed_grid(t_np, fwd.step_size))
    if fwd.options.get("perturb", False):
        parts.append(t_np[1:-1])  # the output times are grid points too: one-sided there
    if not parts:
        return None
    return np.unique(np.concatenate(parts))


# -- direct backpropagation -----------------------------------------------------------------------

def _direct(fn: UserFunc, state: torch.Tensor, t: torch.Tensor, t_np: np.ndarray, kw: dict,
            stats: OdeintStats) -> torch.Tensor:
    """Solve with autograd recording. If ``t`` needs a gradient, zero-valued terms route the
    exact dL/dt_i = g_i . f(t_i, y_i) (i > 0) and dL/dt_0 = -a(t_0+) . f(t_0, y_0) to it."""
    t_grad = t.requires_grad and torch.is_grad_enabled()
    y_in = state
    if t_grad:
        tt = t.to(state.dtype)
        with torch.no_grad():
            f0 = fn.call(tt[0].detach(), state)
        y_in = state + (tt[0].detach() - tt[0]) * f0  # value y0; d/dt0 = -f0 . dL/dy0
    # the stiffness check of the checkpoint adjoint, on the steps autograd will differentiate
    monitor = StiffnessMonitor(get_method(stats.method), torch) if torch.is_grad_enabled() \
        else None
    if monitor is not None and monitor.active:
        watch = monitor.watch

        def on_step(seg):  # no graph (nothing requires grad): no steps to differentiate
            if seg.y1.requires_grad:
                watch(seg)

        before = _rng_states(state.device)
        sol = gqlib.solve(fn, y_in, t_np, on_step=on_step, **kw)
        if not sol.y.requires_grad or not all(
                torch.equal(a, b) for a, b in zip(before, _rng_states(state.device), strict=True)):
            monitor = None  # random draws: their differences say nothing of the Jacobian
    else:
        sol = gqlib.solve(fn, y_in, t_np, **kw)
        monitor = None
    stats.forward = dict(sol.stats)
    stats.forward["stiff_growth"] = None if monitor is None else monitor.growth
    ys = sol.y
    if monitor is not None:
        msg = monitor.forward_warning(stats.method, DIRECT_REMEDY,
                                      "direct backpropagation (adjoint=None)")
        if msg is not None:
            warnings.warn(msg, GradientAccuracyWarning, stacklevel=4)
    if t_grad:
        with torch.no_grad():
            fs = torch.stack([f0] + [fn.call(tt[i].detach(), ys[i]) for i in range(1, len(t_np))])
        dt = (tt - tt.detach()).reshape(-1, *([1] * state.ndim))
        ys = ys + dt * fs  # value ys; d/dt_i = g_i . f_i (cancels the shift above at i = 0)
        stats.forward["nfe"] += len(t_np)
    return ys
