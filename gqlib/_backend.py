"""Array-namespace helpers: the only place that knows how to talk to array libraries.

The core is written against the array API standard (via ``array_api_compat``) so the same driver
runs on NumPy arrays and on torch tensors (CPU or CUDA) without importing torch. Time is always a
Python float (float64) on the host, whatever the state's dtype and device.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj
from array_api_compat import device as array_device
from array_api_compat import to_device as array_to_device

__all__ = ["namespace", "as_state", "to_host", "to_host_float", "constant_like", "device_of",
           "float64_of"]


def namespace(*xs: Any):
    """The array-API namespace of ``xs`` (NumPy for Python scalars and lists)."""
    arrays = [x for x in xs if is_array_api_obj(x)]
    if not arrays:
        return array_namespace(np.asarray(0.0))
    return array_namespace(*arrays)


def as_state(y0: Any, name: str = "y0"):
    """Validate an initial state: a real floating array (NumPy array, torch tensor, ...).

    Python scalars and lists become float64 NumPy arrays; integer, boolean and complex arrays are
    rejected (a silent cast to float would hide a mistake such as ``np.array([1, 2])``).
    """
    if not is_array_api_obj(y0):
        if isinstance(y0, bool):
            raise TypeError(f"`{name}` must be a real floating array, got bool")
        try:
            arr = np.asarray(y0)
        except Exception as exc:  # pragma: no cover
            raise TypeError(f"`{name}` must be an array, got {type(y0).__name__}") from exc
        if arr.dtype.kind in "iub":
            arr = arr.astype(np.float64)
        y0 = arr
    xp = array_namespace(y0)
    if not (xp.isdtype(y0.dtype, "real floating") and y0.dtype in (xp.float32, xp.float64)):
        raise TypeError(f"`{name}` must have a real floating dtype (float32 or float64), got {y0.dtype}")
    if math.prod(y0.shape) == 0:
        raise ValueError(f"`{name}` must have at least one element, got shape {tuple(y0.shape)}")
    return xp, y0


def device_of(x: Any):
    """The device of array ``x`` (array-API ``device``)."""
    return array_device(x)


def float64_of(like: Any):
    """The float64 dtype of ``like``'s namespace (host times on ``like``'s device)."""
    return array_namespace(like).float64


def to_host(x: Any, dtype: Any = None) -> np.ndarray:
    """``x`` as a NumPy array on the host: detached from autograd, copied off its device.

    Duck-typed (no framework import): a ``detach()`` method leaves the autograd graph, and an
    array NumPy cannot read in place is first moved with array-API ``to_device(x, "cpu")``.
    """
    detach = getattr(x, "detach", None)
    if detach is not None and callable(detach):
        x = detach()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, RuntimeError):
        if not is_array_api_obj(x):
            raise
        return np.asarray(array_to_device(x, "cpu"), dtype=dtype)


def to_host_float(x: Any) -> float:
    """One device-to-host scalar sync (detached from any autograd graph)."""
    detach = getattr(x, "detach", None)
    return float(detach() if detach is not None else x)


def detached(x: Any) -> Any:
    """``x`` outside any autograd graph, on its device (duck-typed: ``detach()`` where the array
    has one, else ``x``)."""
    detach = getattr(x, "detach", None)
    return detach() if callable(detach) else x


_CONSTANTS: dict = {}


def constant_like(name: str, values, like, dtype=None):
    """``values`` (host data) as an array in ``like``'s namespace, dtype and device, cached.

    Tableau rows, exponent ranges and DCT matrices are copied to an accelerator once, not at
    every step: each host-to-device copy from pageable memory costs a stream synchronisation.
    ``name`` must identify ``values`` uniquely.
    """
    dtype = like.dtype if dtype is None else dtype
    dev = array_device(like)
    key = (name, dtype, dev)  # dtype and device objects hash cheaply; their str() does not
    arr = _CONSTANTS.get(key)
    if arr is None:
        xp = array_namespace(like)
        arr = xp.asarray(np.asarray(values), dtype=dtype, device=dev)
        _CONSTANTS[key] = arr
    return arr


def to_host_array(x: Any) -> np.ndarray:
    """``x`` as a NumPy array on the host, outside any autograd graph (duck-typed, no imports).

    Arrays that own a ``detach()`` (autograd frameworks) leave the graph first; arrays on an
    accelerator, which NumPy refuses, move to the host by the array API's ``to_device``.
    """
    if isinstance(x, (np.ndarray, np.generic, float, int, list, tuple)):
        return np.asarray(x)
    detach = getattr(x, "detach", None)
    if callable(detach):
        x = detach()
    try:
        return np.asarray(x)
    except (TypeError, RuntimeError):  # device memory: NumPy needs an explicit copy to the host
        from array_api_compat import to_device

        return np.asarray(to_device(x, "cpu"))
