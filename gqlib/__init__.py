"""gqlib: Runge-Kutta integrators, Gauss-Legendre quadrature adjoints and Wong-Zakai SDE training."""

__version__ = "0.1.0.dev0"
