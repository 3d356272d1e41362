"""The vector-field protocol of the adjoints, and the call counter that wraps every field.

A field supplies ``f`` and vector-Jacobian products; framework adapters implement it (``gqlib.torch``),
NumPy users can use :class:`FunctionField`. gqlib counts each kind of call itself.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import Any, Protocol, runtime_checkable

from .._backend import namespace

__all__ = ["VectorField", "FunctionField", "CountedField", "LinearizationUnavailable"]


class LinearizationUnavailable(Exception):
    """Raised by a linearisation's ``vjp_y``/``vjp`` when its one forward pass cannot serve
    several backward passes (torch: a ``torch.compile``d field whose backward donates its
    buffers, which forbids ``retain_graph``). :class:`CountedField` then replays a full VJP
    call (forward and backward) for this and every later product."""


@runtime_checkable
class VectorField(Protocol):
    """``dy/dt = f(t, y; theta)`` with the vector-Jacobian products the adjoints need.

    Required: ``__call__(t, y)`` and ``vjp_y(t, y, a) = a^T df/dy`` (y-shaped). For parameter
    gradients: ``vjp_params(t, y, a) = a^T df/dtheta`` as one flat 1-D array. Optional fused
    forms, used when present because one forward and one backward pass are cheaper than two of
    each: ``f_vjp_y(t, y, a) -> (f, vjp_y)``, ``vjp(t, y, a) -> (vjp_y, vjp_params)``,
    ``f_vjp(t, y, a) -> (f, vjp_y, vjp_params)``; and ``vjp_t(t, y, a) = a^T df/dt``.
    ``linearize(t, y)`` (optional, used by the collocation and checkpoint adjoints) returns an
    object with ``vjp_y(a)`` and ``vjp(a) -> (vjp_y, vjp_params)`` that reuse one forward pass
    for many cotangents (as ``jax.vjp``'s pullback; torch keeps the graph), and optionally
    ``value = f(t, y)`` from that same pass; its products may raise
    :class:`LinearizationUnavailable`, and the caller then replays full VJP calls. ``pullback(build, y)`` (optional, used by the
    checkpoint adjoint) differentiates a whole computation ``build(f, y)`` made of field calls
    in one backward pass (``jax.vjp``; torch records one graph): ``(outputs, vjp)`` with
    ``vjp(cotangents) -> (ybar, thetabar)``, thetabar flat (None without parameters).
    A field with ``accumulates_params = True`` takes ``into=buf`` in its linearisation's
    ``vjp`` and its pullback's ``vjp``: thetabar is added into ``buf`` in place (a new buffer
    when None) and returned, so that a backward pass holds one parameter-sized accumulator
    instead of a fresh thetabar per call. A field with ``rowwise = True`` declares that f ignores
    t and maps each row of y (axis 0) on its own: at a few rows per call the checkpoint adjoint
    and the quadratures then take the parameter VJPs of many calls as one call on their stacked
    rows, each stack checked (:mod:`gqlib.adjoint._rows`, :class:`RowwiseMismatch`).
    """

    def __call__(self, t: float, y: Any) -> Any: ...

    def vjp_y(self, t: float, y: Any, a: Any) -> Any: ...


class FunctionField:
    """A :class:`VectorField` from plain functions (NumPy users, tests).

    Parameters
    ----------
    f : callable ``f(t, y)``
    vjp_y : callable ``vjp_y(t, y, a)``
    vjp_params : callable ``vjp_params(t, y, a)``, optional
    vjp_t : callable ``vjp_t(t, y, a)``, optional

    Examples
    --------
    >>> import numpy as np
    >>> k = np.array([0.5])
    >>> field = FunctionField(lambda t, y: -k * y, lambda t, y, a: -k * a,
    ...                       lambda t, y, a: np.array([-np.sum(a * y)]))
    >>> field(0.0, np.ones(1))
    array([-0.5])
    """

    def __init__(self, f: Callable, vjp_y: Callable, vjp_params: Callable | None = None,
                 vjp_t: Callable | None = None):
        for name, fn in (("f", f), ("vjp_y", vjp_y)):
            if not callable(fn):
                raise TypeError(f"`{name}` must be callable, got {type(fn).__name__}")
        self._f, self.vjp_y = f, vjp_y
        if vjp_params is not None:
            self.vjp_params = vjp_params
        if vjp_t is not None:
            self.vjp_t = vjp_t

    def __call__(self, t, y):
        return self._f(t, y)


def _checked_vjp_y(vy, a, t):
    """``vjp_y``'s result, whose shape and dtype must be the adjoint's (y's): checked on every
    call (host metadata, no sync), so that a wrong shape never broadcasts silently and an
    integer or complex product never truncates or leaks into the adjoint."""
    if getattr(vy, "shape", None) != a.shape:
        raise ValueError(f"`vjp_y(t, y, a)` returned shape {tuple(getattr(vy, 'shape', ()))} at "
                         f"t = {t!r}; expected y's shape {tuple(a.shape)}")
    if vy.dtype != a.dtype:
        raise TypeError(f"`vjp_y(t, y, a)` returned dtype {vy.dtype} at t = {t!r}; expected the "
                        f"adjoint's dtype {a.dtype} (y's)")
    return vy


def _checked_vjp_params(cf, vp, t):
    """``vjp_params``'s result: one flat real floating array of the same length at every call
    (the first call's), so that a wrong shape never broadcasts into the sum; None (a field
    without parameters) passes."""
    if vp is None:
        return vp
    shape = getattr(vp, "shape", None)
    if shape is None or len(shape) != 1 or (cf.n_params is not None
                                           and shape[0] != cf.n_params):
        expected = ("a flat 1-D array" if cf.n_params is None else
                    f"shape ({cf.n_params},), as at its first call")
        raise ValueError(f"`vjp_params(t, y, a)` returned shape "
                         f"{None if shape is None else tuple(shape)} at t = {t!r}; expected "
                         f"{expected}")
    if not namespace(vp).isdtype(vp.dtype, "real floating"):
        raise TypeError(f"`vjp_params(t, y, a)` returned dtype {vp.dtype} at t = {t!r}; "
                        "expected a real floating dtype")
    cf.n_params = shape[0]
    return vp


class CountedField:
    """Wraps a field, routes calls to its fused forms when it has them, counts them, and times
    them by kind (host wall time: on an asynchronous device it is launch time, not run time)."""

    def __init__(self, field: Any):
        if not callable(field):
            raise TypeError(f"`field` must be callable as field(t, y), got {type(field).__name__}")
        if not callable(getattr(field, "vjp_y", None)):
            raise TypeError("`field` must provide vjp_y(t, y, a) = a^T df/dy (see "
                            "gqlib.adjoint.VectorField); wrap plain functions in FunctionField")
        self.field = field
        self.has_params = callable(getattr(field, "vjp_params", None))
        self.accumulates = bool(getattr(field, "accumulates_params", False))
        # the field ignores t and maps each row of y on its own (the user's word; checked by
        # every stacked call, see gqlib.adjoint._rows)
        self.rowwise = bool(getattr(field, "rowwise", False))
        self.stats = {"nfe_f": 0, "nfe_vjp_y": 0, "nfe_vjp_params": 0}
        self.seconds = {"f": 0.0, "vjp_y": 0.0, "vjp_params": 0.0}
        self.observer = None  # observer(event, t0, a0, h) of the backward steps (gradient())
        self.n_params = None  # the length of vjp_params' result, from its first call
        self.replay = False  # set when a linearisation raised LinearizationUnavailable

    def observe(self, event: str, t0: float, a0, h: float) -> None:
        """Tell the observer of a backward step (a0: the adjoint dL/dy at its start)."""
        if self.observer is not None:
            self.observer(event, t0, a0, h)

    def _timed(self, kind, fn, *args):
        start = perf_counter()
        out = fn(*args)
        self.seconds[kind] += perf_counter() - start
        return out

    def f(self, t, y):
        self.stats["nfe_f"] += 1
        return self._timed("f", self.field, t, y)

    def vjp_y(self, t, y, a):
        self.stats["nfe_vjp_y"] += 1
        return _checked_vjp_y(self._timed("vjp_y", self.field.vjp_y, t, y, a), a, t)

    def vjp_params(self, t, y, a):
        self.stats["nfe_vjp_params"] += 1
        return _checked_vjp_params(self, self._timed("vjp_params", self.field.vjp_params, t, y,
                                                     a), t)

    def vjp_params_into(self, t, y, a, into):
        """``into + a^T df/dtheta``: in place when the field accumulates (``into`` None: a new
        buffer, never the field's own)."""
        self.stats["nfe_vjp_params"] += 1
        if self.accumulates:
            return _checked_vjp_params(
                self, self._timed("vjp_params", self.field.vjp_params, t, y, a, into), t)
        return accumulate(into, _checked_vjp_params(
            self, self._timed("vjp_params", self.field.vjp_params, t, y, a), t))

    def f_vjp_y(self, t, y, a):
        fused = getattr(self.field, "f_vjp_y", None)
        if fused is not None:
            self.stats["nfe_f"] += 1
            self.stats["nfe_vjp_y"] += 1
            fy, vy = self._timed("vjp_y", fused, t, y, a)
            return fy, _checked_vjp_y(vy, a, t)
        return self.f(t, y), self.vjp_y(t, y, a)

    def f_vjp(self, t, y, a):
        fused = getattr(self.field, "f_vjp", None)
        if fused is not None:
            self.stats["nfe_f"] += 1
            self.stats["nfe_vjp_y"] += 1
            self.stats["nfe_vjp_params"] += 1
            fy, vy, vp = self._timed("vjp_params", fused, t, y, a)
            return fy, _checked_vjp_y(vy, a, t), _checked_vjp_params(self, vp, t)
        both = getattr(self.field, "vjp", None)
        if both is not None:
            fy = self.f(t, y)
            self.stats["nfe_vjp_y"] += 1
            self.stats["nfe_vjp_params"] += 1
            vy, vp = self._timed("vjp_params", both, t, y, a)
            return fy, _checked_vjp_y(vy, a, t), _checked_vjp_params(self, vp, t)
        return self.f(t, y), self.vjp_y(t, y, a), self.vjp_params(t, y, a)

    @property
    def has_pullback(self) -> bool:
        return callable(getattr(self.field, "pullback", None))

    def pullback(self, build, y):
        """``build(f, y)`` (outputs computed from y with the field f) and its pullback, by the
        field's framework (``jax.vjp``'s shape): ``(outputs, vjp)`` with
        ``vjp(cotangents) -> (ybar, thetabar)``. Counted as one f and one VJP (y and theta) per
        field call inside ``build``."""
        calls = [0]

        def counting_build(f, y_):
            def f_counted(t, x):
                calls[0] += 1
                return f(t, x)
            return build(f_counted, y_)

        outputs, vjp = self._timed("f", self.field.pullback, counting_build, y)
        self.stats["nfe_f"] += calls[0]

        def counted_vjp(cotangents, into=None):
            """``(ybar, into + thetabar)``: in place when the field accumulates."""
            self.stats["nfe_vjp_y"] += calls[0]
            if not self.has_params:
                return self._timed("vjp_y", vjp, cotangents)
            self.stats["nfe_vjp_params"] += calls[0]
            if self.accumulates:
                return self._timed("vjp_params", vjp, cotangents, into)
            ybar, part = self._timed("vjp_params", vjp, cotangents)
            return ybar, accumulate(into, part)
        return outputs, counted_vjp

    def linearize(self, t, y):
        """The field linearised at ``(t, y)``: one forward pass (counted in ``nfe_f``), then each
        ``vjp_y(a)`` / ``vjp(a)`` a backward pass through it (counted as a VJP). Fields without
        ``linearize``, and every field once one of its linearisations raised
        :class:`LinearizationUnavailable`, get a stand-in that makes a full VJP call each time."""
        native = getattr(self.field, "linearize", None)
        if native is None or self.replay:
            return _Replayed(self, t, y)
        self.stats["nfe_f"] += 1
        return _Counted(self, self._timed("f", native, t, y), t, y)


class _Counted:
    """A field's own linearisation, counted and timed by its CountedField."""

    def __init__(self, cf: CountedField, lin: Any, t, y):
        self.cf, self.lin, self.t, self.y = cf, lin, t, y

    @property
    def value(self):
        """``f(t, y)``: the linearisation's own (``lin.value``), else one counted call."""
        v = getattr(self.lin, "value", None)
        return self.cf.f(self.t, self.y) if v is None else v

    def vjp_y(self, a):
        if not self.cf.replay:
            try:
                vy = self.cf._timed("vjp_y", self.lin.vjp_y, a)
            except LinearizationUnavailable:
                self.cf.replay = True
            else:
                self.cf.stats["nfe_vjp_y"] += 1
                return _checked_vjp_y(vy, a, self.t)
        return _Replayed(self.cf, self.t, self.y).vjp_y(a)

    def vjp(self, a, into=None):
        """``(vjp_y, into + vjp_params)``: in place when the field accumulates; ``into`` None:
        a new buffer."""
        if not self.cf.replay:
            try:
                if self.cf.accumulates:
                    out = self.cf._timed("vjp_params", self.lin.vjp, a, into)
                else:
                    vy, vp = self.cf._timed("vjp_params", self.lin.vjp, a)
                    out = (vy, accumulate(into, vp))
            except LinearizationUnavailable:
                self.cf.replay = True
            else:
                self.cf.stats["nfe_vjp_y"] += 1
                self.cf.stats["nfe_vjp_params"] += 1
                return out
        return _Replayed(self.cf, self.t, self.y).vjp(a, into)


class _Replayed:
    """Stand-in linearisation: every product is a full VJP call at the stored point (a fused
    one where the field has it: a field with ``f_vjp_y``/``f_vjp`` runs f inside its VJPs, and
    the fused call counts that forward pass in ``nfe_f``)."""

    def __init__(self, cf: CountedField, t, y):
        self.cf, self.t, self.y = cf, t, y

    @property
    def value(self):
        return self.cf.f(self.t, self.y)

    def vjp_y(self, a):
        if callable(getattr(self.cf.field, "f_vjp_y", None)):
            return self.cf.f_vjp_y(self.t, self.y, a)[1]
        return self.cf.vjp_y(self.t, self.y, a)

    def vjp(self, a, into=None):
        if callable(getattr(self.cf.field, "f_vjp", None)):
            _, vy, vp = self.cf.f_vjp(self.t, self.y, a)
            return vy, accumulate(into, vp)
        both = getattr(self.cf.field, "vjp", None)
        if both is not None:
            self.cf.stats["nfe_vjp_y"] += 1
            self.cf.stats["nfe_vjp_params"] += 1
            vy, vp = self.cf._timed("vjp_params", both, self.t, self.y, a)
            vy, vp = _checked_vjp_y(vy, a, self.t), _checked_vjp_params(self.cf, vp, self.t)
        else:
            vy, vp = self.cf.vjp_y(self.t, self.y, a), self.cf.vjp_params(self.t, self.y, a)
        return vy, accumulate(into, vp)


def accumulate(total, part):
    """``total + part``, in place into ``total`` (a copy of ``part`` when total is None: never
    an alias of the field's own output)."""
    if part is None:
        return total
    if total is None:
        return namespace(part).asarray(part, copy=True)
    total += part
    return total
