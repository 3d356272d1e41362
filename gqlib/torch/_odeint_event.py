"""torchdiffeq's ``odeint_event``: ``odeint(..., event_fn=)`` plus the event time's gradient.

See :mod:`._events` for how the event is located and differentiated.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._events import ImplicitFnGradientRerouting
from ._field import UserFunc
from ._odeint import _state, odeint

__all__ = ["odeint_event"]


@torch.compiler.disable  # a graph break: torch.compile of a caller runs the search eagerly
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
