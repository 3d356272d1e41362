"""Adjoint mode of ``gqlib.torch.odeint``: a ``torch.autograd.Function`` around the core.

The forward pass solves without a graph, keeping what the strategy asks for
(``forward_record``); the backward pass hands :func:`gqlib.adjoint.gradient` a vector field
whose VJPs come from ``torch.autograd.grad``. Strategies, their settings and state layouts are
the core's; this module only adds torchdiffeq's norm convention.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

import gqlib
from gqlib.adjoint import AdjointStrategy, AutoAdjoint, CheckpointAdjoint, StageKeeper, gradient
from gqlib.adjoint._checkpoint import RECOMPUTE_LIMIT
from gqlib.adjoint._strategy import SolverSettings
from gqlib.errors import NondeterministicField
from gqlib.tableaux import get_method

from ._field import TorchField, TorchParamField, UserFunc, adjoint_norm, state_norm

__all__ = ["AdjointJob", "OdeintAdjointFn", "backward_adaptive", "adjoint_params_of",
           "frozen_params_of", "exempt_params_of"]


@dataclass
class AdjointJob:
    fn: UserFunc
    t: torch.Tensor
    t_np: np.ndarray
    solve_kwargs: dict
    cfg: Any
    fwd: Any
    span: float
    stats: Any  # OdeintStats
    params: tuple
    shape: torch.Size
    observer: Any = None  # the _adjoint callbacks (._callbacks)
    sol: Any = None
    rowwise: bool = False  # adjoint_options['rowwise']: func ignores t, maps rows on their own
    keeper: Any = None  # the forward's stage graphs (StageKeeper), until the backward pass
    grad_params: bool = True  # a backward pass may ask for the parameters' gradients
    frozen: tuple = ()  # func's tensors without gradients, saved for the version check
    random: bool = False  # func drew from torch's generators in the forward pass
    may_backward: bool = True  # grad mode on and something to differentiate
    autocast: Any = None  # (device type, dtype) of an autocast region the forward ran in
    exempt: tuple = ()  # func's module parameters left out of an explicit adjoint_params
    closure_checked: bool = False  # func's graph searched for tensors outside params
    outer_graph: bool = False  # func reads non-leaf tensors built outside it (VJPs retain)
    last: Any = None  # (t, y, f) of the forward's last call of func
    drift: Any = None  # (max |f - f_forward| at that point, round-off allowed), from the check

    def n_params(self) -> int:
        return sum(p.numel() for p in self.params)

    def strategy(self, with_params: bool) -> AdjointStrategy:
        """The strategy of this backward pass, with torchdiffeq's norm (which needs the
        parameter count) and one fixed step per interval where no step size was given."""
        strategy = self.cfg.strategy
        if isinstance(strategy, AutoAdjoint):  # the discrete one replays a random func
            strategy = strategy.discrete if self.random else \
                strategy.choose(self.sol, self.n_params() if with_params else None)
        if isinstance(strategy, CheckpointAdjoint) and strategy.stiff_fallback is not None:
            # a continuous adjoint cannot replay a random func's draws: it warns instead
            fallback = None if self.random else self._configured(strategy.stiff_fallback,
                                                                 with_params)
            return dataclasses.replace(strategy, stiff_fallback=fallback)
        return self._configured(strategy, with_params)

    def _configured(self, strategy: AdjointStrategy, with_params: bool) -> AdjointStrategy:
        cfg = self.cfg
        if not isinstance(strategy, SolverSettings):
            return strategy
        changes: dict = {}
        if cfg.fixed_step_default:
            changes["step_size"] = 2.0 * max(self.span, 1e-300)
        if backward_adaptive(strategy, self.fwd) and (cfg.norm is not None or strategy.norm is None) \
                and not getattr(strategy, "seminorm", False):
            numels = [p.numel() for p in self.params] if with_params else []
            fwd_norm = state_norm(self.fwd.norm, self.fn, self.shape)
            blocks = strategy.state_blocks(self.shape.numel(), sum(numels))
            changes["norm"] = adjoint_norm(blocks, cfg.norm, fwd_norm, self.fn, self.shape,
                                           numels)
        return dataclasses.replace(strategy, **changes) if changes else strategy


def backward_adaptive(strategy: AdjointStrategy, fwd) -> bool:
    """Whether the backward pass accepts and rejects steps (the core's rule:
    :meth:`gqlib.adjoint.AdjointStrategy.backward_adaptive`)."""
    return strategy.backward_adaptive(fwd.method, fwd.adaptive)


class OdeintAdjointFn(torch.autograd.Function):
    """Forward: the solve without a graph. Backward: ``gqlib.adjoint.gradient``."""

    @staticmethod
    def forward(ctx, job: AdjointJob, y0: torch.Tensor, t: torch.Tensor, *params):
        with torch.no_grad():
            strategy = job.cfg.strategy
            n_params = job.n_params() if job.params else None
            record = strategy.record_for(n_params, y0.numel())
            f, kw = job.fn, job.solve_kwargs
            itemsize = sum(p.numel() * p.element_size() for p in job.params) / (n_params or 1)
            budget = strategy.keep_bytes(n_params, itemsize, y0.numel()) \
                if record == "checkpoints" and job.grad_params else 0
            discrete = job.may_backward and isinstance(strategy, (CheckpointAdjoint,
                                                                  AutoAdjoint))
            if budget > 0 or discrete:
                # the stages' graphs, kept if they fit, and the random state of a func that
                # draws random numbers, replayed where a step is recomputed (StageKeeper)
                fld = TorchParamField(job.fn, job.params) if job.params else TorchField(job.fn)
                f = job.keeper = StageKeeper(fld, get_method(job.fwd.method), budget,
                                             min_steps=len(job.t_np) - 1,
                                             replay=RandomReplay(y0.device))
                kw = {**kw, "observer": _both(kw.get("observer"), job.keeper.observe)}
            before = _rng_states(y0.device)
            job.fn.recording = True  # func's last call: the backward pass checks it again
            try:
                sol = gqlib.solve(f, y0.detach(), job.t_np, dense_output=record == "dense",
                                  checkpoints=record == "checkpoints", **kw)
            finally:
                job.fn.recording = False
            if job.fn.last is not None:
                job.last = tuple(x.detach().clone() for x in job.fn.last)
                job.fn.last = None
            job.random = not all(torch.equal(a, b) for a, b in
                                 zip(before, _rng_states(y0.device), strict=True))
        job.sol = sol
        kind = y0.device.type
        if torch.is_autocast_enabled(kind):  # the backward pass evaluates func under it too
            job.autocast = (kind, torch.get_autocast_dtype(kind))
        job.stats.forward = dict(sol.stats)
        if job.keeper is not None:  # what the backward pass will not recompute, and its cost
            job.stats.forward.update(kept_steps=job.keeper.n_kept, kept_bytes=job.keeper.nbytes)
        ctx.job = job
        ys = sol.y
        # raises at backward if the caller edits ys, or a parameter, in place (as direct
        # backprop does: a parameter updated between the passes would mix two models)
        ctx.save_for_backward(ys, *params, *job.frozen)
        return ys

    @staticmethod
    def backward(ctx, grad_ys):
        if torch.is_grad_enabled():
            raise NotImplementedError(
                "double backward (create_graph=True) through an adjoint is not supported by "
                "gqlib.torch; use adjoint=None (direct backpropagation) for higher derivatives")
        if _batched(grad_ys):
            raise NotImplementedError(
                "a batched backward pass (torch.autograd.grad(..., is_grads_batched=True), "
                "torch.autograd.functional.jacobian/hessian(..., vectorize=True)) through an "
                "adjoint is not supported by gqlib.torch: its backward solve decides on the host "
                "from the adjoint's values; use one backward pass per row (vectorize=False)")
        job: AdjointJob = ctx.job
        _ = ctx.saved_tensors  # the version check
        need = ctx.needs_input_grad
        with_params = any(need[3:])
        fn = UserFunc(job.fn.func, job.fn.shapes, job.fn.dtype, job.fn.device, check=False,
                      time_map=job.fn.time_map)
        fld = TorchParamField(fn, job.params, rowwise=job.rowwise) if with_params else \
            TorchField(fn)
        if not need[1]:  # row 0 feeds only dL/dy0 (a NaN there, from a 0/0 at t0, is unused)
            grad_ys = torch.cat([torch.zeros_like(grad_ys[:1]), grad_ys[1:]])
        kept = job.keeper
        if kept is not None and not with_params:
            kept.stop()  # graphs kept with the parameters: not this pass's field (tokens stay)
        # func as the forward pass ran it: under its autocast region (torch.utils.checkpoint's
        # rule), else a recomputed step differs from the forward's and a continuous adjoint
        # differentiates another field
        try:
            with _autocast(job.autocast):
                return OdeintAdjointFn._backward(ctx, job, fn, fld, kept, grad_ys)
        finally:
            # the graphs are used once (freed with this pass); the replay tokens of a random
            # func stay with the autograd graph, for a second backward pass through it
            # (retain_graph=True), as torch.utils.checkpoint keeps its saved RNG state
            if kept is not None:
                kept.stop()
                if kept.replay is None or not kept.replay.wanted:
                    job.keeper = None

    @staticmethod
    def _backward(ctx, job, fn, fld, kept, grad_ys):
        need = ctx.needs_input_grad
        with_params = any(need[3:])
        checked = 0  # once per forward pass: evaluations of func
        if not job.closure_checked:
            job.closure_checked = True
            checked = _check_closure(fn, job)
        fld.retain_graph = job.outer_graph
        strategy = job.strategy(with_params)
        if job.random and not isinstance(strategy, CheckpointAdjoint):
            raise NondeterministicField(
                f"func drew random numbers in the forward pass (torch's generator advanced: "
                f"dropout in training mode?), and the {strategy.name} adjoint evaluates it "
                "again at other points, so its gradient would be wrong. The checkpoint adjoint "
                "(adjoint='checkpoint') replays the forward's random draws in every step it "
                "recomputes and checks that the step ends where the forward's did",
                t=float(job.t_np[-1]))
        if job.drift is not None and not isinstance(strategy, CheckpointAdjoint):
            (off, allowed), job.drift = job.drift, None
            if off > allowed:  # (the checkpoint adjoint checks each step it recomputes)
                raise NondeterministicField(
                    f"func(t, y) at the forward pass's last call (t = {float(job.last[0])!r}) "
                    f"now returns values {off:.3g} (max abs) from what it returned then, where "
                    f"round-off allows {allowed:.2g}: something it reads (a buffer, a "
                    "closed-over tensor, a module attribute) changed since the forward pass, "
                    f"and the {strategy.name} adjoint evaluates func again, so its gradient "
                    "would be wrong. Run the backward pass before changing what func reads",
                    t=float(job.last[0]))
        replays = kept is not None and kept.replay is not None and kept.replay.wanted
        devices = [job.fn.device] if replays and job.fn.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, enabled=replays):  # the caller's stream
            g = gradient(fld, job.sol, grad_ys.contiguous(), grad_t=bool(need[2]),
                         adjoint=strategy, observer=job.observer, kept=kept)
        job.stats.backward = dict(g.stats)
        job.stats.backward["nfe_check"] = checked
        grad_y0 = g.y0 if need[1] else None
        grad_t = g.t.to(dtype=job.t.dtype, device=job.t.device) if need[2] else None
        if with_params:
            grad_params = [gp if n else None for gp, n in zip(fld.unflatten(g.params), need[3:], strict=True)]
        else:
            grad_params = [None] * len(job.params)
        return (None, grad_y0, grad_t, *grad_params)


class RandomReplay:
    """The random state of torch's generators before each forward call of a ``func`` that
    draws random numbers (dropout in training mode), restored before the checkpoint adjoint
    recomputes that call: the recomputed step is the forward's, as with
    ``torch.utils.checkpoint(preserve_rng_state=True)``.

    A ``func`` whose first call draws nothing is taken to be deterministic and no state is
    captured after it (``wanted`` False); one that draws later is caught by the checkpoint
    adjoint's check of every recomputed step. Each captured state is the CPU generator's
    (5056 bytes) and, on CUDA, the device's.
    """

    def __init__(self, device: torch.device):
        self.cuda = device if device.type == "cuda" else None
        self.wanted = True
        self._first = None

    def __call__(self):
        if not self.wanted:
            return None
        state = _rng_states(self.cuda or torch.device("cpu"))
        if self._first is None:
            self._first = state
        elif self._first is not True:
            if all(torch.equal(a, b) for a, b in zip(state, self._first, strict=True)):
                self.wanted = False  # the first call drew nothing
                return None
            self._first = True
        return state

    def apply(self, token) -> None:
        torch.set_rng_state(token[0])
        if self.cuda is not None:
            torch.cuda.set_rng_state(token[1], self.cuda)


def _autocast(state):
    """The autocast region ``state`` = (device type, dtype), or a null context for None."""
    if state is None:
        return contextlib.nullcontext()
    return torch.autocast(state[0], dtype=state[1])


def _batched(x: torch.Tensor) -> bool:
    """Whether ``x`` is a vmap-batched tensor (torch's legacy batching, which
    ``is_grads_batched`` uses, or torch.func's)."""
    fc = getattr(torch._C, "_functorch", None)
    if fc is None:
        return False
    return any(getattr(fc, name, lambda _: False)(x)
               for name in ("is_legacy_batchedtensor", "is_batchedtensor"))


def _check_closure(fn: UserFunc, job: AdjointJob) -> int:
    """Raise if ``func`` reads a tensor that requires grad but is not among the adjoint's
    parameters: the adjoint would silently give it no gradient, where direct backprop gives one.

    Two evaluations with a graph at the forward pass's last call of ``func`` (else at
    ``(t[-1], y(t[-1]))``), each searched back to its leaves (the parameters, and the nodes of
    those that are not leaves, end the search); a tensor is flagged only if both graphs reach
    it, so that a leaf ``func`` creates at each call (a Hamiltonian field's
    ``y.detach().requires_grad_()``) is not. torch's generators are forked: a random ``func``
    draws nothing from the user's stream. ``job.drift`` gets how far the values lie from the
    forward's there (something ``func`` reads changed since?). Returns the number of
    evaluations.
    """
    devices = [job.fn.device] if job.fn.device.type == "cuda" else []
    # the listed non-leaf tensors, as autograd edges (node, output number): the outputs of one
    # node (chunk, split, unbind) share it, and an unlisted sibling's edge must be searched on
    stops = {(p.grad_fn, p.output_nr) for p in job.params if p.grad_fn is not None}
    known = {id(p) for p in (*job.params, *job.exempt)}
    inputs = {p.grad_fn for p in job.params if p.grad_fn is not None}
    leaf_ids = {id(p) for p in job.params if p.grad_fn is None}
    found, off = [], []
    if job.last is not None:
        tt, y_at, f_at = job.last
        scale = f_at.abs().max()
        allowed = RECOMPUTE_LIMIT * torch.finfo(f_at.dtype).eps * scale
    else:
        tt, y_at = fn.t_tensor(float(job.t_np[-1])), job.sol.y[-1]
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            for _ in range(2):
                y = y_at.detach().requires_grad_(True)
                f = fn.call(tt, y)
                if job.last is not None and torch.is_tensor(f):
                    off.append((f.detach() - f_at).abs().max())
                if not torch.is_tensor(f) or f.grad_fn is None:
                    return len(found) + 1
                found.append((_leaves(f, stops, known | {id(y)}),
                              _executed(f, inputs, {id(y), *leaf_ids})))
    finally:
        if off:  # one sync
            job.drift = (float(torch.stack(off).max()), float(allowed))
    # a node both graphs run, other than a leaf's, is the caller's: func reads a tensor
    # computed outside it (k = log_k.exp()), and each VJP must leave that node's saved tensors
    job.outer_graph = bool(set(found[0][1]) & set(found[1][1]))
    found = [leaves for leaves, _ in found]
    both = [v for k, v in found[0].items() if k in found[1]]
    if both:
        var = both[0]
        raise ValueError(
            f"`func` uses a {var.dtype} tensor of shape {tuple(var.shape)} that requires "
            "grad but is not in `adjoint_params` (default: func.parameters()), so the "
            "adjoint would silently give it no gradient (direct backpropagation gives one). "
            "Pass it in `adjoint_params`, or detach it in `func` (or requires_grad_(False)) "
            "if it is not to be trained")
    return 2


def _leaves(f: torch.Tensor, stops: set, known: set) -> dict:
    """The leaves requiring grad that ``f``'s graph reaches, by id, other than ``known`` ones,
    searching no further than the ``stops`` edges ``(node, output number)``."""
    out, stack, seen = {}, [(f.grad_fn, f.output_nr)], set()
    while stack:
        edge = stack.pop()
        node = edge[0]
        if node is None or edge in stops or node in seen:
            continue
        seen.add(node)
        var = getattr(node, "variable", None)  # AccumulateGrad: a leaf that requires grad
        if var is not None and id(var) not in known:
            out[id(var)] = var
        stack.extend(node.next_functions)
    return out


def _executed(f: torch.Tensor, inputs: set, input_ids: set) -> set:
    """The nodes of ``f``'s graph that a VJP with respect to the inputs runs: those on a path
    to an input, a leaf (its id in ``input_ids``) or a non-leaf's node (in ``inputs``; run
    itself only if on a path to another: ``w1, w2 = theta.chunk(2)``, ``u = 2 w1``, inputs
    ``(w2, u)``: u's node runs, as it feeds the chunk node). torch's engine walks the whole
    graph for its dependencies too."""
    reaches: dict = {}
    stack = [(f.grad_fn, False)]
    while stack:
        node, done = stack.pop()
        if node is None or (not done and node in reaches):
            continue
        nxt = [m for m, _ in node.next_functions if m is not None]
        if not done:
            reaches[node] = False  # on the stack (a DAG: no cycle comes back to it)
            stack.append((node, True))
            stack.extend((m, False) for m in nxt if m not in reaches)
            continue
        reaches[node] = any(m in inputs or id(getattr(m, "variable", None)) in input_ids
                            or reaches.get(m, False) for m in nxt)
    return {n for n, r in reaches.items() if r and getattr(n, "variable", None) is None}


def _rng_states(device: torch.device) -> list[torch.Tensor]:
    """The states of torch's default generators that ``func`` may draw from on ``device``
    (the CPU's, and the device's own on CUDA)."""
    states = [torch.get_rng_state()]
    if device.type == "cuda":
        states.append(torch.cuda.get_rng_state(device))
    return states


def _both(first, second):
    """One step observer calling ``first`` (None: none) and then ``second``."""
    if first is None:
        return second

    def observe(event, t0, y0, h):
        first(event, t0, y0, h)
        second(event, t0, y0, h)
    return observe


def _module_params(func) -> tuple[torch.Tensor, ...] | None:
    """``func``'s parameters when they are all reachable through modules, else None.

    An ``nn.Module``, or a Wong-Zakai field (``gqlib.sde.wong_zakai``) whose drift and diffusion
    are both ``nn.Module``s (their parameters, shared ones once).
    """
    if isinstance(func, nn.Module):
        return tuple(func.parameters())
    from gqlib.sde import WongZakaiField

    if (isinstance(func, WongZakaiField) and isinstance(func.drift, nn.Module)
            and isinstance(func.diffusion, nn.Module)):
        return tuple({id(p): p for m in (func.drift, func.diffusion)
                      for p in m.parameters()}.values())
    return None


def adjoint_params_of(func, adjoint_params) -> tuple[torch.Tensor, ...]:
    if adjoint_params is None:
        params = _module_params(func)
        if params is None:
            raise ValueError("an adjoint needs the tensors to differentiate: `func` is neither an "
                             "nn.Module nor a Wong-Zakai field of nn.Module drift and diffusion, "
                             "so pass them as `adjoint_params` (tensors it closes over would "
                             "otherwise silently get no gradient); `adjoint_params=()` if there "
                             "are none")
    else:
        params = tuple(adjoint_params)
        for i, p in enumerate(params):
            if not torch.is_tensor(p):
                raise TypeError(f"`adjoint_params[{i}]` must be a torch.Tensor, got "
                                f"{type(p).__name__}")
    _check_not_derived(params)
    # each tensor once: a tensor listed twice would be an input of the autograd Function twice,
    # get the whole a^T df/dtheta at each and so twice its gradient
    return tuple({id(p): p for p in params if p.requires_grad}.values())


def _check_not_derived(params: tuple) -> None:
    """Raise if a listed tensor is computed from another listed one (``k = log_k.exp()`` and
    ``adjoint_params=(log_k, k)``): the parameter VJP with respect to ``log_k`` already passes
    through ``k``, and autograd then carries ``k``'s own gradient into ``log_k`` again, so
    ``log_k`` would get that part twice (direct backpropagation counts it once)."""
    where = {id(p): i for i, p in enumerate(params) if p.requires_grad}
    # autograd edges (node, output number): the outputs of one node (chunk, split, unbind)
    # share it, and a tensor computed from one of them is not computed from the others
    edges = {(p.grad_fn, p.output_nr): i for i, p in enumerate(params)
             if p.requires_grad and p.grad_fn}
    seen: set = set()  # shared: a listed edge is never reached from its own tensor, so any
    for i, p in enumerate(params):  # listed edge found from any start is a derived pair
        if not p.requires_grad or p.grad_fn is None:
            continue
        stack = list(p.grad_fn.next_functions)
        while stack:
            edge = stack.pop()
            node = edge[0]
            if node is None:
                continue
            var = getattr(node, "variable", None)  # AccumulateGrad: a leaf
            j = edges.get(edge, where.get(id(var)) if var is not None else None)
            if j is not None and j != i:
                raise ValueError(
                    f"`adjoint_params[{i}]` is computed from `adjoint_params[{j}]` (through "
                    "autograd), so the adjoint would count the part of the gradient that "
                    f"flows through it twice; list only one of them (func may still read "
                    f"`adjoint_params[{i}]`: with `adjoint_params[{j}]` listed, the gradient "
                    "reaches it through autograd)")
            if j is None and node not in seen:
                seen.add(node)
                stack.extend(node.next_functions)


def frozen_params_of(func, adjoint_params) -> tuple[torch.Tensor, ...]:
    """The tensors of ``func`` (its module parameters, or ``adjoint_params``) that get no
    gradient: the backward pass reads them too, so they are saved for its version check."""
    params = _module_params(func) if adjoint_params is None else tuple(adjoint_params)
    return tuple(p for p in params or () if torch.is_tensor(p) and not p.requires_grad)


def exempt_params_of(func, adjoint_params) -> tuple[torch.Tensor, ...]:
    """``func``'s module parameters that an explicit ``adjoint_params`` leaves out: the caller's
    word that they get no gradient (torchdiffeq's meaning), not a tensor ``func`` closes over."""
    if adjoint_params is None:
        return ()
    return _module_params(func) or ()
