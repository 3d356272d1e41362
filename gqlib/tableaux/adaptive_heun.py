"""Heun-Euler 2(1): Heun's method with forward Euler as the embedded first-order solution."""
from fractions import Fraction as F

from ._tableau import ButcherTableau

_b = (F(1, 2), F(1, 2))
_b_hat = (F(1), F(0))  # forward Euler

TABLEAU = ButcherTableau(
    name="adaptive_heun",
    c=(F(0), F(1)),
    a=((), (F(1),)),
    b=_b,
    b_err=tuple(x - y for x, y in zip(_b, _b_hat, strict=True)),  # b - b_hat, stored directly (torchdiffeq stores b_hat - b)
    order=2,
    error_order=1,
    provenance="Heun (1900) with embedded Euler; as torchdiffeq's 'adaptive_heun'",
)
