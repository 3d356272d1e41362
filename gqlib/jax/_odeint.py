"""``gqlib.jax.odeint``: jax.experimental.ode's interface on gqlib's solver and adjoints."""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..adjoint import AutoAdjoint, as_strategy
from ..adjoint._strategy import AdjointStrategy
from ..errors import GQLibError
from ..integrate._controller import PIController
from ..integrate._norms import resolve_norm
from ..integrate._policy import check_times, lands_on_outputs
from ..integrate._validation import (
    check_max_steps,
    check_positive,
    check_step_bounds,
    check_tolerance,
)
from ..tableaux import get_method
from ._backward import backward_pass, record_of
from ._checkpoint import check_cotangent
from ._forward import forward, time_dtype
from ._host import Decisions, recall
from ._problem import Problem

__all__ = ["odeint", "reraise"]

MAX_STEPS = 4096  # diffrax's default: the checkpoint buffers hold this many steps


@dataclass(frozen=True)
class _Config:
    method: str
    rtol: float
    atol: float
    step_size: float | None
    first_step: float | None
    max_steps: int
    norm: Any
    controller: Any
    min_step: float
    max_step: float
    strategy: AdjointStrategy
    check_t: bool

    def decisions(self) -> Decisions:
        tab = get_method(self.method)
        ctrl = None
        if self.step_size is None:
            ctrl = (self.controller or PIController()).start(
                tab.error_order, min_step=self.min_step, max_step=self.max_step)
        return Decisions(ctrl, self.step_size, tab.error_order, self.first_step,
                         self.max_steps, self.check_t)


def reraise(fn):
    """Wrap ``fn`` (typically a jitted function) so that a gqlib error raised inside a compiled
    computation reaches the caller with its own class (``StepSizeTooSmall``, ``NonFiniteState``,
    ``TooManySteps``; ValueError for traced output times that fail validation), chained from
    JAX's ``JaxRuntimeError``.

    JAX re-raises an exception from a host callback as ``JaxRuntimeError``, whose message names
    the gqlib class, t, h and the remedy; :func:`odeint` called outside ``jit`` restores the
    class itself, and this wrapper does the same around a jitted function.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, gqlib.jax
    >>> @gqlib.jax.reraise
    ... @jax.jit
    ... def final(y0):
    ...     return gqlib.jax.odeint(lambda y, t: -y, y0, jnp.array([0.0, 1.0]))[-1]
    >>> float(final(jnp.array([1.0]))[0])  # doctest: +ELLIPSIS
    0.36787...
    """
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            out = fn(*args, **kwargs)
            jax.block_until_ready(out)
            return out
        except Exception as exc:
            if isinstance(exc, GQLibError):
                raise
            original = recall(exc)
            if original is None:
                raise
            raise original from exc
    return wrapped


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _check_y0(y0):
    leaves = jax.tree_util.tree_leaves(y0)
    if not leaves:
        raise ValueError("`y0` must hold at least one array")
    for leaf in leaves:
        if isinstance(leaf, bool) or not hasattr(leaf, "dtype") and not isinstance(
                leaf, numbers.Real):
            raise TypeError(f"`y0` leaves must be floating arrays, got {type(leaf).__name__}")
        dtype = jnp.result_type(leaf)
        if dtype not in (jnp.float32, jnp.float64):  # as the core: float16 and bfloat16 too
            raise TypeError(f"`y0` must hold real floating arrays (float32 or float64), got "
                            f"dtype {dtype}")
    if sum(math.prod(jnp.shape(leaf)) for leaf in leaves) == 0:  # as the core (norm of nothing)
        shapes = [tuple(jnp.shape(leaf)) for leaf in leaves]
        raise ValueError(f"`y0` must have at least one element, got shape "
                         f"{shapes[0] if len(shapes) == 1 else shapes}")


