"""Argument checks shared by the public quadrature functions (validate at the door)."""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["check_n", "check_interval", "check_dtype", "check_breakpoints", "check_rule_memory"]

_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))


def check_n(n, name: str = "n") -> int:
    """Return ``n`` as an ``int`` if it is a positive integer, else raise naming ``name``."""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"`{name}` must be a positive integer; got {n!r} "
                        f"(type {type(n).__name__}).")
    n = int(n)
    if n < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {n}.")
    return n


_BYTES_PER_NODE = 48  # nodes and weights (16 bytes) and the asymptotic expansion's temporaries


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover (not POSIX)
        return None


def check_rule_memory(n: int, name: str = "n") -> None:
    """Raise ValueError, before allocating, when an ``n``-point rule cannot fit in memory."""
    need = _BYTES_PER_NODE * n
    have = _physical_memory()
    if have is not None and need > have:
        raise ValueError(f"`{name}` = {n} needs about {need / 2**30:.3g} GiB for the rule's "
                         f"nodes, weights and work arrays; this machine has "
                         f"{have / 2**30:.3g} GiB")


def _real(v, name: str) -> float:
    if isinstance(v, (str, bytes, bool, np.bool_, complex, np.complexfloating)):
        raise TypeError(f"`{name}` must be a real number; got {v!r} (type {type(v).__name__}).")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a real number; got {v!r} "
                        f"(type {type(v).__name__}).") from None


def check_interval(a, b) -> tuple[float, float]:
    """Return ``(float(a), float(b))`` if both are finite reals with ``a < b``."""
    a = _real(a, "a")
    b = _real(b, "b")
    for name, v in (("a", a), ("b", b)):
        if not math.isfinite(v):
            raise ValueError(f"`{name}` must be finite; got {v!r}.")
    if not a < b:
        raise ValueError(f"`a` must be less than `b`; got a = {a!r}, b = {b!r} "
                         "(the caller handles orientation).")
    return a, b


def check_dtype(dtype) -> np.dtype:
    """Return ``np.dtype(dtype)`` if it is float64 or float32."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"`dtype` must be a NumPy dtype; got {dtype!r}.") from None
    if dt not in _DTYPES:
        raise ValueError(f"`dtype` must be one of float64, float32; got {dt.name}.")
    return dt


def check_breakpoints(breakpoints) -> np.ndarray:
    """Return ``breakpoints`` as a float64 array if 1-D, finite, strictly increasing, length >= 2."""
    try:
        bp = np.asarray(breakpoints, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("`breakpoints` must be a 1-D array of real numbers; got "
                        f"{breakpoints!r}.") from None
    if bp.ndim != 1 or bp.shape[0] < 2:
        raise ValueError("`breakpoints` must be 1-D with at least 2 entries; got shape "
                         f"{bp.shape}.")
    bad = np.flatnonzero(~np.isfinite(bp))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"`breakpoints` must be finite; breakpoints[{i}] = {float(bp[i])!r}.")
    bad = np.flatnonzero(~(bp[1:] > bp[:-1]))
    if bad.size:
        i = int(bad[0]) + 1
        raise ValueError(f"`breakpoints` must be strictly increasing; breakpoints[{i}] = "
                         f"{float(bp[i])!r} is not after breakpoints[{i - 1}] = {float(bp[i - 1])!r}.")
    return bp
