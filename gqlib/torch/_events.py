"""Terminal events: ``event_fn`` in ``odeint`` and torchdiffeq's ``odeint_event``.

The solve runs until the first sign change of ``event_fn(t, y)`` (of any component for a vector
``event_fn``, torchdiffeq's ``combine_event_functions``), found step by step with the core's
:class:`gqlib.Stepper` and located by bisection on the accepted step's interpolant (its dense
output) to a few ulps of the time's dtype. The state on ``[t0, t_event]`` is then solved again by
``odeint`` with ``t_event`` held fixed, so that direct backpropagation and every adjoint strategy
differentiate it as usual; :func:`odeint_event` reroutes the gradient of the event time by the
implicit function theorem (Chen, Amos & Nickel, ICLR 2021):

    dc/dt_e = dc/dt + dc/dy . f(t_e, y_e),    ybar += -(tbar + ybar . f) / (dc/dt_e) * dc/dy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

import gqlib

from ._field import UserFunc

__all__ = ["locate_event", "odeint_event", "ImplicitFnGradientRerouting"]

_HORIZON = 1e12  # "until the event": the stepper's end time; max_num_steps bounds the work


def _event_value(event_fn: Callable, fn: UserFunc, signs: torch.Tensor | None):
    """``c(t, y)`` as one scalar that starts positive: ``min(c * sign(c(t0, y0)))``."""
    def c(t: float, y: torch.Tensor) -> torch.Tensor:
        yu = y if fn.shapes is None else fn.split(y)
        v = event_fn(fn.t_tensor(t), yu)
        if not torch.is_tensor(v):
            raise TypeError(f"`event_fn(t, y)` must return a tensor, got {type(v).__name__}")
        return v if signs is None else torch.min(v * signs)
    return c


def locate_event(fn: UserFunc, state: torch.Tensor, t0: float, direction: float, event_fn: Callable,
                 solve_kwargs: dict) -> tuple[float, int]:
    """The first root of ``event_fn`` after ``t0`` in ``direction``; also the evaluations spent.

    Steps with the forward settings (no observer: the callbacks fire in the solve that follows)
    and bisects on the step whose end changed the sign.
    """
    kw = {k: v for k, v in solve_kwargs.items() if k not in ("method", "observer")}
    tab = gqlib.METHODS[solve_kwargs["method"]]
    with torch.no_grad():
        raw = _event_value(event_fn, fn, None)(t0, state)
        signs = torch.sign(raw)
        if bool((signs == 0).any()):
            return t0, 0
        c = _event_value(event_fn, fn, signs)
        t_end = t0 + direction * _HORIZON
        stepper = gqlib.Stepper(fn, t0, state, t_end, tab, **kw)
        while True:
            seg = stepper.step()
            if float(c(seg.t1, seg.y1)) <= 0.0:
                break
            if stepper.t == t_end:
                raise RuntimeError(f"no event found before t = {t_end}: event_fn keeps its sign")
        lo, hi = seg.t0, seg.t1  # c > 0 at lo, <= 0 at hi
        eps = float(torch.finfo(fn.dtype).eps)
        tol = 4 * eps * max(abs(lo), abs(hi), abs(hi - lo))
        for _ in range(200):
            if abs(hi - lo) <= tol:
                break
            mid = 0.5 * (lo + hi)
            if float(c(mid, seg(mid))) > 0.0:
                lo = mid
            else:
                hi = mid
        return hi, int(stepper.stats["nfe"])


class ImplicitFnGradientRerouting(torch.autograd.Function):
    """Identity on ``(t_e, y_e)`` whose backward adds the implicit function theorem's term."""

    @staticmethod
    def forward(ctx, fn: UserFunc, event_fn: Callable, event_t: torch.Tensor,
                state_t: torch.Tensor):
        ctx.fn, ctx.event_fn = fn, event_fn
        ctx.save_for_backward(event_t, state_t)
        return event_t.detach().clone(), state_t.detach().clone()

    @staticmethod
    def backward(ctx, grad_t, grad_state):
        fn, event_fn = ctx.fn, ctx.event_fn
        event_t, state_t = ctx.saved_tensors
        with torch.enable_grad():
            te = event_t.detach().to(fn.dtype).clone().requires_grad_(True)
            ye = state_t.detach().clone().requires_grad_(True)
            with torch.no_grad():
                f_val = fn.call(te.detach(), ye.detach())
            c = event_fn(te, ye if fn.shapes is None else fn.split(ye))
            par_dt, dstate = torch.autograd.grad(c, (te, ye), torch.ones_like(c),
                                                 allow_unused=True)
        par_dt = torch.zeros_like(te) if par_dt is None else par_dt
        dstate = torch.zeros_like(ye) if dstate is None else dstate
        dcdt = par_dt + torch.sum(dstate * f_val)
        g_t = (torch.zeros_like(te) if grad_t is None else grad_t.to(fn.dtype))
        g_y = torch.zeros_like(ye) if grad_state is None else grad_state
        total_t = g_t + torch.sum(g_y * f_val)
        return None, None, None, g_y - dstate * (total_t / dcdt)


