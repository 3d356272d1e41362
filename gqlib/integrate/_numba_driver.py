"""The numba driver: the whole solve loop compiled, for a numba-jitted ``f`` and a NumPy state.

Selected by :func:`gqlib.solve` when ``f`` is a numba dispatcher (``numba.njit``), ``y0`` is a
float64 NumPy array with at least one dimension and ``norm`` is ``"rms"`` or ``"max"``; anything
else (a callable norm, float32, torch tensors, ``GQLIB_DISABLE_JIT=1``) runs the array-API driver.

Semantics are those of :class:`gqlib.Stepper` driven by ``solve``, operation for operation, so the
two drivers take the same steps bit for bit: the same tableau arrays, the same ``pi_factor`` kernel,
Hairer's initial step, the landing rules, tstops with one-ulp one-sided evaluations, FSAL reuse, the
dense output (the method's ``P`` or cubic Hermite with ``f(t1, y1)`` reused as the next first stage),
NFE counted alike. Two NumPy details are reproduced on purpose: the RMS norm sums with NumPy's
pairwise summation, and dop853's ``(e5^2 + 0.01 e3^2) ** 0.5`` uses C ``pow`` as NumPy scalars do
(LLVM would turn a literal ``** 0.5`` into ``sqrt``, which rounds differently about once in 1500).
Interpolated outputs (``Q @ theta``) may differ from the array-API driver's BLAS product in the
last bit.

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

numba's cache is invalidated by changes to this file only: after editing ``pi_factor`` in
``_controller.py``, delete ``gqlib/integrate/__pycache__/_numba_driver*.nb*`` (or touch this file).
"""

from __future__ import annotations

import math
import numbers
import threading

import numpy as np

from .._jit import DISABLED, is_jitted, jit, numba_types, typed_list, wap_api
from ..errors import NonFiniteState, StepSizeTooSmall, TooManySteps
from ..interpolate import DenseOutput, Solution
from ._controller import PIController, pi_factor
from ._validation import check_derivative

List = typed_list()  # the kernel's growable dense-output store (a global of the kernel)

__all__ = ["use_numba", "numba_solve", "STATUS_OK", "STATUS_STEP_TOO_SMALL", "STATUS_NON_FINITE",
           "STATUS_TOO_MANY_STEPS"]

STATUS_OK = 0
STATUS_STEP_TOO_SMALL = 1
STATUS_NON_FINITE = 2
STATUS_TOO_MANY_STEPS = 3

_NORM_KIND = {"rms": 0, "max": 1}
_PW_BLOCKSIZE = 128  # NumPy's pairwise-summation block (numpy/_core/src/umath/loops_utils.h.src)


# ---------------------------------------------------------------------------------------------
# scalar and vector helpers (compiled into the kernel)
# ---------------------------------------------------------------------------------------------
@jit(inline="always")
def _pymin(a, b):
    """Python's ``min(a, b)`` (keeps ``a`` unless ``b < a``; matters only for NaN)."""
    return b if b < a else a


@jit(inline="always")
def _pymax(a, b):
    """Python's ``max(a, b)``."""
    return b if b > a else a


@jit(inline="always")
def _npmaximum(a, b):
    """``np.maximum(a, b)`` (NaN propagates)."""
    if a != a or b != b:
        return a + b
    return b if b > a else a


@jit(inline="always")
def _ulp(t):
    if t == 0.0:
        return 5e-324
    return abs(np.nextafter(t, np.inf) - t)


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
def _pairwise_sum(a, lo, n):
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
def _norm(x, kind, work):
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
    return math.sqrt(_pairwise_sum(work, 0, n) / n)


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


@jit(inline="always")
def _call(f, t, y, out):
    """``out[:] = f(t, y)`` (copied: ``f`` may return ``y`` itself or a view of it)."""
    r = f(t, y)
    if r.shape[0] != out.shape[0]:
        raise ValueError("`f(t, y)` returned an array of another size than y0")
    for k in range(out.shape[0]):
        out[k] = r[k]


