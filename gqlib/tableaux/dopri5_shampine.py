"""Dormand-Prince 5(4) with Shampine's embedded 4th-order formula: the ``dopri5`` of torchdiffeq,
diffrax and jax.experimental.ode.

The step, its stages and its dense output are ``dopri5``'s; only the error estimate differs.
Shampine (1986) pairs the same 5th-order solution with another 4th-order one,
``b_hat = (1951/21600, 0, 22642/50085, 451/720, -12231/42400, 649/6300, 1/60)``, whose estimate
``h sum (b - b_hat)_i k_i`` is 2/3 of Dormand and Prince's (``e7 = -1/60`` against ``-1/40``):
at the same tolerances a solve takes about ``1.5^(1/5) = 1.08`` times longer steps. gqlib.torch
runs it for ``method="dopri5"``, so a torchdiffeq user gets torchdiffeq's steps; the core's
``"dopri5"`` keeps Dormand and Prince's estimate, as scipy's RK45 and Hairer's DOPRI5 do.
"""
import dataclasses
from fractions import Fraction as F

from .dopri5 import TABLEAU as _DOPRI5

_b_hat = (F(1951, 21600), F(0), F(22642, 50085), F(451, 720), F(-12231, 42400), F(649, 6300),
          F(1, 60))

TABLEAU = dataclasses.replace(
    _DOPRI5,
    name="dopri5_shampine",
    b_err=tuple(x - y for x, y in zip(_DOPRI5.b, _b_hat, strict=True)),
    provenance="Dormand & Prince (1980), J. Comput. Appl. Math. 6(1), with the embedded 4th-order "
               "formula and dense output of Shampine (1986), Math. Comp. 46(173), as in torchdiffeq, diffrax and jax.experimental.ode",
)
