"""Error norms for step-size control: RMS (default), max, or any callable (seminorms)."""

from __future__ import annotations

from collections.abc import Callable

from array_api_compat import array_namespace

__all__ = ["resolve_norm", "NORMS", "rms_norm", "max_norm"]


def rms_norm(x):
    """Root mean square, ``sqrt(mean(x^2))`` (Hairer, Norsett & Wanner I, (4.11))."""
    xp = array_namespace(x)
    return xp.sqrt(xp.mean(x * x))


def max_norm(x):
    """Maximum norm, ``max |x_i|``."""
    xp = array_namespace(x)
    return xp.max(xp.abs(x))


NORMS: dict[str, Callable] = {"rms": rms_norm, "max": max_norm}


def resolve_norm(norm) -> Callable:
    """``"rms"``, ``"max"`` or a callable ``norm(scaled_error) -> scalar``."""
    if callable(norm):
        return norm
    if isinstance(norm, str) and norm in NORMS:
        return NORMS[norm]
    raise ValueError(f"`norm` must be one of {sorted(NORMS)} or a callable, got {norm!r}")