def _check_scalar_tol(value, name):
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"`{name}` must be a positive number (a scalar: the jax adapter takes "
                        f"no array tolerances), got {type(value).__name__}")
    return check_tolerance(float(value), name)


def odeint(func, y0, t, *args, rtol: float = 1.4e-8, atol: float = 1.4e-8,
           method: str = "dopri5_shampine", adjoint: str | AdjointStrategy | None = None,
           step_size: float | None = None, first_step: float | None = None,
           max_steps: int = MAX_STEPS, norm: Any = "rms", controller: PIController | None = None,
           min_step: float = 0.0, max_step: float = math.inf, return_stats: bool = False):
    r"""Solve ``dy/dt = func(y, t, *args)``, ``y(t[0]) = y0``, differentiable by a gqlib adjoint.

    jax.experimental.ode's calling convention: ``func(y, t, *args)``; ``y0`` and ``args`` are
    PyTrees of arrays; ``func`` may close over traced arrays (hoisted as
    ``jax.closure_convert`` does, and also where it leaves them: vmapped data, traced
    integers). Pass values that change between calls as ``args``: as in jax.experimental.ode,
    the compiled solve is cached per ``func``, and a non-traced value in its closure is baked
    into that cache (docs/jax.md). The step loops run as ``lax.while_loop`` in XLA, every decision
    (step size, accept/reject, targets, node counts, Gauss-Legendre nodes) comes from the core on
    the host. Works under ``jax.jit``, ``jax.grad``, ``jax.vmap`` and ``jax.disable_jit()``.

    Parameters
    ----------
    func : callable
        ``func(y, t, *args)`` returning dy/dt with y's tree structure, shapes and dtypes.
    y0 : PyTree of floating arrays
        Initial state.
    t : array, shape (N,)
        Output times, strictly monotonic (either direction); ``t[0]`` is the initial time.
    *args : PyTrees of arrays
        Extra arguments of ``func``; gradients flow to every floating leaf.
    rtol, atol : float
        Tolerances (jax.experimental.ode's defaults, 1.4e-8).
    method : str
        A name in :data:`gqlib.METHODS`; default ``"dopri5_shampine"``, the ``dopri5`` of
        jax.experimental.ode and diffrax (Shampine's error estimate; the core's ``"dopri5"``
        is scipy's RK45).
    adjoint : str or AdjointStrategy, optional
        How gradients are computed: a strategy of :mod:`gqlib.adjoint` or its alias; default
        the core's default (``"auto"``, as ``gqlib.torch.odeint_adjoint``: checkpoint, or
        interpolated where the parameters outnumber the state ``ratio`` times, chosen at trace
        time from the shapes). Supported: ``"auto"``, ``"checkpoint"``, ``"gq"``,
        ``"backsolve"`` (``seminorm``), ``"interpolated"``, ``"collocation"``.
    step_size : float, optional
        Fixed-step mode (required for methods without an error estimate).
    first_step, min_step, max_step, controller, norm
        As in :func:`gqlib.solve` (``norm``: ``"rms"``, ``"max"`` or a callable on jax arrays).
    max_steps : int
        Most step attempts; also the number of steps the fixed-size checkpoint buffers hold
        (default 4096, diffrax's; ``TooManySteps`` past it).
    return_stats : bool
        Also return the forward ``{"nfe", "n_steps", "n_accepted", "n_rejected"}``.

    Returns
    -------
    ys : PyTree like y0, leaves shaped ``(N, *leaf.shape)``
    stats : dict, only when ``return_stats``

    Raises
    ------
    TypeError, ValueError
        Bad input, naming the argument.
    StepSizeTooSmall, NonFiniteState, TooManySteps
        A failed solve, with t and h: with their class outside ``jit`` (and inside
        :func:`reraise`); inside ``jit`` as JAX's ``JaxRuntimeError``, whose message names the
        class, t, h and the remedy.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, gqlib.jax
    >>> def loss(k):
    ...     ys = gqlib.jax.odeint(lambda y, t, k: -k * y, jnp.ones(2), jnp.linspace(0, 1, 3), k)
    ...     return ys[-1].sum()
    >>> round(float(jax.grad(loss)(1.0)), 6)  # d/dk 2 exp(-k) at k = 1
    -0.735759
    """
    if not callable(func):
        raise TypeError(f"`func` must be callable, got {type(func).__name__}")
    _check_y0(y0)
    y0 = jax.tree_util.tree_map(jnp.asarray, y0)
    try:
        t_arr = jnp.asarray(t)
    except TypeError as exc:
        raise TypeError(f"`t` must be a 1-D array of times, got {type(t).__name__}") from exc
    if t_arr.ndim != 1 or t_arr.shape[0] < 1:
        raise ValueError(f"`t` must be a 1-D array of times (non-empty), got shape {t_arr.shape}")
    if not jnp.issubdtype(t_arr.dtype, jnp.floating) and not jnp.issubdtype(t_arr.dtype,
                                                                             jnp.integer):
        raise TypeError(f"`t` must hold real numbers, got dtype {t_arr.dtype}")
    check_t = not _is_concrete(t_arr)
    if not check_t:
        check_times(np.asarray(t_arr))
    if not isinstance(method, str):
        raise TypeError(f"`method` must be a string, got {type(method).__name__}")
    tab = get_method(method)
    rtol = _check_scalar_tol(rtol, "rtol")
    atol = _check_scalar_tol(atol, "atol")
    step_size = check_positive(step_size, "step_size")
    first_step = check_positive(first_step, "first_step")
    max_steps = check_max_steps(max_steps)
    resolve_norm(norm)
    if step_size is None and not tab.adaptive:
        raise ValueError(f"method {tab.name!r} is fixed-step (no error estimate): give "
                         "`step_size`")
    min_step, max_step = check_step_bounds(controller, min_step, max_step)
    if not isinstance(return_stats, bool):
        raise TypeError(f"`return_stats` must be a bool, got {type(return_stats).__name__}")
    strategy = as_strategy(adjoint)
    if not isinstance(strategy, AutoAdjoint):
        record_of(strategy)  # raises for a strategy the adapter does not run
    for leaf in jax.tree_util.tree_leaves(args):
        if not (isinstance(leaf, jax.core.Tracer) or hasattr(leaf, "dtype")
                or isinstance(leaf, numbers.Number)):
            raise TypeError(f"`args` must be PyTrees of arrays; got a leaf of type "
                            f"{type(leaf).__name__}")
    args = jax.tree_util.tree_map(jnp.asarray, args)
    if not jnp.issubdtype(t_arr.dtype, jnp.floating):
        t_arr = t_arr.astype(jnp.result_type(float))
    # func's output must match y0 (checked abstractly, at trace time)
    closed, out = jax.make_jaxpr(func, return_shape=True)(y0, t_arr[0], *args)
    if jax.tree_util.tree_structure(out) != jax.tree_util.tree_structure(y0):
        raise TypeError(f"`func` returned a tree {jax.tree_util.tree_structure(out)}; expected "
                        f"y0's {jax.tree_util.tree_structure(y0)}")
    for o, y in zip(jax.tree_util.tree_leaves(out), jax.tree_util.tree_leaves(y0), strict=True):
        if o.shape != y.shape:
            raise ValueError(f"`func` returned shape {o.shape}; expected y0's shape {y.shape}")
        if o.dtype != y.dtype:
            raise TypeError(f"`func` returned dtype {o.dtype}; expected y0's dtype {y.dtype}")
    cfg = _Config(tab.name, rtol, atol, step_size, first_step, max_steps, norm, controller,
                  min_step, max_step, strategy, check_t)
    if t_arr.shape[0] == 1:
        ys = jax.tree_util.tree_map(lambda x: x[None], y0)
        zero = jnp.int32(0)
        stats = {"nfe": zero, "n_steps": zero, "n_accepted": zero, "n_rejected": zero}
        return (ys, stats) if return_stats else ys
    converted, consts = _closure_convert(func, closed, out, y0, t_arr[0], args)
    if isinstance(strategy, AutoAdjoint):
        cfg = dataclasses.replace(cfg, strategy=_auto_choice(strategy, y0, (args, consts),
                                                             tab.name))
    else:
        strategy.warn_interpolant_order(tab.name)
    run = functools.partial(_solve_jit, converted, cfg)
    if not _traced(y0, t_arr, args, consts):
        run = reraise(run)
    ys, stats = run(y0, t_arr, *args, *consts)
    return (ys, stats) if return_stats else ys


