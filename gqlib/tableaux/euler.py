"""Forward Euler, order 1."""
from fractions import Fraction as F

from ._tableau import ButcherTableau

TABLEAU = ButcherTableau(
    name="euler", c=(F(0),), a=((),), b=(F(1),), order=1,
    provenance="Euler (1768); Hairer, Norsett, Wanner I, II.1",
)
