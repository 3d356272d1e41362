"""Brownian motion as a virtual Brownian tree (deterministic in the seed, query-order independent)."""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from gqlib._jit import DISABLED, jit, prange

from ._rng import normal, seed_key
from ._xp import convert_like, is_numpy, to_numpy

__all__ = ["BrownianPath"]

#: Default resolution, relative to t1 - t0: 20 levels of bisection.
DEFAULT_RELATIVE_TOL = 2.0**-20
#: Node ids of level L are in [2**L, 2**(L+1)); they must fit a uint64.
MAX_DEPTH = 60


@jit
def _tree_element(s, key, elem, depth, sqrt_c, stds, out, e_col):
    """Values W(s_i) of one element for sorted s in [0, 1], by depth-first bridge bisection.

    Writes ``out[i, e_col]``. Every node of the tree draws its normal from (key, node id, elem), so a
    value depends only on s and the seed, never on the other query points. The traversal visits each
    node at most once per call: O(n + nodes visited) instead of O(n * depth) for n sorted points.
    """
    n = s.shape[0]
    w1 = sqrt_c * normal(key, np.uint64(0), elem)
    # Points at the ends of [0, 1].
    lo = 0
    while lo < n and s[lo] <= 0.0:
        out[lo, e_col] = 0.0
        lo += 1
    hi = n
    while hi > lo and s[hi - 1] >= 1.0:
        out[hi - 1, e_col] = w1
        hi -= 1
    if lo >= hi:
        return
    size = 2 * depth + 4
    st_a = np.empty(size)
    st_b = np.empty(size)
    st_wa = np.empty(size)
    st_wb = np.empty(size)
    st_node = np.empty(size, dtype=np.uint64)
    st_lvl = np.empty(size, dtype=np.int64)
    st_lo = np.empty(size, dtype=np.int64)
    st_hi = np.empty(size, dtype=np.int64)
    top = 0
    st_a[0] = 0.0
    st_b[0] = 1.0
    st_wa[0] = 0.0
    st_wb[0] = w1
    st_node[0] = np.uint64(1)
    st_lvl[0] = 0
    st_lo[0] = lo
    st_hi[0] = hi
    top = 1
    while top > 0:
        top -= 1
        a = st_a[top]
        b = st_b[top]
        wa = st_wa[top]
        wb = st_wb[top]
        node = st_node[top]
        lvl = st_lvl[top]
        i0 = st_lo[top]
        i1 = st_hi[top]
        if lvl == depth:
            # Below the resolution: the bridge mean (linear interpolation) between the leaf's ends.
            for i in range(i0, i1):
                out[i, e_col] = wa + (wb - wa) * ((s[i] - a) / (b - a))
            continue
        m = 0.5 * (a + b)
        wm = 0.5 * (wa + wb) + stds[lvl] * normal(key, node, elem)
        k1 = i0
        while k1 < i1 and s[k1] < m:
            k1 += 1
        k2 = k1
        while k2 < i1 and s[k2] == m:
            out[k2, e_col] = wm
            k2 += 1
        if k2 < i1:
            st_a[top] = m
            st_b[top] = b
            st_wa[top] = wm
            st_wb[top] = wb
            st_node[top] = np.uint64(2) * node + np.uint64(1)
            st_lvl[top] = lvl + 1
            st_lo[top] = k2
            st_hi[top] = i1
            top += 1
        if k1 > i0:
            st_a[top] = a
            st_b[top] = m
            st_wa[top] = wa
            st_wb[top] = wm
            st_node[top] = np.uint64(2) * node
            st_lvl[top] = lvl + 1
            st_lo[top] = i0
            st_hi[top] = k1
            top += 1


@jit(parallel=True)
def _tree_eval(s, key, depth, sqrt_c, stds, n_elem, out):
    """out[i, e] = W_e(s_i) for sorted s; parallel over the elements."""
    for e in prange(n_elem):
        _tree_element(s, key, np.uint64(e), depth, sqrt_c, stds, out, e)


