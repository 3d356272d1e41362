"""Validation at the door: shared argument checks for the public solve functions."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .._backend import to_host
from ._policy import check_times  # the one time validator; re-exported for the adjoints

__all__ = ["check_step_bounds", "check_times", "check_tolerance", "check_positive", "check_max_steps", "check_tstops",
           "check_derivative"]


def check_tolerance(value: Any, name: str, shape: tuple | None = None):
    """A positive finite scalar, or a positive finite array broadcastable to the state's
    ``shape`` (without enlarging it)."""
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be a positive number, got bool")
    if isinstance(value, numbers.Real):
        v = float(value)
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"`{name}` must be positive and finite, got {value!r}")
        return v
    vals = to_host(value, np.float64)
    if vals.size == 0 or not np.all(vals > 0) or not np.all(np.isfinite(vals)):
        raise ValueError(f"`{name}` must be positive and finite, got {value!r}")
    if shape is not None:
        try:
            ok = np.broadcast_shapes(tuple(vals.shape), shape) == shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"`{name}` of shape {tuple(vals.shape)} must broadcast to the state's "
                             f"shape {shape}")
    return value


def check_positive(value: Any, name: str, allow_none: bool = True) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a positive number, got {type(value).__name__}")
    v = float(value)
    if not (v > 0 and math.isfinite(v)):
        raise ValueError(f"`{name}` must be positive and finite, got {value!r}")
    return v


def check_max_steps(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"`max_steps` must be a positive integer, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"`max_steps` must be a positive integer, got {value}")
    return int(value)


def check_tstops(tstops: Any, t0: float, t1: float) -> tuple[float, ...]:
    """Discontinuity points: finite; those strictly inside (t0, t1) are kept, in order of travel."""
    if tstops is None:
        return ()
    arr = check_times_like(tstops)
    d = 1.0 if t1 >= t0 else -1.0
    inside = sorted({float(s) for s in arr if d * (s - t0) > 0 and d * (t1 - s) > 0}, key=lambda s: d * s)
    return tuple(inside)


def check_times_like(values: Any) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`tstops` must be a 1-D array of times, got {type(values).__name__}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError("`tstops` must be finite")
    return arr


def check_derivative(xp, dy, y0, name: str = "f") -> None:
    """The first evaluation of the vector field must match the state's type, shape and dtype."""
    from array_api_compat import is_array_api_obj

    if not is_array_api_obj(dy):
        raise TypeError(f"`{name}(t, y)` must return an array like `y0` ({type(y0).__name__}), "
                        f"got {type(dy).__name__}")
    if tuple(dy.shape) != tuple(y0.shape):
        raise ValueError(f"`{name}(t, y)` returned shape {tuple(dy.shape)}; expected y0's shape "
                         f"{tuple(y0.shape)}")
    if dy.dtype != y0.dtype:
        raise TypeError(f"`{name}(t, y)` returned dtype {dy.dtype}; expected y0's dtype {y0.dtype}")


def check_step_bounds(controller: Any, min_step: Any, max_step: Any) -> tuple[float, float]:
    """A step-size controller (None or a :class:`~gqlib.PIController`) and the step bounds,
    validated at the door of every solve: ``(min_step, max_step)``, 0 and inf when not given."""
    from ._controller import PIController

    if controller is not None and not isinstance(controller, PIController):
        raise TypeError(f"`controller` must be a PIController, got {type(controller).__name__}")
    min_step = 0.0 if min_step in (None, 0, 0.0) else check_positive(min_step, "min_step")
    max_step = math.inf if max_step in (None, math.inf) else check_positive(max_step, "max_step")
    if min_step > max_step:
        raise ValueError(f"`min_step` ({min_step}) must not exceed `max_step` ({max_step})")
    return min_step, max_step
