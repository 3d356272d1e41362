"""The explicit midpoint rule (modified Euler), order 2."""
from fractions import Fraction as F

from ._tableau import ButcherTableau

TABLEAU = ButcherTableau(
    name="midpoint",
    c=(F(0), F(1, 2)),
    a=((), (F(1, 2),)),
    b=(F(0), F(1)),
    order=2,
    provenance="Runge (1895), Math. Ann. 46; Hairer, Norsett, Wanner I, Sect. II.1",
)
