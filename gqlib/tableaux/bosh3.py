"""Bogacki-Shampine 3(2), FSAL, with its cubic dense output (Hermite through y0, y1, f0, f1)."""
from fractions import Fraction as F

from ._tableau import ButcherTableau

_b = (F(2, 9), F(1, 3), F(4, 9), F(0))
_b_hat = (F(7, 24), F(1, 4), F(1, 3), F(1, 8))

TABLEAU = ButcherTableau(
    name="bosh3",
    c=(F(0), F(1, 2), F(3, 4), F(1)),
    a=((), (F(1, 2),), (F(0), F(3, 4)), _b[:3]),
    b=_b,
    b_err=tuple(x - y for x, y in zip(_b, _b_hat, strict=True)),  # b - b_hat, stored directly (scipy's E is b_hat - b)
    order=3,
    error_order=2,
    # scipy.integrate.RK23.P: the cubic Hermite interpolant through y0, y1, f0 = k_0, f1 = k_3, written
    # over the stages; rows = stages, cols = theta^1..3
    dense=(
        (F(1), F(-4, 3), F(5, 9)),
        (F(0), F(1), F(-2, 3)),
        (F(0), F(4, 3), F(-8, 9)),
        (F(0), F(-1), F(1)),
    ),
    dense_order=3,
    provenance="Bogacki & Shampine (1989), A 3(2) pair of Runge-Kutta formulas, Appl. Math. Lett. 2(4), "
               "321-325; dense output as scipy.integrate.RK23",
)
