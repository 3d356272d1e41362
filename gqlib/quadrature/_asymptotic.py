"""Large-n regime: Bogaert's iteration-free asymptotic formulas, O(1) work per node.

With ``v = 1/(n + 1/2)``, ``alpha_k = j_{0,k} v`` and ``u = cot(alpha_k)``, the k-th node
``x_k = cos(theta_k)`` and weight of the n-point rule are (Bogaert 2014; the forms below follow
FastGaussQuadrature.jl's expansion of his functions ``F_i`` and ``W_i`` in u and 1/alpha)

    theta_k = alpha + v^2 F1 + v^4 F2 + v^6 F3 + O(v^8)
    F1 = (u - 1/alpha) / 8
    F2 = (6 (1 + u^2)/alpha + 25/alpha^3 - u (31 u^2 + 33)) / 384
    F3 = u (2595 + 6350 u^2 + 3779 u^4) / 15360 - 1073 / (5120 alpha^5)
         + (1 + u^2) (-(11 + 31 u^2) / (1024 alpha) + u / (512 alpha^2) - 25 / (3072 alpha^3))

    w_k = 2 sin(alpha) / (J_1(j_{0,k})^2 alpha (1/v^2 + W1 + v^2 W2 + v^4 W3)) (1 + O(v^8))

with W1..W3 polynomials in u and 1/alpha (see :func:`bogaert_node`). The apparent cancellations
(``u - 1/alpha`` for small alpha) are harmless: every such term carries enough powers of v that
its absolute error stays below ``eps * alpha``. The relative truncation error is O(v^8); measured
against 40-digit references it is below 2 eps for n > 80 and grows to about 7 eps at n = 61 and
hundreds of eps at n = 30, which is why the regime starts above ``NEWTON_MAX = 100``. On
(0, pi/2] ``|F_i| <= 0.02 alpha`` and ``|W_i| <= 0.09``, so the v^6 terms are dropped from
n = 1000 (``_DROP_V6``) and the v^4 terms from n = 10^5 (``_DROP_V4``): what they would add is
below 1e-19 relative.

Three details keep the nodes within about one ulp (absolute) and the cost at one sine and one
cosine per node pair:

* for nodes near x = 0 (alpha >= pi/4) ``sin(alpha)`` and ``cos(alpha)`` are taken as
  ``cos(phi)`` and ``sin(phi)`` of ``phi = pi/2 - alpha``, formed as ``(pi (n + 1 - 2k)/2 - delta_k)
  v`` from the integer ``n + 1 - 2k`` and the small McMahon offset ``delta_k``: no rounding error
  of size ``eps * pi/2`` enters ``cos(alpha)``;
* ``x = cos(alpha + corr)`` is expanded by the addition theorem with two Taylor terms of
  ``cos(corr)`` and ``sin(corr)``, exact to 1e-21 since ``|corr| < 1e-5`` for n > 100;
* near x = +-1 the node is then accurate to an ulp of x while theta is small.

Reference: I. Bogaert, Iteration-free computation of Gauss-Legendre quadrature nodes and weights,
SIAM J. Sci. Comput. 36(3), A1008-A1026, 2014.
"""

from __future__ import annotations

import math

from gqlib._jit import jit, prange
from gqlib.quadrature._bessel import j0_zero_offset, j1_squared_at_j0_zero

__all__ = ["bogaert_node", "fill_serial", "fill_parallel"]

_PI = math.pi
_HALF_PI = 0.5 * math.pi
_QUARTER_PI = 0.25 * math.pi
_DROP_V6 = 1000
_DROP_V4 = 100_000


