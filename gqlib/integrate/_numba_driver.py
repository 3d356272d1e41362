"""The numba driver: the whole solve loop compiled, for a numba-jitted ``f`` and a NumPy state.

Selected by :func:`gqlib.solve` when ``f`` is a numba dispatcher (``numba.njit``), ``y0`` is a
float64 NumPy array with at least one dimension and ``norm`` is ``"rms"`` or ``"max"``. Every
option of ``solve`` runs compiled (tolerance arrays, ``tstops``, ``controller``, ``min_step``,
``max_step``, dense output); anything else (a callable norm, float32, torch tensors,
``GQLIB_DISABLE_JIT=1``) runs the array-API driver, and :func:`fallback_reason` says why
(``Solution.driver_reason``). The loop itself is :func:`gqlib.integrate._numba_loop.solve_kernel`.

Compilation
-----------
The kernel takes ``f`` as a first-class function of the fixed type
``float64[::1](float64, float64[::1])`` and is compiled for that one signature, so it is compiled
once and cached on disk (``cache=True``), whatever ``f``. (Typed as a numba ``Dispatcher`` instead,
it would compile once per ``f`` and its cache would never hit: the cache key holds the function's
address, so every run would add files to ``__pycache__``.) Each new ``f`` then costs only its own
compilation. An ``f`` that does not have that type by itself (a state of two or more dimensions, a
non-contiguous or differently declared return) is wrapped once in a small jitted adapter that
reshapes; adapters are kept per ``(f, shape)`` and are not cached on disk.
"""

from __future__ import annotations

import math
import numbers
import threading

import numpy as np

from .. import _checks
from .._jit import DISABLED, is_jitted, jit, numba_types, wap_api
from ..interpolate import DenseOutput, Solution
from ._controller import PIController
from ._numba_loop import solve_kernel
from ._numba_vector import F_FAILED
from ._policy import STATUS_OK, lands_on_outputs, status_error
from ._validation import check_derivative

__all__ = ["fallback_reason", "numba_solve"]

_NORM_KIND = {"rms": 0, "max": 1}


_compile_lock = threading.Lock()
_compiled = False
_functions: dict = {}  # (f, shape) -> compiled first-class function; keeps f alive, as numba does


_TYPES = None


def _types():
    """``(float64, float64[::1], kernel argument types)``, built once (numba types are costly)."""
    global _TYPES
    if _TYPES is not None:
        return _TYPES
    types = numba_types()

    f8, i8, bl = types.float64, types.int64, types.boolean
    a1 = types.Array(f8, 1, "C")
    a2 = types.Array(f8, 2, "C")
    b1 = types.Array(bl, 1, "C")
    fn = types.FunctionType(a1(f8, a1))
    kernel_args = (fn, a1, a1, a1,             # f, t_out, y_init, f_init
                   a2, a1, a1, a1, a1, a2, b1,  # A, B, C, E, E_low, P, P_rows
                   i8, bl, bl, bl, i8,          # stages, fsal, has_E_low, has_P, error_order
                   a1, a1,                      # rtol, atol
                   f8, f8, f8, f8, f8, f8,      # safety, min/max/min-accept factor, beta1, 2
                   f8, f8, f8,                  # min_step, max_step, half
                   bl, f8, f8, i8,              # adaptive, step_size, first_step, max_steps
                   a1, i8, bl, bl,              # tstops, norm_kind, land_on_outputs, dense
                   bl, a1)                      # checks, fail
    _TYPES = (f8, a1, kernel_args, fn)
    return _TYPES


def _kernel():
    """The kernel, compiled (or loaded from numba's cache) for its one signature on first use."""
    global _compiled
    if not _compiled:
        with _compile_lock:
            if not _compiled:
                solve_kernel.compile(_types()[2])
                # never specialise on the dispatcher type of an `f` (uncacheable, one per f)
                solve_kernel.disable_compile()
                _compiled = True
    return solve_kernel


