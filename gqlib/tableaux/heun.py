"""Heun's method (explicit trapezoidal rule), order 2; torchdiffeq's ``heun2``."""
from fractions import Fraction as F

from ._tableau import ButcherTableau

TABLEAU = ButcherTableau(
    name="heun",
    c=(F(0), F(1)),
    a=((), (F(1),)),
    b=(F(1, 2), F(1, 2)),
    order=2,
    provenance="Heun (1900), Z. Math. Phys. 45; Hairer, Norsett, Wanner I, Sect. II.1",
    aliases=("heun2",),
)