@jit(inline="always")
def _call_row(f, t, y, K, row):
    """``K[row] = f(t, y)``."""
    r = f(t, y)
    if r.shape[0] != K.shape[1]:
        raise ValueError("`f(t, y)` returned an array of another size than y0")
    for k in range(K.shape[1]):
        K[row, k] = r[k]


@jit
def _dense_coefficients(f, t0, t1, y0, y1, K, stages, fsal, has_P, P, P_rows, W, C, d, tstops,
                        acc, ytmp, f1, Q):
    """Fill ``Q`` (n x degree) for the accepted step; returns the evaluations spent.

    As ``Stepper._dense_coefficients``: the method's ``P`` (extra stages evaluated here, at
    ``t0 + c h`` with ``h = t1 - t0``), else cubic Hermite whose ``f(t1, y1)`` lands in ``f1``.
    """
    n = y0.shape[0]
    h = t1 - t0
    nfe = 0
    if has_P:
        s_total = W.shape[1]
        for i in range(stages, s_total):
            _stage_state(y0, h, K, W, i, i, acc, ytmp)
            _call_row(f, t0 + C[i] * h, ytmp, K, i)
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
        _call(f, te, y1, f1)
        nfe += 1
    for k in range(n):
        f0k = K[0, k]
        delta = (y1[k] - y0[k]) / h
        Q[k, 0] = f0k
        Q[k, 1] = 3.0 * delta - 2.0 * f0k - f1[k]
        Q[k, 2] = f0k + f1[k] - 2.0 * delta
    return nfe


@jit
def _record_step(store, n_seg, t0, t1, y0, Q):
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
def _interpolate(t0, t1, y0, Q, tq, pw, out):
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


