"""The only module that imports numba.

``jit`` compiles module-level kernels with ``cache=True`` and ``fastmath=False``, lazily on first
call. Set the environment variable ``GQLIB_DISABLE_JIT=1`` to run every kernel as plain Python
(the decorated object then still exposes ``.py_func`` so callers need not care).
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable
from typing import Any

DISABLED = os.environ.get("GQLIB_DISABLE_JIT", "0") not in ("", "0", "false", "False")

try:  # numba is a base dependency; the guard only serves exotic platforms.
    import numba as _numba
except ImportError:  # pragma: no cover
    _numba = None
    DISABLED = True

__all__ = ["jit", "plain", "DISABLED", "is_jitted", "prange", "typed_list", "numba_types",
           "wap_api"]


class _PlainFunction:
    """Stand-in for a numba dispatcher when jitting is disabled."""

    def __init__(self, func: Callable):
        self.py_func = func
        self.__name__ = getattr(func, "__name__", "kernel")
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    def __call__(self, *args, **kwargs):
        return self.py_func(*args, **kwargs)


def jit(func: Callable | None = None, **options: Any):
    """Compile ``func`` with numba (``nopython``, ``cache=True``, ``fastmath=False``)."""

    def wrap(f: Callable):
        if DISABLED:
            return _PlainFunction(f)
        opts = {"cache": True, "fastmath": False, "nogil": True}
        opts.update(options)
        return _numba.njit(**opts)(f)

    return wrap(func) if func is not None else wrap


_TWINS: dict = {}


def plain(kernel: Callable) -> Callable:
    """The pure-Python twin of a kernel: its ``py_func`` with every kernel it calls replaced by
    that kernel's twin, recursively.

    A kernel's ``py_func`` alone still calls the *compiled* kernels it uses (numba dispatch from
    Python on every call, and a compilation on the first); the twin runs the same source with no
    numba at all, for drivers that call the kernels from Python. Built once per kernel, after its
    module is imported (its globals are copied then).
    """
    py = getattr(kernel, "py_func", kernel)
    twin = _TWINS.get(py)
    if twin is not None:
        return twin
    env = dict(py.__globals__)
    twin = types.FunctionType(py.__code__, env, py.__name__, py.__defaults__, py.__closure__)
    twin.__doc__ = py.__doc__
    _TWINS[py] = twin
    for name in py.__code__.co_names:
        value = env.get(name)
        if isinstance(value, _PlainFunction) or is_jitted(value):
            env[name] = plain(value)
    return twin


def is_jitted(f: Any) -> bool:
    """True if ``f`` is a numba CPU dispatcher (a function compiled with ``numba.njit``)."""
    if _numba is None:
        return False
    from numba.core.registry import CPUDispatcher

    return isinstance(f, CPUDispatcher)


if _numba is not None and not DISABLED:
    prange = _numba.prange
else:  # pragma: no cover
    prange = range


def typed_list():
    """numba's typed ``List`` (a plain ``list`` when jitting is disabled)."""
    if DISABLED:  # pragma: no cover
        return list
    from numba.typed import List

    return List


def numba_types():
    """The ``numba.types`` module (for drivers that compile to one fixed signature)."""
    from numba import types

    return types


def wap_api():
    """``(CompileResultWAP, typeof_impl)``: numba's wrapper-address protocol for passing a
    compiled function as a first-class argument, and the hook to register its numba type."""
    from numba.core.types.function_type import CompileResultWAP
    from numba.extending import typeof_impl

    return CompileResultWAP, typeof_impl