def _closure_convert(func, closed, out, y0, t0, args):
    """``func`` with the traced values it closes over as extra trailing arguments.

    ``jax.closure_convert`` (cached per ``func``, so that the compiled solve is reused) hoists
    only the values that may carry a tangent; a traced value without one (data batched by an
    enclosing ``vmap``, a traced integer under ``jit``) stayed in the closure and escaped its
    trace inside the custom VJP (``TypeError: No constant handler for type: BatchTracer``).
    Where ``func``'s jaxpr (``closed``, traced once by :func:`odeint`) holds more traced
    constants than ``closure_convert`` hoisted, every one of them is hoisted instead."""
    converted, consts = jax.closure_convert(func, y0, t0, *args)
    traced = [isinstance(c, jax.core.Tracer) for c in closed.consts]
    if sum(traced) <= len(consts):
        return converted, consts
    from jax.extend.core import ClosedJaxpr, jaxpr_as_fun

    kept = [None if m else c for c, m in zip(closed.consts, traced, strict=True)]
    hoisted = [c for c, m in zip(closed.consts, traced, strict=True) if m]
    in_tree = jax.tree_util.tree_structure((y0, t0, *args))
    out_tree = jax.tree_util.tree_structure(out)
    n = len(hoisted)

    def hoisted_func(*call_args):
        it = iter(call_args[len(call_args) - n:])
        values = [next(it) if m else c for c, m in zip(kept, traced, strict=True)]
        flat, tree = jax.tree_util.tree_flatten(tuple(call_args[:len(call_args) - n]))
        if tree != in_tree:  # the adapter's own calls: y, t and args as given
            raise TypeError(f"internal: func called with {tree}, traced with {in_tree}")
        return jax.tree_util.tree_unflatten(
            out_tree, jaxpr_as_fun(ClosedJaxpr(closed.jaxpr, values))(*flat))
    return hoisted_func, hoisted


