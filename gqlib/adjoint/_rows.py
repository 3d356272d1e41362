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

import numpy as np

__all__ = ["RowStack", "RowwiseMismatch", "stack_rows_for"]

# Stacking pays where a call's parameter VJP is bound by memory traffic (a few rows), not by
# arithmetic; measured crossover on CPU (docs/bench_torch.md, W = 1024): see stack_rows_for.
MAX_CALL_ROWS = 16
STACK_ROWS = 512  # rows per stacked call: bounds the stacked forward's activations


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
        lin = self.cf.linearize(t0, Y)
        if len(items) > 1:  # one call stacked is that call
            if all(it[2] is not None for it in items):
                self._check(lin.value, xp.concat([it[2] for it in items], axis=0), times)
            else:
                t1, y1 = items[-1][0], items[-1][1]
                n1 = int(y1.shape[0])
                self._check(lin.value[-n1:], self.cf.f(t1, y1), times)
        _, into = lin.vjp(C, into)
        self.n_stacks += 1
        return into

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
