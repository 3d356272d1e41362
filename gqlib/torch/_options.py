"""torchdiffeq's method names and ``options`` mapped onto gqlib's solve and adjoint settings.

Validation at the door: every option is checked here once (unknown ones raise, listing the valid
ones), then turned into keyword arguments of :func:`gqlib.solve` and
:func:`gqlib.adjoint.gradient`. No numerics: grids become ``tstops``, the controller constants a
:class:`gqlib.PIController`, norms are composed from the user's norm.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import METHODS, PIController
from .._backend import to_host
from ..adjoint import ALIASES, AdjointStrategy, as_strategy
from ..adjoint._strategy import SolverSettings
from ..integrate._policy import substep_count

__all__ = ["METHOD_NAMES", "UNSUPPORTED_METHODS", "resolve_method",
           "ForwardConfig", "AdjointConfig", "resolve_forward", "resolve_adjoint"]

# torchdiffeq's explicit Runge-Kutta names -> gqlib tableaux. torchdiffeq's `rk4` is the 3/8 rule;
# its `dopri5` estimates the error with Shampine's embedded formula (so do diffrax and
# jax.experimental.ode), which gqlib's core `dopri5` (scipy's RK45) does not.
_TORCHDIFFEQ_NAMES = {
    "dopri8": "dopri8", "dopri5": "dopri5_shampine", "tsit5": "tsit5", "bosh3": "bosh3",
    "fehlberg2": "fehlberg2", "adaptive_heun": "adaptive_heun", "euler": "euler",
    "midpoint": "midpoint", "heun2": "heun2", "heun3": "heun3", "rk4": "rk38",
}
# gqlib methods torchdiffeq lacks, under gqlib's names (`rk38` is what `rk4` means here too).
_GQLIB_EXTRA = {"heun": "heun", "ralston": "ralston", "rk38": "rk38", "dop853": "dop853"}
METHOD_NAMES: dict[str, str] = {**_TORCHDIFFEQ_NAMES, **_GQLIB_EXTRA}
UNSUPPORTED_METHODS = {
    "explicit_adams": "Adams-Bashforth (a multistep method)",
    "implicit_adams": "Adams-Bashforth-Moulton (an implicit multistep method)",
    "fixed_adams": "Adams-Bashforth-Moulton (an implicit multistep method)",
    "scipy_solver": "scipy.integrate's solvers",
}

# options accepted by kind of method (torchdiffeq's, plus gqlib's noted ones)
_COMMON = {"norm", "max_num_steps", "jump_t", "step_t", "dtype"}
_FIXED = _COMMON | {"step_size", "grid_constructor", "interp", "perturb"}
_ADAPTIVE = _COMMON | {"first_step", "min_step", "max_step", "safety", "ifactor", "dfactor",
                       "step_size"}  # step_size: gqlib extension, runs the method fixed-step
_DEFAULT_MAX_STEPS = 2 ** 31 - 1  # torchdiffeq's max_num_steps default


def resolve_method(method: Any, name: str = "method") -> str:
    """torchdiffeq method name -> gqlib tableau name (``None`` means ``dopri5``)."""
    if method is None:
        return METHOD_NAMES["dopri5"]
    if not isinstance(method, str):
        raise TypeError(f"`{name}` must be a string, got {type(method).__name__}")
    if method in METHOD_NAMES:
        return METHOD_NAMES[method]
    if method in UNSUPPORTED_METHODS:
        raise ValueError(f"`{name}`={method!r} ({UNSUPPORTED_METHODS[method]}) is not supported by "
                         "gqlib.torch, which has explicit Runge-Kutta methods only; use one of "
                         f"{sorted(METHOD_NAMES)}")
    raise ValueError(f"`{name}` must be one of {sorted(METHOD_NAMES)}, got {method!r}")


_STEP_CONTROL = ("first_step", "min_step", "max_step", "safety", "ifactor", "dfactor")


def _step_control(options: dict, tab, where: str) -> dict:
    """The adaptive step-control keywords of the core from torchdiffeq-style ``options``."""
    kw: dict = {}
    if "first_step" in options:
        kw["first_step"] = _real(options["first_step"], f"{where}['first_step']")
    if "min_step" in options:
        v = _real(options["min_step"], f"{where}['min_step']", positive=False)
        if v < 0:
            raise ValueError(f"{where}['min_step'] must be non-negative, got {v}")
        kw["min_step"] = v
    if "max_step" in options:
        kw["max_step"] = _real(options["max_step"], f"{where}['max_step']", allow_inf=True)
    kw["controller"] = _controller(options, tab, where)
    return kw


def _reject_step_control(options: dict, what: str, mode: str) -> None:
    for k in _STEP_CONTROL:
        if k in options:
            raise ValueError(f"{what} {k!r} applies to adaptive step-size control; it has no "
                             f"effect {mode}: remove one of them")


def _real(value: Any, where: str, *, positive: bool = True, allow_inf: bool = False) -> float:
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"{where} must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where} must be a real number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or (positive and v <= 0) or (not allow_inf and math.isinf(v)):
        kind = "positive" if positive else "a number"
        raise ValueError(f"{where} must be {kind}{'' if allow_inf else ' and finite'}, got {value!r}")
    return v


def _times(value: Any, where: str) -> np.ndarray:
    """A 1-D set of times (tensor, array or list) as float64 host values (one sync)."""
    try:
        arr = to_host(value, np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{where} must be a 1-D tensor of times, got {type(value).__name__}") from exc
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where} must be finite")
    return arr


@dataclass
class ForwardConfig:
    """Everything :func:`gqlib.solve` needs, plus what the adjoint inherits."""

    method: str                       # gqlib name
    adaptive: bool                    # adaptive step-size control (no step_size)
    solve_kwargs: dict                # for gqlib.solve (without f, y0, t)
    norm: Callable | None             # the state norm on the flat state (adaptive mode)
    grid_constructor: Callable | None = None
    step_size: float | None = None    # the user's fixed step (None: one step per grid interval)
    jump_t: np.ndarray | None = None
    step_t: np.ndarray | None = None
    options: dict = field(default_factory=dict)  # the user's options, validated


def _check_keys(options: dict, valid: set, what: str, method: str) -> None:
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ValueError(f"unknown {what} {unknown} for method {method!r}; valid: {sorted(valid)}")


def _check_norm(norm: Any, where: str, *, allow_seminorm: bool) -> Any:
    if norm is None or callable(norm):
        return norm
    if norm in ("rms", "max") or (allow_seminorm and norm == "seminorm"):
        return norm
    valid = "a callable, 'rms', 'max'" + (" or 'seminorm'" if allow_seminorm else "")
    raise ValueError(f"{where} must be {valid}, got {norm!r}")


def _controller(options: dict, tab, where: str) -> PIController:
    """torchdiffeq's step-size rule: ``safety``, ``ifactor``, ``dfactor`` and no shrinking after
    an accepted step (its ``_optimal_step_size``)."""
    safety = _real(options.get("safety", 0.9), f"{where}['safety']")
    ifactor = _real(options.get("ifactor", 10.0), f"{where}['ifactor']")
    dfactor = _real(options.get("dfactor", 0.2), f"{where}['dfactor']")
    if safety > 1:
        raise ValueError(f"{where}['safety'] must be in (0, 1], got {safety}")
    if dfactor > 1:
        raise ValueError(f"{where}['dfactor'] must be in (0, 1], got {dfactor}")
    if ifactor < 1:
        raise ValueError(f"{where}['ifactor'] must be at least 1, got {ifactor}")
    return PIController(safety=safety, min_factor=dfactor, max_factor=ifactor,
                        shrink_after_accept=False)


def _max_steps(options: dict, where: str) -> int:
    value = options.get("max_num_steps", _DEFAULT_MAX_STEPS)
    if torch.is_tensor(value):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{where}['max_num_steps'] must be a positive integer, got {value!r}")
    return int(value)


def _check_dtype(options: dict, where: str) -> None:
    if "dtype" in options:
        dt = options["dtype"]
        if not isinstance(dt, torch.dtype) or not dt.is_floating_point:
            raise TypeError(f"{where}['dtype'] must be a floating torch.dtype, got {dt!r}")


def fixed_grid(t_np: np.ndarray, step_size: float) -> np.ndarray:
    """torchdiffeq's grid from ``step_size``: ``t0 + k * step_size`` up to the last time.

    Points closer to ``t[-1]`` than ``1e-9 * step_size`` are dropped (a rounding artefact that
    would cost a step of a few ulps): the core's substep count.
    """
    t0, t1 = float(t_np[0]), float(t_np[-1])
    span = abs(t1 - t0)
    n = substep_count.py_func(span, step_size)
    d = 1.0 if t1 >= t0 else -1.0
    return t0 + d * step_size * np.arange(1, n, dtype=np.float64)


def resolve_forward(method: Any, options: Any, *, rtol: Any, atol: Any) -> ForwardConfig:
    """Validate ``method`` and ``options``; return the settings of the forward solve.

    Tolerances are already converted by the caller (floats or tensors on the state's device).
    """
    name = resolve_method(method)
    tab = METHODS[name]
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise TypeError(f"`options` must be a dict, got {type(options).__name__}")
    options = dict(options)
    step_size = options.get("step_size")
    if step_size is not None:
        step_size = _real(step_size, "options['step_size']")
    fixed_mode = (not tab.adaptive) or step_size is not None
    _check_keys(options, _ADAPTIVE if tab.adaptive else _FIXED, "option(s)", method or "dopri5")
    _check_dtype(options, "options")
    norm = _check_norm(options.get("norm"), "options['norm']", allow_seminorm=False)
    grid_constructor = options.get("grid_constructor")
    if grid_constructor is not None:
        if not callable(grid_constructor):
            raise TypeError("options['grid_constructor'] must be callable as "
                            f"grid_constructor(func, y0, t), got {type(grid_constructor).__name__}")
        if step_size is not None:
            raise ValueError("options 'step_size' and 'grid_constructor' are mutually exclusive")
    if "interp" in options and options["interp"] not in ("linear", "cubic"):
        raise ValueError(f"options['interp'] must be 'linear' or 'cubic', got {options['interp']!r}")
    if "perturb" in options and not isinstance(options["perturb"], bool):
        raise TypeError(f"options['perturb'] must be a bool, got {type(options['perturb']).__name__}")
    jump_t = _times(options["jump_t"], "options['jump_t']") if options.get("jump_t") is not None else None
    step_t = _times(options["step_t"], "options['step_t']") if options.get("step_t") is not None else None
    if jump_t is not None and step_t is not None and np.intersect1d(jump_t, step_t).size:
        raise ValueError("options 'step_t' and 'jump_t' must not have any elements in common")
    kw: dict = dict(method=name, rtol=rtol, atol=atol, max_steps=_max_steps(options, "options"))
    if not fixed_mode:
        kw.update(_step_control(options, tab, "options"))
    else:
        _reject_step_control(options, "option", "with `step_size` (fixed-step mode)")
    return ForwardConfig(method=name, adaptive=not fixed_mode, solve_kwargs=kw, norm=norm,
                         grid_constructor=grid_constructor, step_size=step_size, jump_t=jump_t,
                         step_t=step_t, options=options)


@dataclass
class AdjointConfig:
    """The strategy of the backward pass, and torchdiffeq's norm rules for it.

    ``norm`` is None (torchdiffeq's default adjoint norm, built from the forward norm when the
    parameter count is known), ``"seminorm"`` or the user's callable in torchdiffeq's
    convention; it is None for a strategy object, which holds its own norm.
    """

    strategy: AdjointStrategy
    norm: Any = None
    fixed_step_default: bool = False  # one backward step per interval between landing points


def _scalar_tol(value: Any, where: str) -> float:
    if torch.is_tensor(value):
        if value.numel() != 1:
            raise ValueError(f"{where} must be a scalar for the adjoint's backward solve (its "
                             f"state is not y's shape), got a tensor of shape "
                             f"{tuple(value.shape)}; pass a scalar `adjoint_{where.removeprefix('adjoint_')}`, "
                             "or use adjoint='checkpoint' (or the default), which solves nothing "
                             "backwards")
        value = value.item()
    if isinstance(value, (tuple, list)):
        raise ValueError(f"{where} must be a scalar for the adjoint, got a {type(value).__name__}; "
                         f"pass a scalar {where}")
    return _real(value, where)


def _per_element(value: Any) -> bool:
    """A tolerance given per element of y (a backward solve's state has another shape)."""
    return (torch.is_tensor(value) and value.numel() > 1) or isinstance(value, (tuple, list))


def _unused_tols(rtol: Any, atol: Any, adjoint_rtol: Any, adjoint_atol: Any) -> tuple:
    """The forward's ``(rtol, atol)`` for validating backward-solve settings that will not be
    used, per-element ones replaced by a scalar (only the adjoint's own are checked then)."""
    return (1e-6 if adjoint_rtol is None and _per_element(rtol) else rtol,
            1e-9 if adjoint_atol is None and _per_element(atol) else atol)


# adjoint_options keys that are torchdiffeq's solver options, translated below; every other key
# is passed to the strategy's constructor, which validates it (nodes, checkpoints, sweeps, ...)
_TORCHDIFFEQ_ADJOINT_KEYS = _ADAPTIVE | _FIXED


def resolve_adjoint(kind: Any, fwd: ForwardConfig, *, method: Any, options: Any,
                    adjoint_rtol: Any, adjoint_atol: Any, rtol: Any, atol: Any,
                    forward_method: Any) -> AdjointConfig:
    """torchdiffeq's adjoint arguments as a core strategy object (torchdiffeq's defaults: the
    forward's settings). A strategy object is used as it is."""
    if isinstance(kind, AdjointStrategy):
        for name, value in (("adjoint_method", method), ("adjoint_options", options),
                            ("adjoint_rtol", adjoint_rtol), ("adjoint_atol", adjoint_atol)):
            if value is not None:
                raise ValueError(f"`{name}` was given beside the strategy object {kind!r}: set it "
                                 "in the strategy's constructor instead")
        return AdjointConfig(kind)
    if not isinstance(kind, str) or kind not in ALIASES:
        raise ValueError(f"`adjoint` must be None (direct backpropagation), a strategy object or "
                         f"one of {ALIASES}, got {kind!r}")
    if kind == "auto":
        # torchdiffeq's backward-solve settings configure the continuous candidate
        # (interpolated); `ratio` is auto's own
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"`adjoint_options` must be a dict, got {type(options).__name__}")
        given = options is not None
        options = dict(options or {})
        own = {k: options.pop(k) for k in ("ratio",) if k in options}
        if "keep_stages" in options:  # the discrete candidate's
            own["discrete"] = _construct("checkpoint", {"keep_stages": options.pop("keep_stages")})
        if (adjoint_rtol is None and _per_element(rtol)) or \
                (adjoint_atol is None and _per_element(atol)):
            # per-element forward tolerances, which a backward solve cannot inherit: the
            # discrete candidate, which needs none, every time
            if "ratio" in own:
                raise ValueError("adjoint_options['ratio'] needs scalar backward tolerances: "
                                 "the forward's rtol/atol are per element; pass scalar "
                                 "`adjoint_rtol` and `adjoint_atol`")
            own["ratio"] = math.inf
            own["stiff_fallback"] = False  # nor can the stiff fallback: it warns instead
            rtol, atol = _unused_tols(rtol, atol, adjoint_rtol, adjoint_atol)
        cont = resolve_adjoint("interpolated", fwd, method=method,
                               options=options if given else None,
                               adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, rtol=rtol,
                               atol=atol, forward_method=forward_method)
        return AdjointConfig(_construct(kind, {"continuous": cont.strategy, **own}),
                             norm=cont.norm, fixed_step_default=cont.fixed_step_default)
    cls = type(as_strategy(kind))
    if not issubclass(cls, SolverSettings):  # no backward solver: the strategy's own keys only
        if options is not None and not isinstance(options, dict):
            raise TypeError(f"`adjoint_options` must be a dict, got {type(options).__name__}")
        options = dict(options or {})
        if getattr(cls, "exact_discrete", False):
            # the discrete adjoint differentiates what the forward computed, as direct
            # backpropagation does: torchdiffeq's backward-solve settings have nothing to set.
            # They are validated as for a backward solve (a bad value still raises), then unused.
            solver = {k: v for k, v in options.items() if k in _TORCHDIFFEQ_ADJOINT_KEYS}
            r, a = _unused_tols(rtol, atol, adjoint_rtol, adjoint_atol)
            resolve_adjoint("gq", fwd, method=method, options=solver if solver else None,
                            adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, rtol=r,
                            atol=a, forward_method=forward_method)
            own = {k: v for k, v in options.items() if k not in _TORCHDIFFEQ_ADJOINT_KEYS}
            return AdjointConfig(_construct(kind, own))
        for name, value in (("adjoint_method", method), ("adjoint_rtol", adjoint_rtol),
                            ("adjoint_atol", adjoint_atol)):
            if value is not None:
                raise ValueError(f"adjoint={kind!r} takes no `{name}`: it runs no backward "
                                 "solver")
        return AdjointConfig(_construct(kind, options))
    name = resolve_method(method if method is not None else forward_method, "adjoint_method")
    tab = METHODS[name]
    if options is None:
        if method is not None and resolve_method(method, "adjoint_method") != fwd.method \
                and fwd.options:
            raise ValueError("`adjoint_method` differs from `method` and `options` were given, so "
                             "`adjoint_options` cannot be inferred from them: pass "
                             "`adjoint_options` too (torchdiffeq's rule)")
        options = {k: v for k, v in fwd.options.items() if k != "norm"}
        inherited = True
    else:
        if not isinstance(options, dict):
            raise TypeError(f"`adjoint_options` must be a dict, got {type(options).__name__}")
        options = dict(options)
        inherited = False
    step_size = options.get("step_size")
    if step_size is not None:
        step_size = _real(step_size, "adjoint_options['step_size']")
    fixed_mode = (not tab.adaptive) or step_size is not None
    solver_keys = (_ADAPTIVE if tab.adaptive else _FIXED)
    own = {k: v for k, v in options.items() if k not in _TORCHDIFFEQ_ADJOINT_KEYS}
    _check_keys({k: v for k, v in options.items() if k in _TORCHDIFFEQ_ADJOINT_KEYS},
                solver_keys, "adjoint option(s)", method or forward_method or "dopri5")
    _check_dtype(options, "adjoint_options")
    norm = _check_norm(options.get("norm"), "adjoint_options['norm']", allow_seminorm=True)
    if norm in ("rms", "max"):
        raise ValueError("adjoint_options['norm'] must be a callable or 'seminorm', got "
                         f"{norm!r}")
    if not inherited:
        # the backward pass steps onto the forward pass's tstops; it cannot take others
        gc = options.get("grid_constructor")
        if gc is not None and gc is not fwd.grid_constructor:
            raise ValueError("adjoint_options['grid_constructor'] is not supported: the backward "
                             "pass steps on the forward grid (its points are tstops)")
        for key, fwd_val in (("jump_t", fwd.jump_t), ("step_t", fwd.step_t)):
            if options.get(key) is not None:
                val = _times(options[key], f"adjoint_options['{key}']")
                if fwd_val is None or not np.array_equal(np.sort(val), np.sort(fwd_val)):
                    raise ValueError(f"adjoint_options['{key}'] must equal options['{key}'] (or be "
                                     "left out): the backward pass steps onto the forward "
                                     "pass's jump and step times, and no others")
    if "interp" in options and options["interp"] not in ("linear", "cubic"):
        raise ValueError("adjoint_options['interp'] must be 'linear' or 'cubic', got "
                         f"{options['interp']!r}")
    settings: dict = dict(own)
    settings["method"] = name
    settings["rtol"] = _scalar_tol(adjoint_rtol if adjoint_rtol is not None else rtol,
                                   "adjoint_rtol" if adjoint_rtol is not None else "rtol")
    settings["atol"] = _scalar_tol(adjoint_atol if adjoint_atol is not None else atol,
                                   "adjoint_atol" if adjoint_atol is not None else "atol")
    settings["max_steps"] = _max_steps(options, "adjoint_options")
    if not fixed_mode:
        settings.update(_step_control(options, tab, "adjoint_options"))
        if settings.get("controller") is None:
            settings.pop("controller", None)
    elif not inherited:
        _reject_step_control(options, "adjoint option", "with a fixed step")
    fixed_default = False
    if fixed_mode:
        if step_size is None and name == fwd.method and not fwd.adaptive:
            step_size = fwd.step_size
        if step_size is None:  # one step per interval between landing points, as the forward
            fixed_default = True
            step_size = 1.0
        settings["step_size"] = step_size
    if norm == "seminorm":
        if kind == "backsolve":
            settings["seminorm"] = True
        norm = None if kind != "backsolve" else "seminorm"
    return AdjointConfig(_construct(kind, settings), norm=norm, fixed_step_default=fixed_default)


def _construct(kind: str, settings: dict) -> AdjointStrategy:
    """The strategy, its own constructor validating the settings (errors name adjoint_options)."""
    try:
        return as_strategy(kind, **settings)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"adjoint_options: {exc}") from None