def odeint_event(func: Callable, y0, t0: torch.Tensor, *, event_fn: Callable,
                 reverse_time: bool = False, odeint_interface: Callable | None = None, **kwargs):
    """Solve until ``event_fn(t, y) = 0``; the event time differentiable (torchdiffeq's API).

    Parameters
    ----------
    func, y0
        As in :func:`gqlib.torch.odeint`.
    t0 : Tensor
        Initial time (0-dim or one element).
    event_fn : callable
        ``event_fn(t, y) -> Tensor``; the solve stops at the first sign change of any element.
        Its own parameters get no gradient (as in torchdiffeq).
    reverse_time : bool
        Integrate towards decreasing time.
    odeint_interface : callable
        :func:`gqlib.torch.odeint` (default) or :func:`gqlib.torch.odeint_adjoint`.
    **kwargs
        The rest of ``odeint``'s arguments (``rtol``, ``method``, ``options``, ``adjoint`` ...).

    Returns
    -------
    event_t : Tensor
        The event time, with gradients by the implicit function theorem.
    solution : Tensor or tuple of Tensors, shape ``(2, *y0.shape)``
        ``y(t0)`` and ``y(event_t)``.

    Examples
    --------
    >>> import torch
    >>> from gqlib.torch import odeint_event
    >>> h = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    >>> g = torch.tensor(9.81, dtype=torch.float64)
    >>> fall = lambda t, y: (y[1], -g * torch.ones_like(y[1]))        # height, velocity
    >>> t_e, sol = odeint_event(fall, (h, torch.zeros((), dtype=torch.float64)),
    ...                         torch.tensor(0.0, dtype=torch.float64),
    ...                         event_fn=lambda t, y: y[0], rtol=1e-10, atol=1e-12)
    >>> bool(abs(t_e - (2 * h / g).sqrt()) < 1e-8)                    # sqrt(2 h / g)
    True
    >>> t_e.backward(); bool(abs(h.grad - 1 / (2 * h * g).sqrt()) < 1e-6)
    True
    """
    from ._odeint import _state, odeint

    odeint_interface = odeint if odeint_interface is None else odeint_interface
    if not torch.is_tensor(t0) or t0.numel() != 1:
        raise TypeError("`t0` must be a tensor of one time")
    one = torch.ones(1, dtype=t0.dtype, device=t0.device)
    t = torch.cat([t0.reshape(-1), t0.reshape(-1).detach() + (-one if reverse_time else one)])
    event_t, solution = odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
    state, shapes = _state(y0)
    fn = UserFunc(func, shapes, state.dtype, state.device, check=False)
    if shapes is None:
        state_t = solution[-1]
    else:
        state_t = torch.cat([s[-1].reshape(-1) for s in solution])
    with torch.no_grad():  # the component that has its root: torchdiffeq's combined event_fn
        signs = torch.sign(event_fn(t[0].detach().to(state.dtype), y0 if shapes is None else
                                    tuple(c.detach() for c in y0)))

    def combined(t_, y_):
        return torch.min(event_fn(t_, y_) * signs)

    event_t, state_t = ImplicitFnGradientRerouting.apply(fn, combined, event_t, state_t)
    if shapes is None:
        solution = torch.cat([solution[:-1], state_t[None]], dim=0)
    else:
        parts = fn.split(state_t)
        solution = tuple(torch.cat([s[:-1], p[None]], dim=0)
                         for s, p in zip(solution, parts, strict=True))
    return event_t, solution
