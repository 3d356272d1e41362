"""torchdiffeq's step callbacks on the core's step observers.

torchdiffeq calls ``func.callback_step(t0, y0, dt)`` before every step attempt and, for adaptive
methods, ``func.callback_accept_step`` / ``func.callback_reject_step`` after it; the ``_adjoint``
variants the same way during the backward pass. ``t0`` is a float64 0-dim tensor (the step's
start in the user's time), ``dt`` the step's length (positive, also when time runs backwards, as
torchdiffeq reports reversed solves), ``y0`` the state at ``t0`` as the user sees it (a tuple for
tuple states); in the backward pass ``y0`` is the adjoint dL/dy at ``t0``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

from ._field import UserFunc

__all__ = ["CALLBACK_NAMES", "step_observers"]

CALLBACK_NAMES = ("callback_step", "callback_accept_step", "callback_reject_step")
_EVENTS = {"callback_step": "step", "callback_accept_step": "accept",
           "callback_reject_step": "reject"}


def _observer(func: Callable, fn: UserFunc, suffix: str, adaptive: bool,
              method: str) -> Callable | None:
    """One observer calling ``func``'s callbacks named ``callback_*{suffix}``, or None."""
    found = {}
    for name in CALLBACK_NAMES:
        cb = getattr(func, name + suffix, None)
        if cb is None:
            continue
        if not callable(cb):
            raise TypeError(f"`func.{name + suffix}` must be callable as (t0, y0, dt), got "
                            f"{type(cb).__name__}")
        if name != "callback_step" and not adaptive:
            warnings.warn(f"`func.{name + suffix}` is never called with the fixed-step method "
                          f"{method!r} (every step is accepted), as in torchdiffeq", stacklevel=4)
            continue
        found[_EVENTS[name]] = cb
    if not found:
        return None
    tdt = torch.promote_types(torch.float64, fn.dtype)

    def observe(event: str, t0: float, y0: torch.Tensor, h: float) -> None:
        cb = found.get(event)
        if cb is None:
            return
        y = y0 if fn.shapes is None else fn.split(y0)
        cb(torch.tensor(t0, dtype=tdt, device=fn.device), y,
           torch.tensor(abs(h), dtype=tdt, device=fn.device))
    return observe


def step_observers(func: Callable, fn: UserFunc, *, adaptive: bool, method: str,
                   adjoint_adaptive: bool | None = None) -> tuple[Callable | None, Callable | None]:
    """The forward and backward observers for ``func``'s torchdiffeq callbacks (None: none set).

    ``adjoint_adaptive`` is whether the backward pass has accept/reject decisions (None in
    direct mode, where no backward callback is ever called: autograd replays the forward).
    """
    fwd = _observer(func, fn, "", adaptive, method)
    bwd = None
    if adjoint_adaptive is not None:
        bwd = _observer(func, fn, "_adjoint", adjoint_adaptive, method)
    return fwd, bwd
