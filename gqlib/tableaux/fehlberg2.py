"""Fehlberg's RK1(2) pair, advancing with the second-order weights (torchdiffeq's ``fehlberg2``).

Fehlberg's third stage is evaluated at the first-order solution ``y + h (k_0/256 + 255 k_1/256)``;
torchdiffeq propagates the second-order weights ``b`` (local extrapolation), so that stage is not
``f(t + h, y1)`` and the method is not FSAL here: 3 stages per step. (torchdiffeq nevertheless reuses
that stage as the next step's ``f0``, i.e. it evaluates the next first stage at the first-order
point; gqlib evaluates it at ``y1``, which is the Runge-Kutta method the tableau describes.)
"""
from fractions import Fraction as F

from ._tableau import ButcherTableau

_b = (F(1, 512), F(255, 256), F(1, 512))
_b_hat = (F(1, 256), F(255, 256), F(0))

TABLEAU = ButcherTableau(
    name="fehlberg2",
    c=(F(0), F(1, 2), F(1)),
    a=((), (F(1, 2),), (F(1, 256), F(255, 256))),
    b=_b,
    b_err=tuple(x - y for x, y in zip(_b, _b_hat, strict=True)),  # b - b_hat, stored directly
    order=2,
    error_order=1,
    provenance="Fehlberg (1969), Low-order classical Runge-Kutta formulas with stepsize control, "
               "NASA TR R-315, the RK1(2) pair; as torchdiffeq's 'fehlberg2' (second-order solution kept)",
)