# ---------------------------------------------------------------------------------------------
# the kernel
# ---------------------------------------------------------------------------------------------
@jit
def _solve_kernel(f, t_out, y_init, f_init, A, B, C, E, E_low, P, P_rows, stages, fsal, has_E_low,
                  has_P, error_order, rtol, atol, safety, min_factor, max_factor, beta1, beta2,
                  half, adaptive, step_size, first_step, max_steps, tstops, norm_kind,
                  land_on_outputs, dense):
    """Solve from ``t_out[0]`` to ``t_out[-1]`` as ``solve`` drives ``Stepper``.

    Arguments: ``f`` (first-class ``float64[::1](float64, float64[::1])``); output times
    ``t_out``; flat ``y_init`` and ``f_init = f(t_out[0], y_init)`` (evaluated by the caller and
    counted: nfe starts at 1, as in ``solve``); the tableau's float64 ``A, B, C, E, E_low, P``
    (zeros where the method has none), ``P_rows`` (rows of ``P`` with a nonzero, the rows the
    stepper sums), ``stages``, ``fsal``, ``has_E_low``, ``has_P``, ``error_order``; ``rtol``,
    ``atol`` broadcast to the flat state; the ``PIController`` constants; ``half = 0.5`` (see
    the module docstring); ``adaptive``, ``step_size`` (fixed mode), ``first_step`` (0: Hairer's
    rule), ``max_steps``; sorted ``tstops`` strictly inside the span; ``norm_kind`` (0 RMS,
    1 max); ``land_on_outputs`` (step onto every output time rather than interpolate); ``dense``.

    Returns ``(ys, stats, status, t_fail, h_fail, dense_records, n_seg)``: ``ys`` (n_out, n);
    ``stats = [nfe, n_steps, n_accepted, n_rejected]``; ``status`` one of the ``STATUS_*``
    codes with the time and step size of a failure; ``n_seg`` records
    ``[t0, t1, y0, Q.ravel()]`` of the accepted steps when ``dense``.
    """
    n = y_init.shape[0]
    n_out = t_out.shape[0]
    t_end = t_out[n_out - 1]
    d = 1.0 if t_end >= t_out[0] else -1.0
    s_total = A.shape[0]
    n_stops = tstops.shape[0]
    degree = P.shape[1] if has_P else 3

    K = np.empty((s_total, n))
    # every weight row in one matrix: the stage rows of A, then B, E, E_low
    W = np.zeros((s_total + 3, s_total))
    W[:s_total] = A
    row_B = s_total
    W[row_B, :stages] = B
    W[row_B + 1, :stages] = E
    W[row_B + 2, :stages] = E_low
    ys = np.empty((n_out, n))
    stats = np.zeros(4, dtype=np.int64)
    stats[0] = 1
    y = y_init.copy()
    y_prev = np.empty(n)
    y1 = np.empty(n)
    fcur = f_init.copy()
    f1 = np.empty(n)
    acc = np.empty(n)
    ytmp = np.empty(n)
    work = np.empty(n)
    scale = np.empty(n)
    Q = np.empty((n, degree))
    pw = np.empty(degree)
    for k in range(n):
        ys[0, k] = y[k]

    # dense output: one record [t0, t1, y0, Q.ravel()] per step in a buffer grown by doubling,
    # held in a list so that the kernel never rebinds an array variable in its loop (numba
    # would then update reference counts on every pass)
    store = List()
    store.append(np.empty(16 * (2 + n + n * degree) if dense else 0))
    n_seg = 0

    t = t_out[0]
    have_f = True
    next_stop = 0
    err_prev = 1e-4  # Hairer's initial `facold`
    after_reject = False
    status = STATUS_OK
    t_fail = np.nan
    h_fail = np.nan

    # -- initial step (Stepper._initial_step) --------------------------------------------------
    if adaptive:
        if first_step > 0.0:
            h_ctrl = first_step
        else:
            for k in range(n):
                scale[k] = atol[k] + abs(y[k]) * rtol[k]
            for k in range(n):
                acc[k] = y[k] / scale[k]
            d0 = _norm(acc, norm_kind, work)
            for k in range(n):
                acc[k] = fcur[k] / scale[k]
            d1 = _norm(acc, norm_kind, work)
            span = abs(t_end - t)
            if d0 < 1e-5 or d1 < 1e-5:
                h0 = 1e-6
            else:
                h0 = 0.01 * d0 / d1
            h0 = _pymin(h0, span)
            if n_stops > 0:
                h0 = _pymin(h0, abs(tstops[0] - t))
            dh = d * h0
            for k in range(n):
                ytmp[k] = y[k] + dh * fcur[k]
            _call(f, t + dh, ytmp, f1)
            stats[0] += 1
            for k in range(n):
                acc[k] = (f1[k] - fcur[k]) / scale[k]
            d2 = _norm(acc, norm_kind, work) / h0
            if d1 <= 1e-15 and d2 <= 1e-15:
                h1 = _pymax(1e-6, h0 * 1e-3)
            else:
                h1 = (0.01 / _pymax(d1, d2)) ** (1.0 / (error_order + 1))
            h_ctrl = _pymin(_pymin(100 * h0, h1), span)
    else:
        h_ctrl = step_size

    # -- the loop of solve's _drive ---------------------------------------------------------------
    i_out = 1
    while i_out < n_out:
        target = t_out[i_out] if land_on_outputs else t_end
        if d * (target - t_end) > 0:
            target = t_end
        is_stop = False
        while next_stop < n_stops and d * (tstops[next_stop] - t) <= 0:
            next_stop += 1
        if next_stop < n_stops:
            s = tstops[next_stop]
            if d * (s - target) <= 0:
                target = s
                is_stop = True
        t0 = t
        for k in range(n):
            y_prev[k] = y[k]
        if not have_f:
            te = t
            if next_stop > 0 and tstops[next_stop - 1] == t:
                te = np.nextafter(t, d * np.inf)  # one-sided, after a tstop
            _call(f, te, y, fcur)
            stats[0] += 1
            have_f = True
        for k in range(n):
            K[0, k] = fcur[k]

        landing = False
        h = 0.0
        t1 = t0
        while True:
            stats[1] += 1
            if stats[1] > max_steps:
                return (ys, stats, STATUS_TOO_MANY_STEPS, t0, h_ctrl, store[0], n_seg)
            remaining = target - t0
            if adaptive:
                habs = abs(h_ctrl)
                landing = habs >= abs(remaining) * (1.0 - 1e-12)
                h = remaining if landing else d * habs
            else:
                nsub = max(1, math.ceil(abs(remaining) / step_size - 1e-9))
                landing = nsub == 1
                h = remaining if landing else remaining / nsub
            t1 = target if landing else t0 + h
            end_is_stop = landing and is_stop
            # The stages, then y1 (row `stages` stands for B). Written out in the kernel rather
            # than through helpers: every array handed to a helper costs numba two atomic
            # reference-count updates, as much as the arithmetic of a small system.
            for i in range(1, stages + 1):
                row = i if i < stages else row_B
                nw = i if i < stages else stages
                # acc = sum_j W[row, j] k_j over the nonzero weights, in order (Stepper._combine)
                first = True
                for j in range(nw):
                    w = W[row, j]
                    if w == 0.0:
                        continue
                    if first:
                        for k in range(n):
                            acc[k] = w * K[j, k]
                        first = False
                    else:
                        for k in range(n):
                            acc[k] = acc[k] + w * K[j, k]
                if i == stages:
                    for k in range(n):
                        y1[k] = y_prev[k] + h * acc[k]
                    break
                if first:
                    for k in range(n):
                        ytmp[k] = y_prev[k]
                else:
                    for k in range(n):
                        ytmp[k] = y_prev[k] + h * acc[k]
                c = C[i]
                ti = t1 if c == 1.0 else t0 + c * h
                if end_is_stop and c == 1.0:
                    ti = np.nextafter(t1, -d * np.inf)  # one-sided, from inside
                r = f(ti, ytmp)
                if r.shape[0] != n:
                    raise ValueError("`f(t, y)` returned an array of another size than y0")
                for k in range(n):
                    K[i, k] = r[k]
                stats[0] += 1
            if not adaptive:
                finite = True
                for k in range(n):
                    if not math.isfinite(y1[k]):
                        finite = False
                if not finite:
                    return (ys, stats, STATUS_NON_FINITE, t0, h, store[0], n_seg)
                break
            # error norm (Stepper._error_norm): e5 from E, e3 from E_low (dop853)
            for k in range(n):
                scale[k] = atol[k] + rtol[k] * _npmaximum(abs(y_prev[k]), abs(y1[k]))
            e5 = 0.0
            e3 = 0.0
            for q in range(2 if has_E_low else 1):
                row = row_B + 1 + q
                first = True
                for j in range(stages):
                    w = W[row, j]
                    if w == 0.0:
                        continue
                    if first:
                        for k in range(n):
                            acc[k] = w * K[j, k]
                        first = False
                    else:
                        for k in range(n):
                            acc[k] = acc[k] + w * K[j, k]
                if norm_kind == 1:  # max |x|, NaN propagating
                    e = 0.0
                    for k in range(n):
                        v = abs((h * acc[k]) / scale[k])
                        if v > e or v != v:
                            e = v
                        if e != e:
                            break
                else:  # sqrt(mean(x * x)), summed as NumPy does
                    for k in range(n):
                        v = (h * acc[k]) / scale[k]
                        work[k] = v * v
                    if n < 8:
                        ss = -0.0
                        for k in range(n):
                            ss += work[k]
                    else:
                        ss = _pairwise_sum(work, 0, n)
                    e = math.sqrt(ss / n)
                if q == 0:
                    e5 = e
                else:
                    e3 = e
            if has_E_low:
                e5 = e5 * e5 / ((e5 * e5 + 0.01 * e3 * e3) ** half + 1e-300)
            # a non-finite y1 with finite stages would give scale = inf and err = 0: poison it
            if n < 8:
                sy = -0.0
                for k in range(n):
                    sy += y1[k]
            else:
                sy = _pairwise_sum(y1, 0, n)
            err = e5 + 0.0 * sy
            accept = err <= 1.0
            factor = pi_factor(err, err_prev, safety, min_factor, max_factor, beta1, beta2,
                               after_reject or not accept)
            if accept:
                err_prev = _pymax(err, 1e-4)
                after_reject = False
                hnew = abs(h) * factor
                if landing and factor >= 1.0:
                    hnew = _pymax(hnew, abs(h_ctrl))
            else:
                stats[3] += 1
                after_reject = True
                hnew = abs(h) * factor
            hnew = _pymax(hnew, 0.0)
            h_ctrl = d * hnew
            if accept:
                break
            if not math.isfinite(err) and hnew < 10 * _ulp(t0):
                return (ys, stats, STATUS_NON_FINITE, t0, hnew, store[0], n_seg)
            if hnew < 10 * _ulp(t0):
                return (ys, stats, STATUS_STEP_TOO_SMALL, t0, hnew, store[0], n_seg)

        # accepted
        stats[2] += 1
        t = t1
        for k in range(n):
            y[k] = y1[k]
        end_is_stop = landing and is_stop
        if fsal and not end_is_stop:
            for k in range(n):
                fcur[k] = K[stages - 1, k]
            have_f = True
        else:
            have_f = False
        if end_is_stop:
            next_stop += 1

        need_Q = dense or (i_out < n_out and d * (t_out[i_out] - t1) < 0)
        if need_Q:
            stats[0] += _dense_coefficients(f, t0, t1, y_prev, y, K, stages, fsal, has_P, P, P_rows,
                                            W, C, d, tstops, acc, ytmp, f1, Q)
            if not has_P and not fsal:
                # Hermite's f(t1, y1) is the next step's first stage unless t1 is a tstop
                inside_stop = False
                for s in tstops:
                    if s == t1:
                        inside_stop = True
                if not inside_stop and not have_f:
                    for k in range(n):
                        fcur[k] = f1[k]
                    have_f = True
        if dense:
            _record_step(store, n_seg, t0, t1, y_prev, Q)
            n_seg += 1
        while i_out < n_out and d * (t_out[i_out] - t1) < 0:
            _interpolate(t0, t1, y_prev, Q, t_out[i_out], pw, ys[i_out])
            i_out += 1
        if i_out < n_out and t_out[i_out] == t1:
            for k in range(n):
                ys[i_out, k] = y[k]
            i_out += 1
    return ys, stats, status, t_fail, h_fail, store[0], n_seg


