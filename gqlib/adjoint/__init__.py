"""Adjoint gradient assembly: GQ (Gauss-Legendre quadrature), backsolve (+ seminorm), interpolated,
collocation.

Framework-agnostic: the field supplies vector-Jacobian products, the core does the numerics.
"""

from ._field import CountedField, FunctionField, VectorField
from ._gradient import ADJOINTS, NODE_RULES, AdjointGradient, gradient

__all__ = ["gradient", "AdjointGradient", "VectorField", "FunctionField", "CountedField",
           "ADJOINTS", "NODE_RULES"]
