"""Explicit Runge-Kutta methods as data, and the registry ``METHODS``."""

from __future__ import annotations

from ._registry import METHODS, get_method
from ._tableau import ButcherTableau

__all__ = ["ButcherTableau", "METHODS", "get_method"]