@jit
def _tree_eval_serial(s, key, depth, sqrt_c, stds, n_elem, out):
    """As ``_tree_eval``, without the thread launch (which costs more than small queries)."""
    for e in range(n_elem):
        _tree_element(s, key, np.uint64(e), depth, sqrt_c, stds, out, e)


#: Below this many normal draws (elements x (times + depth)) a query runs serially.
_PARALLEL_MIN_WORK = 2**16


class BrownianPath:
    r"""Brownian motion on ``[t0, t1]`` as a virtual Brownian tree.

    ``W(t)`` is a deterministic function of ``(seed, t)``: the root draws ``W(t1) ~ N(0, t1 - t0)``
    and each dyadic midpoint ``m`` of ``[a, b]`` draws ``W(m) = (W(a) + W(b))/2 + sqrt(b - a)/2 * z``
    (the Brownian bridge), with ``z`` a pure function of (seed, node, element) computed by a
    counter-based hash, so values never depend on which other times were queried, or in what order.
    Bisection stops at level ``depth = ceil(log2((t1 - t0)/tol))``; below that, W is the bridge mean
    (linear interpolation between the leaf's ends), so W is continuous and exactly Brownian on the
    dyadic grid of width ``(t1 - t0)/2**depth <= tol``, and an increment over ``dt >> tol`` has the
    Brownian law up to a relative variance error below ``tol/dt``.

    Cost: one query costs ``depth + 1`` normal draws per element; a sorted batch of n times costs one
    tree traversal, about ``n + (nodes visited)`` draws per element (``n + 1`` for a dyadic grid).
    Elements of ``shape`` are independent Brownian motions (Monte Carlo paths, channels) evaluated in
    parallel with numba.

    Parameters
    ----------
    t0, t1 : float
        Interval, ``t0 < t1``; ``W(t0) = 0``.
    shape : tuple of int
        Shape of W: e.g. ``(M, d)`` for M Monte Carlo paths of a d-dimensional Brownian motion.
    seed : int or numpy.random.Generator, optional
        The tree's key. ``None`` draws one from OS entropy (see ``.seed``).
    tol : float, optional
        Resolution; default ``(t1 - t0) * 2**-20``. At least ``(t1 - t0) * 2**-60``.
    dtype : numpy float dtype
        Dtype of returned values (computed in float64).

    Examples
    --------
    >>> path = BrownianPath(0.0, 1.0, shape=(3,), seed=0)
    >>> w = path([0.25, 0.5, 1.0])          # (3 times, 3 elements)
    >>> bool(np.all(path(0.0) == 0.0)), w.shape
    (True, (3, 3))
    >>> bool(np.allclose(path(0.25, 1.0), w[2] - w[0]))
    True
    """

    def __init__(self, t0: float, t1: float, shape: tuple[int, ...] | int = (), seed: Any = None,
                 tol: float | None = None, dtype: Any = np.float64):
        t0 = _float_arg(t0, "t0")
        t1 = _float_arg(t1, "t1")
        if not t0 < t1:
            raise ValueError(f"`t1` must be after `t0`; got t0 = {t0!r}, t1 = {t1!r}.")
        if isinstance(shape, (int, np.integer)):
            shape = (int(shape),)
        try:
            shape = tuple(operator.index(s) for s in shape)
        except TypeError:
            raise TypeError(f"`shape` must be a tuple of ints; got {shape!r}.") from None
        if any(s < 0 for s in shape):
            raise ValueError(f"`shape` must have non-negative sizes; got {shape!r}.")
        c = t1 - t0
        if tol is None:
            tol = c * DEFAULT_RELATIVE_TOL
        tol = _float_arg(tol, "tol")
        if not tol > 0:
            raise ValueError(f"`tol` must be positive; got {tol!r}.")
        depth = max(0, math.ceil(math.log2(c / tol) - 1e-12)) if tol < c else 0
        if depth > MAX_DEPTH:
            raise ValueError(f"`tol` = {tol!r} is below (t1 - t0) * 2**-{MAX_DEPTH} = "
                             f"{c * 2.0**-MAX_DEPTH!r}, the finest resolution of the tree.")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"`dtype` must be float32 or float64; got {dtype}.")
        if seed is None:
            seed = int(np.random.SeedSequence().entropy) % 2**64
        elif isinstance(seed, np.random.Generator):
            seed = int(seed.integers(0, 2**63))
        else:
            try:
                seed = operator.index(seed)
            except TypeError:
                raise TypeError(f"`seed` must be an int, a numpy Generator or None; got "
                                f"{type(seed).__name__}.") from None
        self.t0, self.t1, self.shape, self.seed, self.tol = t0, t1, shape, seed, tol
        self.depth = depth
        self.dtype = dtype
        self._key = seed_key(seed)
        self._sqrt_c = math.sqrt(c)
        self._stds = np.array([0.5 * math.sqrt(c * 2.0**-lvl) for lvl in range(max(depth, 1))])
        self._n_elem = int(np.prod(shape, dtype=np.int64))

    @property
    def resolution(self) -> float:
        """Width of the finest dyadic cell, ``(t1 - t0) / 2**depth`` (at most ``tol``)."""
        return (self.t1 - self.t0) * 2.0**-self.depth

    def __repr__(self) -> str:
        return (f"BrownianPath(t0={self.t0!r}, t1={self.t1!r}, shape={self.shape!r}, "
                f"seed={self.seed!r}, tol={self.tol!r})")

    def __call__(self, ta: Any, tb: Any = None):
        """``W(ta)``, or the increment ``W(tb) - W(ta)`` if ``tb`` is given.

        Times may be a float or an array; the result has shape ``t.shape + self.shape``, in the
        namespace and device of ``t`` if ``t`` is an array of another library (torch).
        """
        like = ta if tb is None else tb
        if tb is None:
            out = self._evaluate(to_numpy(ta))
        else:
            a, b = np.broadcast_arrays(to_numpy(ta), to_numpy(tb))
            both = self._evaluate(np.stack([a, b]))
            out = both[1] - both[0]
        if is_numpy(like) or isinstance(like, (list, tuple)):
            return out
        return convert_like(out, like)

    evaluate = __call__

    def _evaluate(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        if t.size and not (np.all(t >= self.t0) and np.all(t <= self.t1)):
            bad = t[(t < self.t0) | (t > self.t1) | np.isnan(t)].ravel()[0]
            raise ValueError(f"`t` must lie in [t0, t1] = [{self.t0!r}, {self.t1!r}]; got {bad!r}.")
        flat = t.ravel()
        s = (flat - self.t0) / (self.t1 - self.t0)
        order = np.argsort(s, kind="stable")
        s_sorted = np.ascontiguousarray(s[order])
        vals = np.empty((s_sorted.size, self._n_elem))
        if s_sorted.size and self._n_elem:
            work = self._n_elem * (s_sorted.size + self.depth)
            kernel = _tree_eval if work >= _PARALLEL_MIN_WORK else _tree_eval_serial
            args = (s_sorted, self._key, self.depth, self._sqrt_c, self._stds, self._n_elem, vals)
            if DISABLED:
                with np.errstate(over="ignore"):  # uint64 wrap-around is intended
                    kernel(*args)
            else:
                kernel(*args)
        out = np.empty_like(vals)
        out[order] = vals
        return out.reshape(t.shape + self.shape).astype(self.dtype, copy=False)


def _float_arg(x: Any, name: str) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a real number; got {x!r}.") from None
    if not math.isfinite(v):
        raise ValueError(f"`{name}` must be finite; got {v!r}.")
    return v
