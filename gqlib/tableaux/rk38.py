"""Kutta's 3/8 rule, order 4 (torchdiffeq's fixed-grid ``rk4``)."""
from fractions import Fraction as F

from ._tableau import ButcherTableau

TABLEAU = ButcherTableau(
    name="rk38",
    c=(F(0), F(1, 3), F(2, 3), F(1)),
    a=((), (F(1, 3),), (F(-1, 3), F(1)), (F(1), F(-1), F(1))),
    b=(F(1, 8), F(3, 8), F(3, 8), F(1, 8)),
    order=4,
    provenance="Kutta (1901), Z. Math. Phys. 46; Hairer, Norsett, Wanner I, Table II.1.2 (right)",
)
