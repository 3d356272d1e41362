"""gqlib: Runge-Kutta integrators, Gauss-Legendre quadrature adjoints and Wong-Zakai SDE training.

The core is framework-agnostic (NumPy reference, array-API generic drivers, numba hot paths);
``gqlib.torch`` is a thin adapter, imported explicitly (a ``gqlib.jax`` adapter is planned, not yet
built).
"""

from . import adjoint, convergence, errors, quadrature, sde
from .integrate import PIController, Segment, Stepper, solve
from .interpolate import DenseOutput, Solution
from .quadrature import gauss_legendre
from .tableaux import METHODS, ButcherTableau

__version__ = "0.1.0.dev0"

__all__ = ["solve", "Stepper", "Segment", "PIController", "Solution", "DenseOutput", "METHODS",
           "ButcherTableau", "gauss_legendre", "quadrature", "adjoint", "sde", "convergence",
           "errors"]
