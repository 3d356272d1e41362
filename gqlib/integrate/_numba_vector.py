"""Vector helpers of the compiled driver, rounding as the array-API stepper does on NumPy.

Compiled into :mod:`gqlib.integrate._numba_loop`. Two NumPy details are reproduced on purpose:
the RMS norm sums with NumPy's pairwise summation (:func:`pairwise_sum`), and ``np.maximum``
propagates NaN (:func:`npmaximum`).

numba caches the loop by its own file: after editing this file, delete
``gqlib/integrate/__pycache__/*.nb*`` (or touch ``_numba_loop.py``).
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import jit

__all__ = ["npmaximum", "pairwise_sum", "norm", "call", "fail_at", "F_FAILED",
           "dense_coefficients", "record_step", "interpolate"]

_PW_BLOCKSIZE = 128  # NumPy's pairwise-summation block (numpy/_core/src/umath/loops_utils.h.src)


@jit(inline="always")
def npmaximum(a, b):
    """``np.maximum(a, b)`` (NaN propagates)."""
    if a != a or b != b:
        return a + b
    return b if b > a else a


@jit
def _pairwise_block(a, lo, n):
    """NumPy's pairwise-summation leaf (``n <= 128``): 8 accumulators, then the tail."""
    if n < 8:
        res = -0.0
        for i in range(lo, lo + n):
            res += a[i]
        return res
    r0 = a[lo]
    r1 = a[lo + 1]
    r2 = a[lo + 2]
    r3 = a[lo + 3]
    r4 = a[lo + 4]
    r5 = a[lo + 5]
    r6 = a[lo + 6]
    r7 = a[lo + 7]
    m = n - n % 8
    i = 8
    while i < m:
        j = lo + i
        r0 += a[j]
        r1 += a[j + 1]
        r2 += a[j + 2]
        r3 += a[j + 3]
        r4 += a[j + 4]
        r5 += a[j + 5]
        r6 += a[j + 6]
        r7 += a[j + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@jit
def pairwise_sum(a, lo, n):
    """``np.add.reduce(a[lo:lo + n])`` bit for bit: NumPy's pairwise summation.

    NumPy recurses, halving (rounded down to a multiple of 8) down to blocks of 128; the same tree
    is walked here with an explicit stack (numba's cache cannot reload self-recursive functions).
    """
    if n <= _PW_BLOCKSIZE:
        return _pairwise_block(a, lo, n)
    los = np.empty(64, dtype=np.int64)
    ns = np.empty(64, dtype=np.int64)
    state = np.empty(64, dtype=np.int64)
    vals = np.empty(64)
    sp = 1
    vp = 0
    los[0] = lo
    ns[0] = n
    state[0] = 0
    while sp > 0:
        top = sp - 1
        m = ns[top]
        if m <= _PW_BLOCKSIZE:
            vals[vp] = _pairwise_block(a, los[top], m)
            vp += 1
            sp -= 1
            continue
        m2 = m // 2
        m2 -= m2 % 8
        if state[top] == 0:  # left half
            state[top] = 1
            los[sp] = los[top]
            ns[sp] = m2
            state[sp] = 0
            sp += 1
        elif state[top] == 1:  # right half
            state[top] = 2
            los[sp] = los[top] + m2
            ns[sp] = m - m2
            state[sp] = 0
            sp += 1
        else:  # both done
            vals[vp - 2] = vals[vp - 2] + vals[vp - 1]
            vp -= 1
            sp -= 1
    return vals[0]


@jit(inline="always")
def norm(x, kind, work):
    """RMS (``kind`` 0, as ``sqrt(mean(x * x))`` in NumPy) or max (1) norm; ``work`` is scratch."""
    n = x.shape[0]
    if kind == 1:
        m = abs(x[0])
        for i in range(1, n):
            v = abs(x[i])
            if v != v:
                return v
            if v > m:
                m = v
        return m
    for i in range(n):
        work[i] = x[i] * x[i]
    return math.sqrt(pairwise_sum(work, 0, n) / n)


@jit(inline="always")
def _combine(K, W, row, nw, out):
    """``out = sum_j W[row, j] K[j]`` over the nonzero weights ``j < nw``, in order (the
    stepper's ``_combine``). Returns False (``out`` untouched) when every weight is zero.

    Rows are indexed rather than sliced: a view costs two atomic reference-count updates, which
    showed up in the profile of small systems.
    """
    n = out.shape[0]
    first = True
    for j in range(nw):
        wj = W[row, j]
        if wj == 0.0:
            continue
        if first:
            for k in range(n):
                out[k] = wj * K[j, k]
            first = False
        else:
            for k in range(n):
                out[k] = out[k] + wj * K[j, k]
    return not first


@jit(inline="always")
def _stage_state(y0, h, K, W, row, nw, acc, out):
    """``out = y0 + h * combine(K, W[row])`` (``y0`` itself when the row is empty)."""
    n = y0.shape[0]
    if _combine(K, W, row, nw, acc):
        for k in range(n):
            out[k] = y0[k] + h * acc[k]
    else:
        for k in range(n):
            out[k] = y0[k]


F_FAILED = "`f(t, y)` failed or returned an array of another size than y0"


@jit(inline="always")
def fail_at(t, y, fail):
    """Record where ``f`` failed (``fail = [t, *y]``) and raise.

    An exception raised inside a first-class function is printed and swallowed by numba, which
    returns an empty array instead; the driver calls ``f`` again from Python at the recorded
    point, where its own exception reaches the user.
    """
    fail[0] = t
    for k in range(y.shape[0]):
        fail[k + 1] = y[k]
    raise ValueError(F_FAILED)


@jit(inline="always")
def call(f, t, y, out, fail):
    """``out[:] = f(t, y)`` (copied: ``f`` may return ``y`` itself or a view of it)."""
    r = f(t, y)
    if r.shape[0] != out.shape[0]:
        fail_at(t, y, fail)
    for k in range(out.shape[0]):
        out[k] = r[k]


@jit(inline="always")
def _call_row(f, t, y, K, row, fail):
    """``K[row] = f(t, y)``."""
    r = f(t, y)
    if r.shape[0] != K.shape[1]:
        fail_at(t, y, fail)
    for k in range(K.shape[1]):
        K[row, k] = r[k]


@jit
def dense_coefficients(f, t0, t1, y0, y1, K, stages, fsal, has_P, P, P_rows, W, C, d, tstops,
                       acc, ytmp, f1, Q, fail):
    """Fill ``Q`` (n x degree) for the accepted step; returns the evaluations spent.

    As ``Segment._dense_coefficients``: the method's ``P`` (extra stages evaluated here, at
    ``t0 + c h`` with ``h = t1 - t0``), else cubic Hermite whose ``f(t1, y1)`` lands in ``f1``.
    """
    n = y0.shape[0]
    h = t1 - t0
    nfe = 0
    if has_P:
        s_total = W.shape[1]
        for i in range(stages, s_total):
            _stage_state(y0, h, K, W, i, i, acc, ytmp)
            _call_row(f, t0 + C[i] * h, ytmp, K, i, fail)
            nfe += 1
        degree = P.shape[1]
        first = True
        for i in range(P.shape[0]):
            if not P_rows[i]:
                continue
            for k in range(n):
                for p in range(degree):
                    if first:
                        Q[k, p] = K[i, k] * P[i, p]
                    else:
                        Q[k, p] = Q[k, p] + K[i, k] * P[i, p]
            first = False
        return nfe
    if fsal:
        for k in range(n):
            f1[k] = K[stages - 1, k]
    else:
        inside_stop = False
        for s in tstops:
            if s == t1:
                inside_stop = True
        te = np.nextafter(t1, -d * np.inf) if inside_stop else t1
        call(f, te, y1, f1, fail)
        nfe += 1
    for k in range(n):
        f0k = K[0, k]
        delta = (y1[k] - y0[k]) / h
        Q[k, 0] = f0k
        Q[k, 1] = 3.0 * delta - 2.0 * f0k - f1[k]
        Q[k, 2] = f0k + f1[k] - 2.0 * delta
    return nfe


@jit
def record_step(store, n_seg, t0, t1, y0, Q):
    """Append the record ``[t0, t1, y0, Q.ravel()]`` to ``store[0]``, doubling it when full."""
    n, degree = Q.shape
    rec = 2 + n + n * degree
    buf = store[0]
    o = n_seg * rec
    if o + rec > buf.shape[0]:
        new = np.empty(max(2 * buf.shape[0], o + rec))
        new[:o] = buf[:o]
        store[0] = new
        buf = new
    buf[o] = t0
    buf[o + 1] = t1
    for k in range(n):
        buf[o + 2 + k] = y0[k]
        for p in range(degree):
            buf[o + 2 + n + k * degree + p] = Q[k, p]


@jit
def interpolate(t0, t1, y0, Q, tq, pw, out):
    """``y0 + h * Q @ [theta, theta^2, ...]`` at ``tq`` (``Segment.__call__``)."""
    h = t1 - t0
    theta = (tq - t0) / h
    degree = Q.shape[1]
    p = theta
    for j in range(degree):
        pw[j] = p
        p = p * theta
    for k in range(y0.shape[0]):
        s = 0.0
        for j in range(degree):
            s += Q[k, j] * pw[j]
        out[k] = y0[k] + h * s