# ---------------------------------------------------------------------------------------------
# Python side: selection, compilation, argument packing, errors
# ---------------------------------------------------------------------------------------------
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
                   f8, f8, f8, f8, f8, f8,      # safety, min/max factor, beta1, beta2, half
                   bl, f8, f8, i8,              # adaptive, step_size, first_step, max_steps
                   a1, i8, bl, bl)              # tstops, norm_kind, land_on_outputs, dense
    _TYPES = (f8, a1, kernel_args, fn)
    return _TYPES


def _kernel():
    """The kernel, compiled (or loaded from numba's cache) for its one signature on first use."""
    global _compiled
    if not _compiled:
        with _compile_lock:
            if not _compiled:
                _solve_kernel.compile(_types()[2])
                # never specialise on the dispatcher type of an `f` (uncacheable, one per f)
                _solve_kernel.disable_compile()
                _compiled = True
    return _solve_kernel


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
    """The kernel's tableau and controller arguments, packed once per tableau."""
    hit = _tableau_cache.get(id(tab))
    if hit is not None and hit[0] is tab:
        return hit[1]
    stages = tab.stages
    c = np.ascontiguousarray
    E = tab.E if tab.E is not None else np.zeros(stages)
    E_low = tab.E_low if tab.E_low is not None else np.zeros(stages)
    P = tab.P if tab.P is not None else np.zeros((1, 1))
    ctrl = PIController(tab.error_order if tab.error_order is not None else 1)
    args = (c(tab.A, dtype=np.float64), c(tab.B, dtype=np.float64), c(tab.C, dtype=np.float64),
            c(E, dtype=np.float64), c(E_low, dtype=np.float64), c(P, dtype=np.float64),
            c(np.any(P != 0.0, axis=1)),
            int(stages), bool(tab.fsal), tab.E_low is not None, tab.P is not None,
            int(tab.error_order or 0))
    ctrl_args = (float(ctrl.safety), float(ctrl.min_factor), float(ctrl.max_factor),
                 float(ctrl.beta1), float(ctrl.beta2))
    _tableau_cache[id(tab)] = (tab, (args, ctrl_args))
    return args, ctrl_args


