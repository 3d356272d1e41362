"""gqlib for PyTorch: torchdiffeq's ``odeint`` interface on gqlib's solvers and adjoints.

``odeint(func, y0, t, ..., adjoint=None)`` backpropagates through the solver (as torchdiffeq's
``odeint``); ``adjoint=`` a core strategy (:mod:`gqlib.adjoint`) or its alias (``"checkpoint"``,
``"gq"``, ``"backsolve"``, ``"interpolated"``, ``"collocation"``) uses it. ``odeint_adjoint`` has
torchdiffeq's signature with the core's default strategy. See ``docs/torch.md``.
"""

from ._odeint import OdeintStats, odeint, odeint_adjoint
from ._odeint_event import odeint_event
from ._options import METHOD_NAMES

__all__ = ["odeint", "odeint_adjoint", "odeint_event", "OdeintStats", "METHOD_NAMES"]
