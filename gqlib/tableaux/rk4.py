"""The classic fourth-order Runge-Kutta method (Kutta 1901)."""
from fractions import Fraction as F

from ._tableau import ButcherTableau

TABLEAU = ButcherTableau(
    name="rk4",
    c=(F(0), F(1, 2), F(1, 2), F(1)),
    a=((), (F(1, 2),), (F(0), F(1, 2)), (F(0), F(0), F(1))),
    b=(F(1, 6), F(1, 3), F(1, 3), F(1, 6)),
    order=4,
    provenance="Kutta (1901); Hairer, Norsett, Wanner I, Table II.1.2 (left)",
)