def use_numba(f, y0, norm) -> bool:
    """True when the compiled driver applies: jitted ``f``, float64 NumPy ``y0`` (ndim >= 1),
    ``norm`` "rms" or "max", and jitting not disabled."""
    if DISABLED or not is_jitted(f):
        return False
    if not isinstance(norm, str) or norm not in _NORM_KIND:
        return False
    return (type(y0) is np.ndarray and y0.dtype == np.float64 and y0.ndim >= 1
            and y0.size >= 1)


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
    return np.ascontiguousarray(np.broadcast_to(arr, shape)).reshape(-1)


class _StepRecord:
    """One accepted step as :class:`DenseOutput` reads it (``t0``, ``h``, ``y0``, ``Q``)."""

    __slots__ = ("t0", "h", "y0", "Q")

    def __init__(self, t0, h, y0, Q):
        self.t0, self.h, self.y0, self.Q = t0, h, y0, Q


def numba_solve(f, y0, t, t_np, tab, *, rtol, atol, step_size, first_step, max_steps, norm,
                tstops, dense_output, options) -> Solution:
    """The compiled counterpart of ``solve``'s array-API path (arguments already validated by
    ``solve``; ``use_numba`` returned True). Raises the ``gqlib.errors`` exception of a failed
    solve with its time and step size, and ValueError for tolerances that do not broadcast to
    ``y0``'s shape."""
    from ._solve import _lands_on_outputs

    shape = tuple(y0.shape)
    y_init = np.array(y0, dtype=np.float64, order="C").reshape(-1)
    t_first = float(t_np[0])
    f0 = f(t_first, y_init.reshape(shape))
    check_derivative(np, f0, y0, "f")
    f_init = np.array(f0, dtype=np.float64, order="C").reshape(-1)
    fk = _as_kernel_function(f, shape)

    adaptive = step_size is None
    tab_args, ctrl_args = _tableau_args(tab)
    stops = np.array(tstops, dtype=np.float64).reshape(-1)
    t_out = np.ascontiguousarray(t_np, dtype=np.float64)

    (ys, stats, status, t_fail, h_fail, records, n_seg) = _kernel()(
        fk, t_out, y_init, f_init, *tab_args,
        _tolerance_vector(rtol, shape, "rtol"), _tolerance_vector(atol, shape, "atol"),
        *ctrl_args, 0.5, adaptive, 0.0 if adaptive else float(step_size),
        0.0 if first_step is None else float(first_step), int(max_steps),
        stops, _NORM_KIND[norm], _lands_on_outputs(tab, step_size), bool(dense_output))

    if status == STATUS_TOO_MANY_STEPS:
        raise TooManySteps(f"more than max_steps = {max_steps} step attempts", t=t_fail, h=h_fail)
    if status == STATUS_NON_FINITE:
        if adaptive:
            raise NonFiniteState("the stages became NaN or infinite and shrinking the step did "
                                 "not help", t=t_fail, h=h_fail)
        raise NonFiniteState("non-finite state in a fixed step", t=t_fail, h=h_fail)
    if status == STATUS_STEP_TOO_SMALL:
        raise StepSizeTooSmall("step size underflow", t=t_fail, h=h_fail)

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
    return Solution(t, ys.reshape((t_out.size, *shape)), stats_d, tstops=tuple(tstops),
                    dense=dense, options=options)
