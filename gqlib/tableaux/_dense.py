"""Build dense-output matrices ``P`` from the forms in which methods publish their interpolants.

Both builders work in exact ``Fraction`` arithmetic (floats are converted exactly with
``Fraction(x)``) and return ``Fraction`` rows; callers round once with :func:`to_float` where the
source coefficients are not rational. Conventions as in :mod:`._tableau`: row ``i`` of ``P`` holds the
coefficients of ``theta^1 .. theta^d`` in the continuous weight ``b_i(theta)``, so that
``y(t + theta h) = y + h sum_i b_i(theta) k_i``.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

Number = Fraction | float | int
Poly = list[Fraction]  # coefficients of theta^0, theta^1, ...


def _exact(x: Number) -> Fraction:
    return x if isinstance(x, Fraction) else Fraction(x)


def _mul(p: Poly, q: Poly) -> Poly:
    out = [Fraction(0)] * (len(p) + len(q) - 1)
    for i, x in enumerate(p):
        for j, y in enumerate(q):
            out[i + j] += x * y
    return out


def combine(weights: Sequence[Sequence[Number]], basis: Sequence[Poly]) -> list[list[Fraction]]:
    """``P`` for ``b_i(theta) = sum_j weights[j][i] * basis[j](theta)``.

    ``weights[j]`` has one entry per stage; every ``basis[j]`` must vanish at ``theta = 0``.
    """
    degree = max(len(p) for p in basis) - 1
    if any(p[0] != 0 for p in basis):
        raise ValueError("dense-output basis polynomials must vanish at theta = 0")
    n = len(weights[0])
    P = [[Fraction(0)] * degree for _ in range(n)]
    for w, p in zip(weights, basis, strict=True):
        for i in range(n):
            wi = _exact(w[i])
            if wi:
                for k in range(1, len(p)):
                    P[i][k - 1] += wi * p[k]
    return P


def _unit(n: int, i: int) -> list[Fraction]:
    return [Fraction(int(j == i)) for j in range(n)]


def quartic_through_midpoint(b: Sequence[Number], mid: Sequence[Number], last: int) -> list[list[Fraction]]:
    """``P`` (``s x 4``) of the quartic through ``y0, y1, f0, f1`` and a midpoint value.

    This is torchdiffeq's ``_interp_fit``: the quartic ``u(theta)`` with ``u(0) = y0``, ``u(1) = y1``,
    ``u'(0) = h f0``, ``u'(1) = h f1`` and ``u(1/2) = y0 + h sum_i mid_i k_i``, where ``f0 = k_0`` and
    ``f1 = k_last = f(t + h, y1)``. Writing ``y1 - y0 = h sum_i b_i k_i`` makes every coefficient a
    combination of the stages (the ``y0`` terms cancel)::

        theta^1:  e_0
        theta^2:  e_last - 4 e_0 -  5 b + 16 mid
        theta^3:  5 e_0 - 3 e_last + 14 b - 32 mid
        theta^4:  2 (e_last - e_0) -  8 b + 16 mid
    """
    s = len(b)
    e0, e1 = _unit(s, 0), _unit(s, last)
    bb = [_exact(x) for x in b]
    mm = [_exact(x) for x in mid]
    return [
        [
            e0[i],
            e1[i] - 4 * e0[i] - 5 * bb[i] + 16 * mm[i],
            5 * e0[i] - 3 * e1[i] + 14 * bb[i] - 32 * mm[i],
            2 * (e1[i] - e0[i]) - 8 * bb[i] + 16 * mm[i],
        ]
        for i in range(s)
    ]


def nested_hermite_basis(n: int) -> list[Poly]:
    """Basis of Hairer's DOP853 (and scipy's ``Dop853DenseOutput``) nested interpolant.

    ``y(t + theta h) = y0 + theta (F0 + (1 - theta)(F1 + theta (F2 + (1 - theta)(F3 + ...))))``,
    i.e. ``F_j`` multiplies ``theta^ceil((j+1)/2) (1 - theta)^floor((j+1)/2)``.
    """
    x: Poly = [Fraction(0), Fraction(1)]
    one_minus_x: Poly = [Fraction(1), Fraction(-1)]
    basis, p = [], [Fraction(1)]
    for j in range(n):
        p = _mul(p, x if j % 2 == 0 else one_minus_x)
        basis.append(p)
    return basis


def to_float(P: Sequence[Sequence[Fraction]]) -> tuple[tuple[float, ...], ...]:
    """Round an exactly derived ``P`` once, entry by entry."""
    return tuple(tuple(float(x) for x in row) for row in P)

