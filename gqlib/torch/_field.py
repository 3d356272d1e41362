"""The user's ``func`` seen by the core: flat states, time as a tensor, VJPs by autograd.

The core calls ``f(t, y)`` with ``t`` a Python float; torchdiffeq users write ``func(t, y)`` with
``t`` a 0-dim tensor (of y's dtype, on y's device, as torchdiffeq passes it) and ``y`` a tensor or
a tuple of tensors. :class:`UserFunc` bridges the two; :class:`TorchField` and
:class:`TorchParamField` add the vector-Jacobian products of :class:`gqlib.adjoint.VectorField`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from gqlib.adjoint import LinearizationUnavailable

from .. import _checks

__all__ = ["UserFunc", "TorchField", "TorchParamField", "TorchLinearization", "rms_norm",
           "state_norm", "adjoint_norm"]


class UserFunc:
    """``func(t_tensor, y)`` callable as ``f(t_float, y_flat)``.

    Parameters
    ----------
    func : callable
        The user's vector field.
    shapes : sequence of torch.Size or None
        Component shapes of a tuple state (the core's state is their flat concatenation), or
        None for a plain tensor state (passed through with its own shape).
    dtype, device
        The state's dtype and device: ``t`` is built as ``torch.full((), t, ...)`` (no
        host-to-device copy, no sync).
    """

    def __init__(self, func: Callable, shapes: Sequence[torch.Size] | None, dtype: torch.dtype,
                 device: torch.device, *, check: bool = True, time_map: dict | None = None):
        self.func = func
        self.time_map = time_map or {}
        self.shapes = None if shapes is None else [torch.Size(s) for s in shapes]
        self.dtype, self.device = dtype, device
        self._check = check
        self._check_each = _checks.enabled()  # read once per solve
        # (t, y, f) of the latest call while ``recording``: the adjoint's forward pass keeps
        # its last call, and the backward pass compares func there with what it returned then
        self.recording, self.last = False, None
        if self.shapes is not None:
            self.sizes = [s.numel() for s in self.shapes]

    def t_tensor(self, t: float) -> torch.Tensor:
        return torch.full((), self.time_map.get(t, t), dtype=self.dtype, device=self.device)

    def with_time_map(self, stops, ends: tuple[float, float] | None = None) -> None:
        """Keep one-sided times one-sided in the state's dtype (torchdiffeq's ``Perturb``).

        The core nudges a time one float64 ulp off a tstop ``s``; cast to float32 that is ``s``
        again, on the wrong side of a jump. Each such time is mapped to ``s`` cast to the
        state's dtype and moved one ulp of that dtype the same way (torchdiffeq's order: cast,
        then ``nextafter``). ``ends = (t0, t1)`` also maps the span's ends one ulp inwards (with
        ``perturb=True``: ``func`` never sees a grid point itself).
        """
        tm: dict = {}
        inf = torch.tensor(math.inf, dtype=self.dtype)

        def step(x: float, toward: float) -> float:
            xc = torch.tensor(x, dtype=self.dtype)
            return float(torch.nextafter(xc, inf if toward > x else -inf))

        if self.dtype != torch.float64:
            for s in stops:
                s = float(s)
                sc = float(torch.tensor(s, dtype=self.dtype))
                tm[math.nextafter(s, math.inf)] = step(sc, math.inf)
                tm[math.nextafter(s, -math.inf)] = step(sc, -math.inf)
        if ends is not None and ends[0] != ends[1]:
            t0, t1 = (float(e) for e in ends)
            tm[t0] = step(float(torch.tensor(t0, dtype=self.dtype)), t1)
            tm[t1] = step(float(torch.tensor(t1, dtype=self.dtype)), t0)
        self.time_map = tm

    def split(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Flat state -> the user's tuple (views)."""
        parts = torch.split(y, self.sizes, dim=-1)
        lead = y.shape[:-1]
        return tuple(p.reshape((*lead, *s)) for p, s in zip(parts, self.shapes, strict=True))

    def __call__(self, t: float, y: torch.Tensor) -> torch.Tensor:
        return self.call(self.t_tensor(t), y)

    def _func(self, tt, arg, y: torch.Tensor):
        try:
            return self.func(tt, arg)
        except RuntimeError as err:  # autograd's refusal, where y is a leaf being differentiated
            if y.is_leaf and y.requires_grad and "leaf Variable that requires grad" in str(err):
                _modified_in_place(err, "or one of its parameters ")
            raise

    def call(self, tt: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = self._call(tt, y)
        if self.recording:
            self.last = (tt, y, out)
        return out

    def _call(self, tt: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # the first call checks type, dtype and device; every call checks the shape and dtype
        # (host metadata, no sync), so that a field that changes shape never broadcasts silently
        version = y._version
        if self.shapes is None:
            out = self._func(tt, y, y)
            if self._check_each and y._version != version:
                _modified_in_place()
            if self._check:
                _check_output(out, y, "y0")
                self._check = False
            elif self._check_each:
                try:  # host metadata, no sync
                    bad = out.shape != y.shape or out.dtype is not y.dtype
                except AttributeError:
                    bad = True
                if bad:
                    _check_output(out, y, "y0")
            return out
        parts = self.split(y)
        out = self._func(tt, parts, y)
        if self._check_each and y._version != version:  # views share y's version counter
            _modified_in_place()
        if self._check or not isinstance(out, (tuple, list)) or len(out) != len(parts) \
                or (self._check_each and any(
                    getattr(o, "shape", None) != p.shape or getattr(o, "dtype", None) != p.dtype
                    for o, p in zip(out, parts, strict=True))):
            if not isinstance(out, (tuple, list)) or len(out) != len(parts):
                raise TypeError(f"`func(t, y)` must return a tuple of {len(parts)} tensors like the "
                                f"tuple `y0`, got {_describe(out)}")
            for i, (o, p) in enumerate(zip(out, parts, strict=True)):
                _check_output(o, p, f"y0[{i}]")
            self._check = False
        return torch.cat([o.reshape(-1) for o in out])


def _modified_in_place(cause=None, also: str = ""):
    raise ValueError(
        f"`func(t, y)` modified its input `y` {also}in place: `y` is the solver's own state or "
        "stage, which would change under it and give a wrong solution or gradient. Use "
        "out-of-place operations (`y = y * 2`, not `y.mul_(2)`)") from cause


def _describe(x: Any) -> str:
    if torch.is_tensor(x):
        return f"a tensor of shape {tuple(x.shape)}"
    if isinstance(x, (tuple, list)):
        return f"a {type(x).__name__} of length {len(x)}"
    return type(x).__name__


def _check_output(out: Any, like: torch.Tensor, name: str) -> None:
    where = "`func(t, y)`" if name == "y0" else f"`func(t, y)`[{name[3:-1]}]"
    if not torch.is_tensor(out):
        raise TypeError(f"{where} must return a torch.Tensor like `{name}`, got {_describe(out)}")
    if out.shape != like.shape:
        raise ValueError(f"{where} returned shape {tuple(out.shape)}; expected `{name}`'s shape "
                         f"{tuple(like.shape)}")
    if out.dtype != like.dtype:
        raise TypeError(f"{where} returned dtype {out.dtype}; expected `{name}`'s dtype "
                        f"{like.dtype} (cast the output, or y0, so that they match)")
    if out.device != like.device:
        raise ValueError(f"{where} returned a tensor on {out.device}; expected `{name}`'s device "
                         f"{like.device}")


class TorchField:
    """:class:`gqlib.adjoint.VectorField` of a user func without parameters to differentiate.

    ``f_vjp_y`` is the fused form the GQ backward solve calls at every stage: one forward pass
    with a graph and one backward pass, differentiating with respect to y only.
    """

    accumulates_params = True  # vjp(..., into=buf) adds thetabar into buf in place
    _param_ptrs: frozenset = frozenset()  # the parameters' storages (not counted as saved)
    # func reads a tensor computed outside it from a parameter (k = log_k.exp()): a parameter
    # VJP passes through that tensor's node, which belongs to the caller's graph and must
    # outlive each VJP (set by the torch adapter's closure check)
    retain_graph = False

    def __init__(self, fn: UserFunc):
        self.fn = fn

    def _flat(self, grads):
        dt, dev = self.fn.dtype, self.fn.device
        return torch.cat([g.reshape(-1).to(dt) for g in grads]) if grads else \
            torch.zeros(0, dtype=dt, device=dev)

    def _into(self, grads, into):
        """The flat parameter gradient ``into + grads``, added in place one parameter at a time
        (no flat copy of ``grads``); ``into`` None: a new flat buffer."""
        if into is None:
            return self._flat(grads)
        with torch.no_grad():
            for view, g in zip(torch.split(into, self.numels), grads, strict=True):
                view.view(g.shape).add_(g)
        return into

    def __call__(self, t: float, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.fn(t, y)

    def f_vjp_y(self, t: float, y: torch.Tensor, a: torch.Tensor):
        with torch.enable_grad():
            y_ = y.detach().requires_grad_(True)
            f = self.fn(t, y_)
            vy = _grad(f, (y_,), a, retain=self.retain_graph)[0]
        return f.detach(), vy

    def vjp_y(self, t: float, y: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.f_vjp_y(t, y, a)[1]

    def pullback(self, build, y: torch.Tensor):
        """``build(f, y)`` recorded as one autograd graph; its pullback is one backward pass
        (autograd sums each parameter's contributions inside the pass)."""
        params = getattr(self, "params", ())
        with torch.enable_grad():
            y_ = y.detach().requires_grad_(True)
            outputs = build(self.fn, y_)

        def vjp(cotangents, into=None):
            grads = torch.autograd.grad(outputs, (y_, *params), cotangents, allow_unused=True,
                                        retain_graph=self.retain_graph)
            grads = [torch.zeros_like(x) if g is None else g
                     for x, g in zip((y_, *params), grads, strict=True)]
            return grads[0], (self._into(grads[1:], into) if params else None)
        return [o.detach() for o in outputs], vjp

    def linearize_measured(self, t: float, y: torch.Tensor) -> tuple[TorchLinearization, int]:
        """:meth:`linearize` and the bytes its graph holds: the tensors autograd saved for the
        backward pass (each storage once, the parameters' own not counted), the state and
        the value (:class:`gqlib.adjoint.StageKeeper` keeps graphs within a budget by it).

        The hook saves a detached alias with its version (:func:`_unpack` checks it): the
        tensor itself would make a saved output and its node a reference cycle through C++
        that no garbage collection frees, and hooks skip autograd's own in-place check."""
        skip = self._param_ptrs
        seen: dict[int, int] = {}

        def pack(x):
            try:
                st = x.untyped_storage()
            except (RuntimeError, NotImplementedError):  # a tensor without storage
                return x
            ptr = st.data_ptr()
            if ptr not in skip:
                seen[ptr] = st.nbytes()
            return _Saved(x)

        with torch.autograd.graph.saved_tensors_hooks(pack, _unpack):
            lin = self.linearize(t, y)
        for x in (lin.y, lin.f):
            seen[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
        return lin, sum(seen.values())

    def linearize(self, t: float, y: torch.Tensor) -> TorchLinearization:
        """One forward pass with a graph, kept for several backward passes."""
        with torch.enable_grad():
            y_ = y.detach().requires_grad_(True)
            f = self.fn(t, y_)
        return TorchLinearization(f, y_, getattr(self, "params", ()), self)


class TorchParamField(TorchField):
    """A :class:`TorchField` with parameters: ``vjp_params`` is one flat vector (length P) in
    the state's dtype, the parameters' gradients concatenated in order."""

    def __init__(self, fn: UserFunc, params: Sequence[torch.Tensor], rowwise: bool = False):
        super().__init__(fn)
        self.rowwise = bool(rowwise)  # see gqlib.adjoint._rows
        self.params = tuple(params)
        self.numels = [p.numel() for p in self.params]
        self._param_ptrs = frozenset(p.untyped_storage().data_ptr() for p in self.params)
        self.n_params = sum(self.numels)  # AutoAdjoint chooses by it

    def vjp_params(self, t: float, y: torch.Tensor, a: torch.Tensor, into=None) -> torch.Tensor:
        """``a^T df/dtheta`` flat; ``into + a^T df/dtheta`` in place when ``into`` is given."""
        with torch.enable_grad():
            f = self.fn(t, y.detach())
            return self._into(_grad(f, self.params, a, retain=self.retain_graph), into)

    def vjp(self, t: float, y: torch.Tensor, a: torch.Tensor):
        return self.f_vjp(t, y, a)[1:]

    def f_vjp(self, t: float, y: torch.Tensor, a: torch.Tensor):
        with torch.enable_grad():
            y_ = y.detach().requires_grad_(True)
            f = self.fn(t, y_)
            vy, *vp = _grad(f, (y_, *self.params), a, retain=self.retain_graph)
        return f.detach(), vy, self._flat(vp)

    def unflatten(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """The flat parameter gradient as one tensor per parameter (shape, dtype, device)."""
        out = []
        for p, chunk in zip(self.params, torch.split(flat, self.numels), strict=True):
            out.append(chunk.reshape(p.shape).to(dtype=p.dtype, device=p.device))
        return out


class TorchLinearization:
    """``f(t, y)`` with its autograd graph: ``vjp_y(a)`` and ``vjp(a)`` are backward passes
    through the same graph (``retain_graph``), freed with this object.

    A ``torch.compile``d ``func`` compiles its backward with donated buffers by default
    (``torch._functorch.config.donated_buffer``), which refuses ``retain_graph=True``; torch's
    error is turned into :class:`gqlib.adjoint.LinearizationUnavailable` (raised before the
    compiled backward runs, so nothing is consumed), and the core replays a forward and a
    backward pass per product from then on.
    """

    def __init__(self, f: torch.Tensor, y: torch.Tensor, params: tuple, field: TorchField):
        self.f, self.y, self.params, self.field = f, y, params, field

    @property
    def value(self) -> torch.Tensor:
        """``f(t, y)`` from the recorded pass, detached."""
        return self.f.detach()

    def _retained(self, inputs, a):
        try:
            return _grad(self.f, inputs, a, retain=True)
        except RuntimeError as err:
            if "donated buffer" in str(err):
                raise LinearizationUnavailable(str(err)) from err
            raise

    def vjp_y(self, a: torch.Tensor) -> torch.Tensor:
        return self._retained((self.y,), a)[0]

    def vjp(self, a: torch.Tensor, into=None):
        vy, *vp = self._retained((self.y, *self.params), a)
        return vy, self.field._into(vp, into)


class _Saved:
    """A tensor saved for a kept graph's backward pass: a detached alias (no reference back to
    its node) and its version at saving time."""

    __slots__ = ("tensor", "version")

    def __init__(self, x: torch.Tensor):
        self.tensor, self.version = x.detach(), x._version


def _unpack(saved):
    if not isinstance(saved, _Saved):
        return saved
    if saved.tensor._version != saved.version:  # autograd's own check, which hooks skip
        raise RuntimeError(
            "one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: a {saved.tensor.dtype} tensor of shape "
            f"{tuple(saved.tensor.shape)} that `func` saved in the forward pass is at version "
            f"{saved.tensor._version}; expected version {saved.version} (a parameter updated "
            "between odeint's forward and backward passes?)")
    return saved.tensor


def _grad(f: torch.Tensor, inputs, a: torch.Tensor, retain: bool = False):
    """``a^T df/d(inputs)``, zeros for inputs f does not depend on."""
    if f.requires_grad:
        grads = torch.autograd.grad(f, inputs, a, allow_unused=True, retain_graph=retain)
    else:
        grads = (None,) * len(inputs)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads, strict=True)]


# -- norms: torchdiffeq's defaults, composed on the device (the core makes the one sync) ----------

def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """torchdiffeq's ``_rms_norm``: ``sqrt(mean(x^2))``."""
    return x.abs().pow(2).mean().sqrt()


def _max_of(values, like: torch.Tensor) -> torch.Tensor:
    vals = [v if torch.is_tensor(v) else torch.as_tensor(v, dtype=like.dtype, device=like.device)
            for v in values]
    if not vals:
        return torch.zeros((), dtype=like.dtype, device=like.device)
    return torch.stack([v.reshape(()).to(like.dtype) for v in vals]).max()


def state_norm(user_norm: Any, fn: UserFunc, shape: torch.Size) -> Callable:
    """The forward norm on the core's state (flat for tuples, y0-shaped otherwise).

    Default: RMS for a tensor state, the max over components of their RMS for a tuple state
    (torchdiffeq's ``_mixed_norm``). A callable receives the state as the user sees it.
    """
    if user_norm in (None, "rms", "max"):
        if user_norm == "max":
            return lambda e: e.abs().max()
        if fn.shapes is None:
            return rms_norm
        return lambda e: _max_of([rms_norm(p) for p in fn.split(e)], e)
    if fn.shapes is None:
        return lambda e: user_norm(e.reshape(shape))
    return lambda e: user_norm(fn.split(e))


def adjoint_norm(blocks: dict, spec: Any, fwd_norm: Callable, fn: UserFunc, shape: torch.Size,
                 numels: Sequence[int]) -> Callable:
    """The backward solve's norm on the core's backward state, as torchdiffeq defines it.

    ``blocks`` is the strategy's layout of its flat backward state
    (:meth:`gqlib.adjoint.AdjointStrategy.state_blocks`: ``y``, ``a``, ``params`` slices).
    ``spec`` None: ``max(norm(y), norm(a), rms of each parameter's block)`` (torchdiffeq's
    default adjoint norm, with the forward norm on y and a); ``"seminorm"``: the same without
    the parameters (Kidger et al. 2021); a callable: torchdiffeq's convention,
    ``norm((t, y, adj_y, *adj_params))`` (y and adj_y unpacked for tuple states), with ``t``
    zero (gqlib never puts t in the backward state), ``y`` zero where the strategy does not
    carry y and no ``adj_params`` where it does not carry the parameter gradient.
    """
    y_b, a_b, p_b = blocks.get("y"), blocks["a"], blocks.get("params")

    def parts(e):
        return (None if y_b is None else e[y_b]), e[a_b], (None if p_b is None else e[p_b])

    if callable(spec):
        def unpack(v):
            return fn.split(v) if fn.shapes is not None else (v.reshape(shape),)

        def user(e):
            y, a, g = parts(e)
            y = torch.zeros_like(a) if y is None else y
            params = () if g is None else tuple(torch.split(g, list(numels)))
            zero = torch.zeros((), dtype=e.dtype, device=e.device)
            return spec((zero, *unpack(y), *unpack(a), *params))
        return user

    with_g = spec != "seminorm"

    def default(e):
        y, a, g = parts(e)
        out = [fwd_norm(a)] if y is None else [fwd_norm(y), fwd_norm(a)]
        if with_g and g is not None and g.numel():
            out += [rms_norm(p) for p in torch.split(g, list(numels))]
        return _max_of(out, e)
    return default