def _auto_choice(auto: AutoAdjoint, y0, params, method: str) -> AdjointStrategy:
    """``"auto"`` resolved at trace time from the shapes, by the core's rule
    (:meth:`~gqlib.adjoint.AutoAdjoint.record_for`): its continuous candidate where the floating
    parameters (``args`` and closed-over arrays) outnumber the state ``ratio`` times, else its
    discrete one. The core's further test, no more output intervals than forward steps, needs
    the step count, which is known only inside the compiled solve: here it is not applied
    (both candidates are exact to tolerance either way; it only picks the faster). The
    discrete candidate runs without the core's stiff fallback (see below)."""
    n_params = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(params)
                   if jnp.issubdtype(jnp.result_type(x), jnp.floating))
    state_size = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(y0))
    dense = (auto.record_for(n_params, state_size) == "dense"
             and not auto.continuous.poor_interpolants(method))  # as the core's choose()
    if dense:
        return auto.continuous
    # no stiff fallback here (the stiffness check warns instead): it would compile the
    # interpolated pass and its buffers into every default backward (2.4x the compile time,
    # 4x the temporary memory, docs/jax.md); CheckpointAdjoint(stiff_fallback=...) opts in
    return dataclasses.replace(auto.discrete, stiff_fallback=None)


def _traced(*trees) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trees))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _solve_jit(func, cfg, y0, t, *args):
    return _solve(func, cfg, y0, t, *args)


