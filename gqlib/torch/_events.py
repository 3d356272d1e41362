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

__all__ = ["locate_event", "ImplicitFnGradientRerouting"]

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

    Steps with the forward settings and bisects on the step whose end changed the sign.
    """
    kw = {k: v for k, v in solve_kwargs.items() if k != "method"}
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
