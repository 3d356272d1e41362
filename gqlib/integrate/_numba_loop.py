"""The compiled solve loop: ``solve`` driving ``Stepper``, for a first-class jitted ``f``.

Semantics are those of :class:`gqlib.Stepper` driven by ``solve``, operation for operation, so the
two drivers take the same steps bit for bit: the same tableau arrays and the same decision kernels
(:mod:`gqlib.integrate._policy`: targets and tstops, initial step, step proposal, accept/reject
and the next step with its ``min_step``/``max_step`` clamp), the landing rules, tstops with
one-ulp one-sided evaluations, FSAL reuse, the dense output (the method's ``P`` or cubic Hermite
with ``f(t1, y1)`` reused as the next first stage), NFE counted alike. dop853's
``(e5^2 + 0.01 e3^2) ** half`` takes ``half = 0.5`` as an argument so that it uses C ``pow`` as
NumPy scalars do (LLVM would turn a literal ``** 0.5`` into ``sqrt``, which rounds differently
about once in 1500). Interpolated outputs (``Q @ theta``) may differ from the array-API driver's
BLAS product in the last bit.

numba caches this kernel by this file only: after editing ``_policy.py`` or ``_numba_vector.py``,
delete ``gqlib/integrate/__pycache__/*.nb*`` (or touch this file).
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import jit, typed_list
from ._numba_vector import (
    call,
    dense_coefficients,
    fail_at,
    interpolate,
    norm,
    npmaximum,
    pairwise_sum,
    record_step,
)
from ._policy import (
    ERR_PREV_INIT,
    STATUS_OK,
    STATUS_TOO_MANY_STEPS,
    clamp_step,
    constant_decide,
    constant_propose,
    first_step_status,
    initial_step,
    initial_step_guess,
    next_target,
    pi_decide,
    pi_propose,
)

List = typed_list()  # the kernel's growable dense-output store (a global of the kernel)

__all__ = ["solve_kernel"]


@jit
def solve_kernel(f, t_out, y_init, f_init, A, B, C, E, E_low, P, P_rows, stages, fsal, has_E_low,
                 has_P, error_order, rtol, atol, safety, min_factor, max_factor, min_accept_factor,
                 beta1, beta2, min_step, max_step, half, adaptive, step_size, first_step, max_steps, tstops,
                 norm_kind, land_on_outputs, dense, checks, fail):
    """Solve from ``t_out[0]`` to ``t_out[-1]`` as ``solve`` drives ``Stepper``.

    Arguments: ``f`` (first-class ``float64[::1](float64, float64[::1])``); output times
    ``t_out``; flat ``y_init`` and ``f_init = f(t_out[0], y_init)`` (evaluated by the caller and
    counted: nfe starts at 1, as in ``solve``); the tableau's float64 ``A, B, C, E, E_low, P``
    (zeros where the method has none), ``P_rows`` (rows of ``P`` with a nonzero, the rows the
    stepper sums), ``stages``, ``fsal``, ``has_E_low``, ``has_P``, ``error_order``; ``rtol``,
    ``atol`` broadcast to the flat state; the started ``PIController``'s settings and
    ``min_step``, ``max_step``; ``half = 0.5`` (see the module docstring); ``adaptive`` (else
    :class:`ConstantStep`), ``step_size`` (fixed mode), ``first_step`` (0: Hairer's rule),
    ``max_steps``; sorted ``tstops`` strictly inside the span; ``norm_kind`` (0 RMS,
    1 max); ``land_on_outputs`` (step onto every output time rather than interpolate); ``dense``;
    ``checks`` (:func:`gqlib._checks.enabled`: each stage's output length, a non-finite
    state; off only to measure their cost); ``fail`` (length n + 1): where ``f`` failed, ``[t, *y]``, before the ValueError
    :data:`~gqlib.integrate._numba_vector.F_FAILED` is raised.

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
    err_prev = ERR_PREV_INIT
    after_reject = False
    n_bad = 0
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
            d0 = norm(acc, norm_kind, work)
            for k in range(n):
                acc[k] = fcur[k] / scale[k]
            d1 = norm(acc, norm_kind, work)
            span = abs(t_end - t)
            h0 = initial_step_guess(d0, d1, span, abs(tstops[0] - t) if n_stops > 0 else np.inf)
            dh = d * h0
            for k in range(n):
                ytmp[k] = y[k] + dh * fcur[k]
            call(f, t + dh, ytmp, f1, fail)
            stats[0] += 1
            for k in range(n):
                acc[k] = (f1[k] - fcur[k]) / scale[k]
            df = norm(acc, norm_kind, work)
            h_ctrl = initial_step(h0, d1, df, span, error_order)
        h_ctrl = clamp_step(h_ctrl, min_step, max_step)
        status = first_step_status(h_ctrl)
        if status != STATUS_OK:
            return (ys, stats, status, t, h_ctrl, store[0], n_seg)
    else:
        h_ctrl = step_size

    # -- the loop of solve's _drive ---------------------------------------------------------------
    i_out = 1
    while i_out < n_out:
        target, is_stop, next_stop = next_target(t, t_out[i_out] if land_on_outputs else t_end,
                                                 t_end, d, tstops, next_stop)
        t0 = t
        for k in range(n):
            y_prev[k] = y[k]
        if not have_f:
            te = t
            if next_stop > 0 and tstops[next_stop - 1] == t:
                te = np.nextafter(t, d * np.inf)  # one-sided, after a tstop
            call(f, te, y, fcur, fail)
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
            if adaptive:
                h, landing = pi_propose(h_ctrl, t0, target, d)
            else:
                h, landing = constant_propose(step_size, t0, target)
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
                if checks and r.shape[0] != n:
                    fail_at(ti, ytmp, fail)
                for k in range(n):
                    K[i, k] = r[k]
                stats[0] += 1
            if not adaptive:
                finite = True
                if checks:
                    for k in range(n):
                        if not math.isfinite(y1[k]):
                            finite = False
                accept, status = constant_decide(finite, h)
                if status != STATUS_OK:
                    return (ys, stats, status, t0, h, store[0], n_seg)
                break
            # error norm (Stepper._error_norm): e5 from E, e3 from E_low (dop853)
            for k in range(n):
                scale[k] = atol[k] + rtol[k] * npmaximum(abs(y_prev[k]), abs(y1[k]))
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
                    ss = pairwise_sum(work, 0, n)  # its leaf sums n < 8 from -0.0, as NumPy
                    e = math.sqrt(ss / n)
                if q == 0:
                    e5 = e
                else:
                    e3 = e
            if has_E_low:
                e5 = e5 * e5 / ((e5 * e5 + 0.01 * e3 * e3) ** half + 1e-300)
            err = e5
            if checks:
                # a non-finite y1 with finite stages would give scale = inf and err = 0: poison it
                sy = pairwise_sum(y1, 0, n)
                err = e5 + 0.0 * sy
            accept, status, hnew, err_prev, after_reject, n_bad = pi_decide(
                err, h, h_ctrl, landing, t0, err_prev, after_reject, n_bad, safety, min_factor,
                max_factor, min_accept_factor, beta1, beta2, min_step, max_step, error_order,
                target)
            if not accept:
                stats[3] += 1
            h_ctrl = d * hnew
            if status != STATUS_OK:
                return (ys, stats, status, t0, hnew, store[0], n_seg)
            if accept:
                break

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
            stats[0] += dense_coefficients(f, t0, t1, y_prev, y, K, stages, fsal, has_P, P, P_rows,
                                           W, C, d, tstops, acc, ytmp, f1, Q, fail)
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
            record_step(store, n_seg, t0, t1, y_prev, Q)
            n_seg += 1
        while i_out < n_out and d * (t_out[i_out] - t1) < 0:
            interpolate(t0, t1, y_prev, Q, t_out[i_out], pw, ys[i_out])
            i_out += 1
        if i_out < n_out and t_out[i_out] == t1:
            for k in range(n):
                ys[i_out, k] = y[k]
            i_out += 1
    return ys, stats, status, t_fail, h_fail, store[0], n_seg