def _as_kernel_function(f, shape):
    """``f`` as a first-class function ``float64[::1](float64, float64[::1])`` for the kernel.

    ``f`` itself when it compiles to that type, else a jitted adapter that reshapes. Returned as
    numba's ``CompileResultWAP`` (the documented wrapper-address protocol): passing the
    dispatcher would make numba look up the compiled wrapper on every call (~30 us).
    """
    key = (f, shape)
    fn = _functions.get(key)
    if fn is not None:
        return fn
    f8, a1 = _types()[:2]
    target = None
    if len(shape) == 1:
        try:
            f.compile((f8, a1))
            if f.overloads[(f8, a1)].signature.return_type == a1:
                target = f
        except Exception:  # explicit signatures, other return types: adapt below
            target = None
    if target is None:
        size = int(np.prod(shape))

        def adapter(t, y):
            return np.ascontiguousarray(f(t, y.reshape(shape))).reshape(size)

        target = jit(adapter, cache=False)  # a closure over f: nothing to cache across runs
        target.compile((f8, a1))
    fn = _kernel_function_class()(target.overloads[(f8, a1)])
    fn._keep_alive = (f, target)
    _functions[key] = fn
    return fn


_KernelFunction = None


def _kernel_function_class():
    """numba's ``CompileResultWAP`` with its numba type cached: numba would otherwise build the
    ``FunctionType`` on every call (~6 us)."""
    global _KernelFunction
    if _KernelFunction is None:
        CompileResultWAP, typeof_impl = wap_api()

        class KernelFunction(CompileResultWAP):
            pass

        @typeof_impl.register(KernelFunction)
        def _typeof_kernel_function(val, c):
            return _types()[3]

        _KernelFunction = KernelFunction
    return _KernelFunction


_tableau_cache: dict = {}  # id(tableau) -> (tableau, kernel arguments)


def _tableau_args(tab):
    """The kernel's tableau arguments, packed once per tableau."""
    hit = _tableau_cache.get(id(tab))
    if hit is not None and hit[0] is tab:
        return hit[1]
    stages = tab.stages
    c = np.ascontiguousarray
    E = tab.E if tab.E is not None else np.zeros(stages)
    E_low = tab.E_low if tab.E_low is not None else np.zeros(stages)
    P = tab.P if tab.P is not None else np.zeros((1, 1))
    args = (c(tab.A, dtype=np.float64), c(tab.B, dtype=np.float64), c(tab.C, dtype=np.float64),
            c(E, dtype=np.float64), c(E_low, dtype=np.float64), c(P, dtype=np.float64),
            c(np.any(P != 0.0, axis=1)),
            int(stages), bool(tab.fsal), tab.E_low is not None, tab.P is not None,
            int(tab.error_order or 0))
    _tableau_cache[id(tab)] = (tab, args)
    return args


_default_controller_cache: dict = {}  # (error_order, min_step, max_step) -> kernel arguments


def _controller_args(tab, step_size, controller, min_step, max_step):
    """The started controller's settings, as the kernel takes them (the default controller's
    packed once per error order and step bounds: a few microseconds of every small solve)."""
    if step_size is not None:
        return (0.9, 0.2, 10.0, 0.2, 0.0, 0.0, 0.0, math.inf)  # unused in fixed-step mode
    key = (tab.error_order, min_step, max_step)
    if controller is None and key in _default_controller_cache:
        return _default_controller_cache[key]
    c = (controller or PIController()).start(tab.error_order, min_step=min_step,
                                             max_step=max_step)
    args = (c.safety, c.min_factor, c.max_factor, c.min_accept_factor, c.beta1, c.beta2,
            c.min_step, c.max_step)
    if controller is None:
        _default_controller_cache[key] = args
    return args


def fallback_reason(f, y0, norm) -> str | None:
    """Why the compiled driver cannot run this solve, or None when it can: it needs a jitted
    ``f``, a float64 NumPy ``y0`` (ndim >= 1), ``norm`` "rms" or "max", and jitting enabled."""
    if DISABLED:
        return "numba is disabled (GQLIB_DISABLE_JIT)"
    if not is_jitted(f):
        return "`f` is not a numba-jitted function (numba.njit)"
    if not isinstance(norm, str) or norm not in _NORM_KIND:
        return "`norm` is a callable; the compiled driver takes 'rms' or 'max'"
    if not (type(y0) is np.ndarray and y0.dtype == np.float64 and y0.ndim >= 1
            and y0.size >= 1):
        return "`y0` is not a non-empty float64 NumPy array with at least one dimension"
    return None


