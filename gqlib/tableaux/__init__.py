"""Explicit Runge-Kutta methods as data, and the registry ``METHODS``."""

from __future__ import annotations

from ._tableau import ButcherTableau
from ._registry import METHODS, get_method

__all__ = ["ButcherTableau", "METHODS", "get_method"]
