"""Parameter VJPs of many calls of a row-wise field, taken as one call on their stacked rows.

A field that ignores ``t`` and maps each row of ``y`` (axis 0) on its own satisfies
``sum_i c_i^T df/dtheta(y_i) = C^T dF/dtheta(Y)`` with ``Y``, ``C`` the rows of the ``y_i``, ``c_i``
stacked. At a small batch each parameter VJP is bound by writing a parameter-sized gradient (one
GEMV-shaped product per layer, then an accumulation); stacked, the same products become one
GEMM with ``sum_i rows_i`` rows and the parameter gradient is written once per stack.

The field declares ``rowwise = True`` (the user's assertion: gqlib.torch's
``adjoint_options={"rowwise": True}``). Every stack checks it: the stacked call's values must
equal the recorded ones of the separate calls, which they do not for a field that reads ``t``
(the calls are at different times) or couples rows (batch norm, dropout), and
:class:`RowwiseMismatch` says so instead of returning a wrong gradient.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["RowStack", "RowwiseMismatch", "stack_rows_for"]

# Stacking pays where a call's parameter VJP is bound by memory traffic (a few rows), not by
# arithmetic; measured crossover on CPU (docs/bench_torch.md, W = 1024): see stack_rows_for.
MAX_CALL_ROWS = 16
STACK_ROWS = 512  # rows per stacked call: bounds the stacked forward's activations
_CHUNK = 1 << 18  # elements per piece of the parameter-VJP comparison


class RowwiseMismatch(ValueError):
    """A field declared ``rowwise`` gave different values on stacked rows than on its own calls."""


def stack_rows_for(cf, shape) -> int:
    """Rows per stacked call for a field and a state of ``shape``; 0 where stacking does not
    apply (the field is not declared row-wise, has no parameters, the state has no row axis) or
    does not pay (more than :data:`MAX_CALL_ROWS` rows per call)."""
    if not (cf.rowwise and cf.has_params):
        return 0
    shape = tuple(shape)
    if len(shape) < 2 or shape[0] > MAX_CALL_ROWS:
        return 0
    return max(STACK_ROWS, shape[0])


class RowStack:
    """Collects ``(t, y, f(t, y) or None, c)`` of field calls; :meth:`flush` adds ``sum_i c_i^T
    df/dtheta(y_i)`` into the parameter accumulator with one linearisation of the field at the
    stacked rows (counted as one f and one VJP call). The check compares the recorded values,
    or, where none were recorded (quadrature nodes), the last call's rows with one call of its
    own."""

    def __init__(self, cf, xp, max_rows: int):
        self.cf, self.xp, self.max_rows = cf, xp, int(max_rows)
        self.items: list = []
        self.rows = 0
        self.n_stacks = 0
        self.n_calls = 0

    def add(self, t: float, y, value, cot, into):
        """Queue one call's product; flushes (and returns the updated ``into``) when full."""
        self.items.append((t, y, value, cot))
        self.rows += int(y.shape[0])
        self.n_calls += 1
        return self.flush(into) if self.rows >= self.max_rows else into

    def flush(self, into):
        """``into + sum_i c_i^T df/dtheta(y_i)`` over the queued calls (``into`` None: a new
        buffer); raises :class:`RowwiseMismatch` if the stacked values are not the recorded ones."""
        if not self.items:
            return into
        xp = self.xp
        items, self.items, self.rows = self.items, [], 0
        t0 = items[0][0]
        Y = xp.concat([it[1] for it in items], axis=0)
        C = xp.concat([it[3] for it in items], axis=0)
        times = [it[0] for it in items]
        own = None
        if len(items) > 1:  # one call stacked is that call
            # the call farthest in time from t0: the stacked linearisation is taken at t0. Its
            # parameter VJP is checked first, before the stack's graph exists (lower peak)
            far = max(range(len(items)), key=lambda i: abs(items[i][0] - t0))
            own_p = None
            if items[far][2] is None:  # quadrature nodes: no recorded values, one call of its own
                own, _, own_p = self.cf.f_vjp(items[far][0], items[far][1], items[far][3])
            if items[far][0] != t0:
                self._check_params(items[far], t0, own_p, times)
            del own_p
        lin = self.cf.linearize(t0, Y)
        if len(items) > 1:
            if own is None:
                self._check(lin.value, xp.concat([it[2] for it in items], axis=0), times)
            else:
                n0 = sum(int(it[1].shape[0]) for it in items[:far])
                n1 = int(items[far][1].shape[0])
                self._check(lin.value[n0:n0 + n1], own, times)
        _, into = lin.vjp(C, into)
        self.n_stacks += 1
        return into

    def _check_params(self, item, t0: float, own_p, times):
        """The parameter VJP is what the stack takes at t0 for every call: a field whose values
        ignore t can still have a parameter Jacobian that reads it (a zero-initialised output
        layer after a layer fed t; a t term below the value check's round-off bound in
        float32). Compare one call's parameter VJP at its own time with the same at t0."""
        xp = self.xp
        t, y, _, c = item
        if own_p is None:
            own_p = self.cf.vjp_params(t, y, c)
        at_t0 = self.cf.vjp_params(t0, y, c)
        own_p, at_t0 = xp.reshape(own_p, (-1,)), xp.reshape(at_t0, (-1,))
        # the same operations on the same inputs: equal to round-off of each element, not of
        # the largest (a small parameter's gradient must not hide under a large one's); in
        # chunks, so that the comparison holds no parameter-sized temporaries
        n = int(own_p.shape[0])
        if n == 0:
            return
        eps = float(np.finfo(_numpy_dtype(own_p)).eps)
        chunks = [(i, min(i + _CHUNK, n)) for i in range(0, n, _CHUNK)]
        top = max(float(xp.max(xp.abs(own_p[i:j]) + xp.abs(at_t0[i:j]))) for i, j in chunks)
        floor = 1e-3 * top
        bad, err = -math.inf, 0.0
        for i, j in chunks:
            a, b = own_p[i:j], at_t0[i:j]
            e = xp.abs(b - a)
            bad = max(bad, float(xp.max(e - 1e4 * eps * (xp.abs(a) + xp.abs(b) + floor))))
            err = max(err, float(xp.max(e)))
        if not bad <= 0.0:  # also catches NaN
            raise RowwiseMismatch(
                "the field was declared row-wise (rowwise=True), but its parameter VJP at t = "
                f"{t:.6g} differs from the same at t = {t0:.6g} by up to {err:.3g} (largest "
                f"{top:.3g}; calls at t = {min(times):.6g} .. {max(times):.6g}): df/dtheta reads "
                "t (e.g. a layer fed t before a zero-initialised output layer). Remedy: drop "
                "rowwise=True")

    def _check(self, stacked, recorded, times):
        xp = self.xp
        eps = float(np.finfo(_numpy_dtype(recorded)).eps)
        scale = float(xp.max(xp.abs(recorded))) if recorded.shape[0] else 0.0
        diff = float(xp.max(xp.abs(stacked - recorded))) if recorded.shape[0] else 0.0
        if not diff <= 1e4 * eps * (scale + 1.0):  # also catches NaN
            raise RowwiseMismatch(
                f"the field was declared row-wise (rowwise=True), but f(t, y) on {len(times)} "
                f"calls' rows stacked differs from the calls' own values by {diff:.3g} (scale "
                f"{scale:.3g}; calls at t = {min(times):.6g} .. {max(times):.6g}): it reads t or "
                "couples the rows of y (batch norm, dropout, a sum over the batch). Remedy: drop "
                "rowwise=True")


def _numpy_dtype(x):
    name = str(getattr(x, "dtype", "float64")).split(".")[-1]
    return np.dtype("float32") if name in ("float32", "bfloat16", "float16") else \
        np.dtype("float64")