def _tolerance_vector(value, shape, name):
    if isinstance(value, float):  # the common case first (checked already)
        return np.full(math.prod(shape), value)
    if isinstance(value, numbers.Real):
        return np.full(math.prod(shape), float(value))
    arr = np.asarray(value, dtype=np.float64)
    try:
        if np.broadcast_shapes(arr.shape, shape) != tuple(shape):
            raise ValueError
    except ValueError:
        raise ValueError(f"`{name}` of shape {arr.shape} must broadcast to y0's shape "
                         f"{tuple(shape)}") from None
    # a copy: broadcast_to returns a read-only view, which the kernel's signature does not take
    return np.array(np.broadcast_to(arr, shape), order="C").reshape(-1)


class _StepRecord:
    """One accepted step as :class:`DenseOutput` reads it (``t0``, ``h``, ``y0``, ``Q``)."""

    __slots__ = ("t0", "h", "y0", "Q")

    def __init__(self, t0, h, y0, Q):
        self.t0, self.h, self.y0, self.Q = t0, h, y0, Q


def _raise_from_f(f, fail, y0, exc):
    """``f`` failed inside the kernel at ``fail = [t, *y]``: numba swallowed its exception (or
    it returned another size). Call it again from Python there, so that its own exception
    reaches the caller; else report the shape it returned."""
    t, y = float(fail[0]), fail[1:].reshape(y0.shape).copy()
    r = f(t, y)  # raises the user's own exception
    check_derivative(np, r, y0, "f")
    raise ValueError(f"{F_FAILED} at t = {t!r}") from exc


def numba_solve(f, y0, t, t_np, tab, *, rtol, atol, step_size, first_step, max_steps, norm,
                tstops, dense_output, controller=None, min_step=0.0,
                max_step=math.inf) -> Solution:
    """The compiled counterpart of ``solve``'s array-API path (arguments already validated by
    ``solve``; :func:`fallback_reason` returned None). Raises the ``gqlib.errors`` exception of
    a failed solve with its time and step size, and ValueError for tolerances that do not
    broadcast to ``y0``'s shape."""
    shape = tuple(y0.shape)
    y_init = np.array(y0, dtype=np.float64, order="C").reshape(-1)
    t_first = float(t_np[0])
    f0 = f(t_first, y_init.reshape(shape).copy())  # a copy: f may not write into the state
    check_derivative(np, f0, y0, "f")
    f_init = np.array(f0, dtype=np.float64, order="C").reshape(-1)
    fk = _as_kernel_function(f, shape)

    adaptive = step_size is None
    stops = np.array(tstops, dtype=np.float64).reshape(-1)
    t_out = np.ascontiguousarray(t_np, dtype=np.float64)

    fail = np.full(y_init.size + 1, np.nan)
    try:
        (ys, stats, status, t_fail, h_fail, records, n_seg) = _kernel()(
            fk, t_out, y_init, f_init, *_tableau_args(tab),
            _tolerance_vector(rtol, shape, "rtol"), _tolerance_vector(atol, shape, "atol"),
            *_controller_args(tab, step_size, controller, min_step, max_step), 0.5, adaptive,
            0.0 if adaptive else float(step_size),
            0.0 if first_step is None else float(first_step), int(max_steps), stops,
            _NORM_KIND[norm], lands_on_outputs(tab, step_size), bool(dense_output),
            _checks.enabled(), fail)
    except ValueError as exc:
        if str(exc) != F_FAILED:
            raise
        _raise_from_f(f, fail, y0, exc)
    if status != STATUS_OK:
        raise status_error(status, t=t_fail, h=h_fail, max_steps=max_steps,
                           min_step=min_step if adaptive else 0.0)

    stats_d = {"nfe": int(stats[0]), "n_steps": int(stats[1]), "n_accepted": int(stats[2]),
               "n_rejected": int(stats[3])}
    dense = None
    if dense_output:
        n = y_init.size
        degree = tab.P.shape[1] if tab.P is not None else 3
        rec = records[: n_seg * (2 + n + n * degree)].reshape(n_seg, 2 + n + n * degree)
        t0s, t1s = rec[:, 0], rec[:, 1]
        y0s = rec[:, 2:2 + n].reshape(n_seg, *shape)
        Qs = rec[:, 2 + n:].reshape(n_seg, *shape, degree)
        dense = DenseOutput([_StepRecord(float(t0s[i]), float(t1s[i] - t0s[i]), y0s[i], Qs[i])
                             for i in range(n_seg)])
    return Solution(t, ys.reshape((t_out.size, *shape)), stats_d, method=tab.name, rtol=rtol,
                    atol=atol, step_size=step_size, norm=norm, tstops=tuple(tstops), dense=dense,
                    driver="numba")