def _setup(func, cfg, y0, t, args):
    from ._rk import RK

    tab = get_method(cfg.method)
    prob = Problem(func, y0, t.dtype, args)
    rk = RK(tab, resolve_norm(cfg.norm), cfg.rtol, cfg.atol)
    return prob, rk


def _run_forward(func, cfg, y0, t, args, record):
    prob, rk = _setup(func, cfg, y0, t, args)
    t_out = t.astype(time_dtype())
    fw = forward(prob.F, prob.y0_flat, t_out, rk, cfg.decisions(),
                 lands=lands_on_outputs(rk.tab, cfg.step_size), record=record[0],
                 record_dense=record[1], max_steps=cfg.max_steps)
    ys = jax.vmap(prob.unravel)(fw.ys)
    return prob, rk, t_out, fw, ys


SECOND_ORDER = (
    "gqlib.jax.odeint is differentiable once, in reverse mode (jax.grad, jax.value_and_grad, "
    "jax.vjp, jax.jacrev): its step loops are lax.while_loops steered by host callbacks, which "
    "JAX cannot differentiate again. Second derivatives (jax.hessian, jax.grad or jax.jacrev "
    "of a gradient, jax.jacfwd) are not supported; use finite differences of gradients, or a "
    "solver differentiated step by step (diffrax with RecursiveCheckpointAdjoint)")


def _first_order(fn):
    """``fn`` (one pass of the custom VJP: the recording forward, the backward) with a JVP
    that raises :data:`SECOND_ORDER`: differentiating it again is a higher derivative, and JAX
    would otherwise stop at the first callback or loop with a message about its own internals
    (``Pure callbacks do not support JVP``, ``Reverse-mode differentiation does not work for
    lax.while_loop``). A first derivative never differentiates these passes."""
    wrapped = jax.custom_jvp(fn)

    def jvp(primals, tangents):
        raise NotImplementedError(SECOND_ORDER)
    wrapped.defjvp(jvp)
    return wrapped


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _solve(func, cfg, y0, t, *args):
    _, _, _, fw, ys = _run_forward(func, cfg, y0, t, args, record=(False, False))
    return ys, fw.stats


def _solve_fwd(func, cfg, y0, t, *args):
    record = record_of(cfg.strategy)

    def run(y0, t, *args):
        _, _, _, fw, ys = _run_forward(func, cfg, y0, t, args, record=record)
        return fw, ys
    fw, ys = _first_order(run)(y0, t, *args)
    return (ys, fw.stats), (y0, t, args, fw)


def _solve_bwd(func, cfg, res, cts):
    run = _first_order(functools.partial(_backward_jit, func, cfg))
    if not _traced(res, cts[0]):  # eager jax.grad: restore gqlib's error classes
        run = reraise(run)
    return run(res, cts[0])


@functools.partial(jax.jit, static_argnums=(0, 1))
def _backward_jit(func, cfg, res, ys_bar):
    y0, t, args, fw = res
    prob, rk = _setup(func, cfg, y0, t, args)
    t_out = t.astype(time_dtype())
    g = jax.vmap(lambda row: ravel_pytree(row)[0])(ys_bar).astype(prob.y0_flat.dtype)
    ok = check_cotangent(g, t_out)  # at the door, as the core's gradient() checks grad_y
    y0_bar, dargs_bar, t_bar, _ = backward_pass(cfg, prob, rk, fw, t_out, g)
    y0_bar = y0_bar + ok.astype(y0_bar.dtype) * 0  # keep the check alive
    return (prob.unravel(y0_bar), t_bar.astype(t.dtype), *prob.args_cotangent(dargs_bar))


_solve.defvjp(_solve_fwd, _solve_bwd)
