"""Zeros of the Bessel function J_0 and the values J_1(j_{0,k})^2, to full float64 accuracy.

Bogaert's Gauss-Legendre asymptotics are written in terms of ``j_{0,k}``, the k-th positive zero
of ``J_0``, and of ``J_1(j_{0,k})^2``. Both come from a table for ``k <= TABLE_SIZE`` and from
asymptotic series beyond, where the first omitted term is below 1e-19 relative:

* the zero is returned as its offset ``delta_k = j_{0,k} - beta_k`` from ``beta_k = pi (k - 1/4)``,
  McMahon's expansion (DLMF 10.21.19 with mu = 0, continued two terms)
  ``delta_k = 1/(8 beta) - 31/(384 beta^3) + 3779/(15360 beta^5) - 6277237/(3440640 beta^7)
  + 2092163573/(82575360 beta^9) - 8249725736393/(14533263360 beta^11)``; the last two
  coefficients were checked against fits to mpmath's zeros for k = 10^3..10^4 (11 digits). With
  them ``delta_k`` itself, not only ``j_{0,k}``, is accurate to an ulp. Keeping ``beta_k`` and ``delta_k`` apart lets the caller form
  ``pi/2 - theta`` without cancellation for the nodes near x = 0.
* ``J_1(j)^2 = 2 / (pi j T(j))``: at a zero of J_0 the Wronskian gives ``J_1(j) = 2 / (pi j Y_0(j))``
  and ``Y_0(j)^2`` equals the squared modulus ``M_0(j)^2 = 2 T(j) / (pi j)``, whose series
  ``T(j) = sum_k [(2k-1)!!/(2k)!!] prod_{i<=k} (-(2i-1)^2) / (4 j^2)^k`` is DLMF 10.18.17.

The tables were computed with mpmath at 50 digits (``besseljzero(0, k) - pi*(k - 1/4)`` and
``besselj(1, besseljzero(0, k))**2``) and rounded to nearest; ``tests/test_quadrature.py`` checks
them and the series against mpmath.
"""

from __future__ import annotations

import math

import numpy as np

from gqlib._jit import jit

__all__ = ["TABLE_SIZE", "j0_zero_offset", "j1_squared_at_j0_zero"]

TABLE_SIZE = 20
"""Zeros ``k <= TABLE_SIZE`` are tabulated; beyond, ``beta_k >= 65`` and the series are exact in
float64."""

# delta_k = j_{0,k} - pi (k - 1/4), k = 1..20.
_J0_ZERO_OFFSET = np.array([
    0.04863106750342784, 0.022290966504172484, 0.014348115539080811, 0.010561988052556969,
    0.008352603936268065, 0.006906209769611422, 0.005886218148154599, 0.005128465428405139,
    0.004543413129563959, 0.004078095931491043, 0.003699187483291371, 0.003384673983973428,
    0.0031194313583755044, 0.0028927263170733285, 0.0026967312123637515, 0.0025256033585736677,
    0.002374893485959285, 0.002241153801149329, 0.0021216712723189117, 0.0020142818287534232,
])

# J_1(j_{0,k})^2, k = 1..20.
_J1_SQUARED = np.array([
    0.2695141239419169, 0.11578013858220369, 0.07368635113640822, 0.05403757319811628,
    0.04266142901724309, 0.0352421034909961, 0.030021070103054673, 0.02614739149530809,
    0.023159121824691393, 0.02078382912226786, 0.01885045066931767, 0.017246157569665008,
    0.0158935181059236, 0.01473762609647219, 0.013738465145387117, 0.012866181737615133,
    0.012098051548626797, 0.011416471224491609, 0.010807592791180204, 0.010260372926280762,
])

# McMahon coefficients of beta^-(2i+1), i = 0..5 (mu = 0).
_MCMAHON = (0.125, -31.0 / 384.0, 3779.0 / 15360.0, -6277237.0 / 3440640.0,
            2092163573.0 / 82575360.0, -8249725736393.0 / 14533263360.0)

# Coefficients of j^-(2i) in T(j), i = 1..6: -1/8, 27/128, -1125/1024, 385875/32768,
# -56260575/262144, 24960941775/4194304 (all exact in binary).
_MODULUS = (-0.125, 0.2109375, -1.0986328125, 11.775970458984375, -214.61706161499023,
            5951.152271032333)

_PI = math.pi


@jit
def j0_zero_offset(k):
    """``j_{0,k} - pi (k - 1/4)`` for ``k >= 1`` (the k-th zero of J_0 minus its leading term)."""
    if k <= TABLE_SIZE:
        return _J0_ZERO_OFFSET[k - 1]
    r = 1.0 / (_PI * (k - 0.25))
    r2 = r * r
    return r * (_MCMAHON[0] + r2 * (_MCMAHON[1] + r2 * (_MCMAHON[2] + r2 * (
        _MCMAHON[3] + r2 * (_MCMAHON[4] + r2 * _MCMAHON[5])))))


@jit
def j1_squared_at_j0_zero(k, nu):
    """``J_1(nu)^2`` where ``nu = j_{0,k}`` is the k-th zero of J_0 (``nu`` passed to save work)."""
    if k <= TABLE_SIZE:
        return _J1_SQUARED[k - 1]
    s = 1.0 / (nu * nu)
    t = 1.0 + s * (_MODULUS[0] + s * (_MODULUS[1] + s * (_MODULUS[2] + s * (
        _MODULUS[3] + s * (_MODULUS[4] + s * _MODULUS[5])))))
    return 2.0 / (_PI * nu * t)
