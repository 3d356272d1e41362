"""Validation at the door: shared argument checks for the public solve functions."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["check_times", "check_tolerance", "check_positive", "check_max_steps", "check_tstops",
           "check_derivative"]


def check_times(t: Any, name: str = "t") -> np.ndarray:
    """Output times as a 1-D float64 host array, finite and strictly monotonic."""
    try:
        if hasattr(t, "detach"):
            t_np = np.asarray(t.detach().cpu().double().numpy() if hasattr(t, "cpu") else t)
        else:
            t_np = np.asarray(t, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must be a 1-D array of times, got {type(t).__name__}") from exc
    if t_np.dtype.kind not in "fiu":
        raise TypeError(f"`{name}` must hold real numbers, got dtype {t_np.dtype}")
    t_np = t_np.astype(np.float64)
    if t_np.ndim != 1 or t_np.size < 1:
        raise ValueError(f"`{name}` must be a non-empty 1-D array, got shape {t_np.shape}")
    if not np.all(np.isfinite(t_np)):
        i = int(np.flatnonzero(~np.isfinite(t_np))[0])
        raise ValueError(f"`{name}` must be finite; {name}[{i}] = {t_np[i]}")
    if t_np.size > 1:
        d = np.diff(t_np)
        direction = np.sign(t_np[-1] - t_np[0])
        bad = np.flatnonzero(d * direction <= 0) if direction != 0 else np.array([0])
        if bad.size:
            i = int(bad[0]) + 1
            word = "after" if direction >= 0 else "before"
            raise ValueError(f"`{name}` must be strictly monotonic; {name}[{i}] = {t_np[i]} is not "
                             f"{word} {name}[{i - 1}] = {t_np[i - 1]}")
    return t_np


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
    arr = np.asarray(value, dtype=np.float64) if not hasattr(value, "detach") else value
    vals = np.asarray(arr.detach().cpu().numpy() if hasattr(arr, "detach") else arr)
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
