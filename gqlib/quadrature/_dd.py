"""Double-double arithmetic: error-free transformations for the Newton regime.

A double-double number is an unevaluated sum ``hi + lo`` of two float64 with ``|lo| <= ulp(hi)/2``,
about 32 significant digits. The transformations are Knuth's TwoSum and Dekker's TwoProduct with
Veltkamp splitting (no FMA needed), so they stay exact under numba with ``fastmath=False``, which
forbids LLVM from contracting ``a * b + c``.

Reference: Dekker (1971), A floating-point technique for extending the available precision,
Numer. Math. 18; Hida, Li, Bailey (2001), Algorithms for quad-double precision floating point
arithmetic (the QD library's ``dd_real``).
"""

from __future__ import annotations

from gqlib._jit import jit

__all__ = ["two_sum", "two_prod", "dd_add", "dd_add_d", "dd_mul", "dd_mul_d", "dd_div_d",
           "dd_div_to_d"]

_SPLITTER = 134217729.0  # 2**27 + 1: splits a float64 into two 26-bit halves.


@jit
def two_sum(a, b):
    """``s + e == a + b`` exactly, with ``s = fl(a + b)``."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


@jit
def _fast_two_sum(a, b):
    # Requires |a| >= |b| (or a == 0); three flops instead of six.
    s = a + b
    e = b - (s - a)
    return s, e


@jit
def _split(a):
    t = _SPLITTER * a
    hi = t - (t - a)
    return hi, a - hi


@jit
def two_prod(a, b):
    """``p + e == a * b`` exactly, with ``p = fl(a * b)`` (barring overflow)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


@jit
def dd_add(ah, al, bh, bl):
    """Double-double sum ``(ah, al) + (bh, bl)`` (the accurate, IEEE-style variant)."""
    s, e = two_sum(ah, bh)
    t, f = two_sum(al, bl)
    e += t
    s, e = _fast_two_sum(s, e)
    e += f
    return _fast_two_sum(s, e)


@jit
def dd_add_d(ah, al, b):
    """Double-double plus double."""
    s, e = two_sum(ah, b)
    e += al
    return _fast_two_sum(s, e)


@jit
def dd_mul(ah, al, bh, bl):
    """Double-double product."""
    p, e = two_prod(ah, bh)
    e += ah * bl + al * bh
    return _fast_two_sum(p, e)


@jit
def dd_mul_d(ah, al, b):
    """Double-double times double."""
    p, e = two_prod(ah, b)
    e += al * b
    return _fast_two_sum(p, e)


@jit
def dd_div_d(ah, al, b):
    """Double-double divided by double (one correction step of long division)."""
    q1 = ah / b
    p, e = two_prod(q1, b)
    s, f = two_sum(ah, -p)
    f += al
    f -= e
    q2 = (s + f) / b
    return _fast_two_sum(q1, q2)


@jit
def dd_div_to_d(ah, al, bh, bl):
    """``(ah, al) / (bh, bl)`` rounded to one double (long division, three partial quotients)."""
    q1 = ah / bh
    ph, pl = dd_mul_d(bh, bl, q1)
    rh, rl = dd_add(ah, al, -ph, -pl)
    q2 = rh / bh
    ph, pl = dd_mul_d(bh, bl, q2)
    rh, rl = dd_add(rh, rl, -ph, -pl)
    q3 = rh / bh
    s, e = _fast_two_sum(q1, q2)
    return s + (e + q3)
