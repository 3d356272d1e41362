"""gqlib for PyTorch: torchdiffeq's ``odeint`` interface on gqlib's solvers and adjoints.

``odeint(func, y0, t, ..., adjoint=None)`` backpropagates through the solver (as torchdiffeq's
``odeint``); ``adjoint="gq"`` (Gauss-Legendre quadrature, Norcliffe & Deisenroth 2023),
``"backsolve"``, ``"interpolated"`` or ``"collocation"`` use an adjoint. ``odeint_adjoint`` has torchdiffeq's
signature with GQ underneath. See ``docs/torch.md``.
"""

from ._odeint import OdeintStats, odeint, odeint_adjoint
from ._options import METHOD_NAMES

__all__ = ["odeint", "odeint_adjoint", "OdeintStats", "METHOD_NAMES"]
