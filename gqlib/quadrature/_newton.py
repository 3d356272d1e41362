"""Small-n regime: closed forms, then Newton's method on the three-term recurrence.

For ``n <= CLOSED_FORM_MAX`` the rules are closed forms. For larger n up to ``NEWTON_MAX`` each
node in ``(0, 1)`` starts from Bogaert's asymptotic value (relative error below 1e-6 even at
n = 4), takes float64 Newton steps on ``P_n`` evaluated by the recurrence

    (k + 1) P_{k+1} = (2k + 1) x P_k - k P_{k-1},    P'_{k+1} = P'_{k-1} + (2k + 1) P_k

until the step is below 1e-14. Then double-double Newton steps ``x = y + d``: the recurrence gives
``P_n(y)`` and ``P_{n-1}(y)``, ``P_n'(y) = N / (1 - y^2)`` with ``N = n (P_{n-1} - y P_n)``, and
``d = -P_n(y) / P_n'(y)``, until ``n |d| <= 1e-10 (1 - |y|)`` (usually after the first). The
weight ``2 / g(x)``, ``g = (1 - x^2) P_n'^2``, is formed at the root to first order in d,
``g(y + d) = g(y) (1 + 2 y d / (1 - y^2))`` (``g' = 2x P'^2 - 2n(n+1) P P'`` by Legendre's equation),
i.e. ``w = 2 s^2 / (N^2 (s + 2 y d))`` with ``s = (1 - y)(1 + y)``; the neglected terms are below
``(n^2 d^2 + d^2/s) / s <= 1e-20`` relative. Node and weight are each rounded once.

Double-double is what makes the weights accurate: a node rounded to float64 is off by up to half
an ulp, and the weight is ill-conditioned in x near the ends (relative sensitivity
``2x / (1 - x^2)``, about 900 ulps per ulp at n = 100), so evaluating the weight at the rounded
node would lose three digits. Cost O(n^2), about 0.25 ms at n = 100; the rules are cached.

``newton_refine`` applies the same iteration to given starting points for any n (O(n) per node);
the tests and the benchmark use it as an extended-precision reference on samples of nodes.
"""

from __future__ import annotations

import math

import numpy as np

from gqlib._jit import jit, prange
from gqlib.quadrature._asymptotic import bogaert_node
from gqlib.quadrature._dd import dd_add, dd_add_d, dd_div_d, dd_div_to_d, dd_mul, dd_mul_d

__all__ = ["closed_form", "legendre_f64", "legendre_dd", "newton_node", "fill", "newton_refine"]

_F64_TOL = 1e-14
_DD_TOL = 1e-10  # on n |d| / (1 - |y|): see the module docstring
_DD_FLOOR = 1e-31  # the reach of double-double on [-1, 1]
_MAX_F64_STEPS = 30
_MAX_DD_STEPS = 8


