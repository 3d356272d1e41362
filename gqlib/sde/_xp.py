"""Array-namespace plumbing for the SDE module (NumPy core, other namespaces on demand).

Noise coefficients and Brownian values are computed in NumPy float64. A state from another namespace
(a torch tensor, say) asks for them in its own namespace, device and dtype; :class:`ConversionCache`
converts once per (namespace, device, dtype) and keeps the result.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_numpy_namespace

from .._backend import device_of as _device
from .._backend import namespace  # noqa: F401  (re-exported for the SDE modules)
from .._backend import to_host_array as to_numpy  # noqa: F401  (re-exported)

__all__ = ["namespace", "is_numpy", "to_numpy", "convert_like", "ConversionCache"]


def is_numpy(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic, float, int))


def _key(xp, device, dtype) -> tuple:
    return (xp.__name__, str(device), str(dtype))


def convert_like(a: np.ndarray, like: Any, dtype=None):
    """NumPy ``a`` as an array of ``like``'s namespace, device and (floating) dtype."""
    if isinstance(like, np.ndarray) or like is None:
        return np.asarray(a, dtype=dtype or getattr(like, "dtype", None) or a.dtype)
    xp = array_namespace(like)
    return xp.asarray(a, device=_device(like), dtype=dtype or like.dtype)


class ConversionCache:
    """Holds NumPy arrays and hands out converted copies, one per (namespace, device, dtype)."""

    def __init__(self, **arrays: np.ndarray):
        self._np = dict(arrays)
        self._cache: dict[tuple, dict[str, Any]] = {}

    def numpy(self, name: str) -> np.ndarray:
        return self._np[name]

    def get(self, name: str, like: Any = None, xp=None, device=None, dtype=None):
        """Array ``name`` in the namespace/device/dtype of ``like`` (or as given explicitly)."""
        if like is not None and xp is None:
            if isinstance(like, np.ndarray):
                xp = None
                dtype = dtype or like.dtype
            else:
                xp = array_namespace(like)
                device = _device(like) if device is None else device
                dtype = like.dtype if dtype is None else dtype
        if xp is None or is_numpy_namespace(xp):
            a = self._np[name]
            if dtype is None or np.dtype(dtype) == a.dtype:
                return a
            key = ("numpy", "cpu", str(np.dtype(dtype)))
            entry = self._cache.setdefault(key, {})
            if name not in entry:
                entry[name] = a.astype(dtype)
            return entry[name]
        key = _key(xp, device, dtype)
        entry = self._cache.setdefault(key, {})
        if name not in entry:
            # copy=True: on the CPU torch would otherwise share (read-only) NumPy memory
            entry[name] = xp.asarray(self._np[name], device=device, dtype=dtype, copy=True)
        return entry[name]