@jit
def bogaert_node(n, k):
    """Node ``x_k = cos(theta_k) >= 0`` and weight of the n-point rule, ``1 <= k <= (n + 1) // 2``.

    k counts from x = 1 inwards (theta ascending). Accurate to a few ulps for ``n > 80``; an
    excellent starting guess below (relative error under 1e-5 at n = 2, 1e-9 at n = 10).
    """
    nh = n + 0.5
    v = 1.0 / nh
    v2 = v * v
    delta = j0_zero_offset(k)
    nu = _PI * (k - 0.25) + delta
    alpha = nu / nh
    if alpha < _QUARTER_PI:
        s = math.sin(alpha)
        c = math.cos(alpha)
    else:  # from pi/2 - alpha, formed without cancellation: c = cos(alpha) keeps its digits
        phi = (_HALF_PI * (n + 1 - 2 * k) - delta) / nh
        s = math.cos(phi)
        c = math.sin(phi)
    u = c / s
    u2 = u * u
    ia = 1.0 / alpha
    ia2 = ia * ia
    ia3 = ia2 * ia
    ua = u * alpha

    # theta = alpha + corr, corr = v^2 (F1 + v^2 (F2 + v^2 F3)); w = 2 sin(alpha) / (J1^2 alpha
    # (1/v^2 + W1 + v^2 (W2 + v^2 W3))). |F_i| <= 0.02 alpha and |W_i| <= 0.09 on (0, pi/2], so
    # the v^6 terms are below 1e-19 (relative) from n = 1000 on and the v^4 terms from 10^5 on.
    f1 = 0.125 * (u - ia)
    w1 = 0.125 * (1.0 + (ua - 1.0) * ia2)
    if n >= _DROP_V4:
        corr = v2 * f1
        big_w = nh * nh + w1
    else:
        f2 = (6.0 * (1.0 + u2) * ia + 25.0 * ia3 - u * (31.0 * u2 + 33.0)) / 384.0
        w2 = ((-27.0 - u2 * (84.0 + 56.0 * u2))
              + ia2 * ((6.0 * ua - 3.0 * (1.0 - 2.0 * u2)) + ia2 * (81.0 - 31.0 * ua))) / 384.0
        if n >= _DROP_V6:
            corr = v2 * (f1 + v2 * f2)
            big_w = nh * nh + w1 + v2 * w2
        else:
            f3 = (u * (2595.0 + u2 * (6350.0 + 3779.0 * u2)) / 15360.0
                  - (1073.0 / 5120.0) * ia3 * ia2
                  + (1.0 + u2) * (-(11.0 + 31.0 * u2) / 1024.0 * ia + u / 512.0 * ia2
                                  - 25.0 / 3072.0 * ia3))
            d0 = 153.0 / 1024.0 + u2 * (295.0 / 256.0 + u2 * (187.0 / 96.0 + u2 * (151.0 / 160.0)))
            d1 = -u * (65.0 / 1024.0 + u2 * (119.0 / 768.0 + u2 * (35.0 / 384.0)))
            d2 = 5.0 / 512.0 + u2 * (15.0 / 512.0 + u2 * (7.0 / 384.0))
            d3 = u * (u2 / 512.0 - 13.0 / 1536.0)
            d4 = 53.0 / 3072.0 - (7.0 / 384.0) * u2
            d5 = (3749.0 / 15360.0) * u
            d6 = -1125.0 / 1024.0
            w3 = d0 + ia * (d1 + ia * (d2 + ia * (d3 + ia * (d4 + ia * (d5 + ia * d6)))))
            corr = v2 * (f1 + v2 * (f2 + v2 * f3))
            big_w = nh * nh + w1 + v2 * (w2 + v2 * w3)

    # x = cos(alpha + corr) by the addition theorem: |corr| < 1e-5 for n > 100, so two Taylor
    # terms of cos(corr) and sin(corr) are exact to 1e-21 and no third trigonometric call is needed.
    cc = corr * corr
    x = c * (1.0 - 0.5 * cc) - s * (corr * (1.0 - cc / 6.0))

    b = j1_squared_at_j0_zero(k, nu)
    w = 2.0 * s / (b * alpha * big_w)
    return x, w


@jit
def _write_pair(n, k, x, w):
    xk, wk = bogaert_node(n, k)
    x[n - k] = xk
    x[k - 1] = -xk
    w[n - k] = wk
    w[k - 1] = wk


@jit
def _write_middle(n, x, w):
    if n % 2 == 1:
        half = n // 2
        _, wk = bogaert_node(n, half + 1)
        x[half] = 0.0
        w[half] = wk


# Two kernels rather than one function jitted twice: numba's on-disk cache keys entries by the
# function's name and signature, not by the compile options, so a serial and a parallel build of
# the same function would overwrite each other.
@jit
def fill_serial(n, x, w):
    """Write the n-point rule, ascending, into ``x`` and ``w`` (float64, length n, n >= 2)."""
    for k in range(1, n // 2 + 1):
        _write_pair(n, k, x, w)
    _write_middle(n, x, w)


@jit(parallel=True)
def fill_parallel(n, x, w):
    """As :func:`fill_serial`, the node pairs shared among numba's threads."""
    for i in prange(n // 2):
        _write_pair(n, i + 1, x, w)
    _write_middle(n, x, w)
