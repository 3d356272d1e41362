"""Ralston's two-stage method (c2 = 2/3, minimal error bound among 2-stage order-2 methods)."""
from fractions import Fraction as F

from ._tableau import ButcherTableau

TABLEAU = ButcherTableau(
    name="ralston",
    c=(F(0), F(2, 3)),
    a=((), (F(2, 3),)),
    b=(F(1, 4), F(3, 4)),
    order=2,
    provenance="Ralston (1962), Runge-Kutta methods with minimum error bounds, Math. Comp. 16(80), 431-437",
)
