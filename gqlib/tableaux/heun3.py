"""Heun's third-order method (torchdiffeq's ``heun3``), order 3."""
from fractions import Fraction as F

from ._tableau import ButcherTableau

TABLEAU = ButcherTableau(
    name="heun3",
    c=(F(0), F(1, 3), F(2, 3)),
    a=((), (F(1, 3),), (F(0), F(2, 3))),
    b=(F(1, 4), F(0), F(3, 4)),
    order=3,
    provenance="Heun (1900), Z. Math. Phys. 45; Hairer, Norsett, Wanner I, Table II.1.1; "
               "torchdiffeq's fixed-grid 'heun3'",
)