def closed_form(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The rules for n = 1, 2, 3 (nodes ascending); each entry correctly rounded."""
    if n == 1:
        return np.array([0.0]), np.array([2.0])
    if n == 2:
        r = math.sqrt(1.0 / 3.0)
        return np.array([-r, r]), np.array([1.0, 1.0])
    if n == 3:
        r = math.sqrt(0.6)
        return np.array([-r, 0.0, r]), np.array([5.0 / 9.0, 8.0 / 9.0, 5.0 / 9.0])
    raise ValueError(f"no closed form for n = {n}")


@jit
def legendre_f64(n, x):
    """``(P_n(x), P_n'(x))`` by the three-term recurrence in float64 (n >= 1)."""
    p0 = 1.0
    p1 = x
    d0 = 0.0
    d1 = 1.0
    for k in range(1, n):
        c = 2.0 * k + 1.0
        p2 = (c * x * p1 - k * p0) / (k + 1.0)
        d2 = d0 + c * p1
        p0 = p1
        p1 = p2
        d0 = d1
        d1 = d2
    return p1, d1


@jit
def legendre_dd(n, xh, xl):
    """``(P_n, P_{n-1})`` at the double-double point ``xh + xl``, as double-double pairs (n >= 1)."""
    p0h, p0l = 1.0, 0.0
    p1h, p1l = xh, xl
    for k in range(1, n):
        th, tl = dd_mul(xh, xl, p1h, p1l)
        th, tl = dd_mul_d(th, tl, 2.0 * k + 1.0)
        sh, sl = dd_mul_d(p0h, p0l, -1.0 * k)
        th, tl = dd_add(th, tl, sh, sl)
        p0h, p0l = p1h, p1l
        p1h, p1l = dd_div_d(th, tl, k + 1.0)
    return p1h, p1l, p0h, p0l


@jit
def newton_node(n, x0, max_f64_steps):
    """Root of ``P_n`` near ``x0`` and its weight, both rounded once from double-double."""
    x = x0
    for _ in range(max_f64_steps):
        p, d = legendre_f64(n, x)
        dx = p / d
        x -= dx
        if abs(dx) <= _F64_TOL:
            break
    xh, xl = x, 0.0
    yh, yl = xh, xl
    sh, sl = 1.0, 0.0
    nh, nl = 1.0, 0.0
    step = 0.0
    for _ in range(_MAX_DD_STEPS):
        ph, pl, qh, ql = legendre_dd(n, xh, xl)
        yh, yl = xh, xl
        ah, al = dd_add_d(-yh, -yl, 1.0)
        bh, bl = dd_add_d(yh, yl, 1.0)
        sh, sl = dd_mul(ah, al, bh, bl)  # s = 1 - y^2
        th, tl = dd_mul(yh, yl, ph, pl)
        th, tl = dd_add(qh, ql, -th, -tl)
        nh, nl = dd_mul_d(th, tl, 1.0 * n)  # N = n (P_{n-1} - y P_n) = s P_n'(y)
        step = -ph * sh / nh
        xh, xl = dd_add_d(xh, xl, step)
        if n * abs(step) <= _DD_TOL * (1.0 - abs(yh)) or abs(step) <= _DD_FLOOR:
            break
    # w = 2 s^2 / (N^2 (s + 2 y step)), in double-double, rounded once.
    ah, al = dd_add_d(sh, sl, 2.0 * yh * step)
    bh, bl = dd_mul(nh, nl, nh, nl)
    bh, bl = dd_mul(bh, bl, ah, al)
    ah, al = dd_mul(sh, sl, sh, sl)
    return xh, dd_div_to_d(2.0 * ah, 2.0 * al, bh, bl)


@jit
def fill(n, x, w):
    """Write the n-point rule, ascending, into ``x`` and ``w`` (float64, length n, n >= 2)."""
    half = n // 2
    for i in range(half):
        k = i + 1
        x0, _ = bogaert_node(n, k)
        xk, wk = newton_node(n, x0, _MAX_F64_STEPS)
        x[n - k] = xk
        x[k - 1] = -xk
        w[n - k] = wk
        w[k - 1] = wk
    if n % 2 == 1:
        _, wk = newton_node(n, 0.0, 0)
        x[half] = 0.0
        w[half] = wk


@jit(parallel=True)
def _refine_kernel(n, x0, max_f64_steps, x, w):
    for i in prange(x0.shape[0]):
        xi, wi = newton_node(n, x0[i], max_f64_steps)
        x[i] = xi
        w[i] = wi


def newton_refine(n: int, x0, *, f64_steps: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Polish starting points ``x0`` into roots of ``P_n`` and their weights, O(n) per point.

    Double-double Newton on the three-term recurrence (``f64_steps`` float64 steps first); the
    results are the float64 roundings of ~30-digit values, an independent reference for the
    asymptotic regime. Starting points must be closer to their root than to any other.
    """
    x0 = np.ascontiguousarray(x0, dtype=np.float64)
    x = np.empty_like(x0)
    w = np.empty_like(x0)
    _refine_kernel(int(n), x0, int(f64_steps), x, w)
    return x, w
