"""Observed orders of convergence from refinement studies.

For errors ``e(h) ~ C h^p`` the observed order is the least-squares slope of ``log e`` against
``log h`` over an asymptotic window: small enough ``h`` that higher-order terms are negligible,
large enough that rounding does not dominate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["observed_order", "asymptotic_window", "refinement_study", "OrderStudy"]


def observed_order(h: Sequence[float], err: Sequence[float], *, next_order_term: bool = False) -> float:
    """Least-squares slope of ``log(err)`` against ``log(h)``.

    With ``next_order_term=True`` the model is ``err = C h^p (1 + D h)``, i.e.
    ``log err = log C + p log h + D h`` to first order, fitted by linear least squares. It removes
    the bias that the next power of h puts on the slope when a method's principal error
    coefficient is small (tsit5 is designed that way), without biasing a clean power law.

    Parameters
    ----------
    h, err : sequences of positive floats, same length >= 2 (>= 4 with the correction)
    next_order_term : bool

    Examples
    --------
    >>> round(observed_order([0.1, 0.05, 0.025], [1e-2, 2.5e-3, 6.25e-4]), 6)
    2.0
    """
    h = np.asarray(h, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    if h.shape != err.shape or h.ndim != 1 or h.size < 2:
        raise ValueError("`h` and `err` must be 1-D of equal length >= 2")
    if np.any(h <= 0) or np.any(err <= 0) or not np.all(np.isfinite(err)):
        raise ValueError("`h` and `err` must be positive and finite")
    if np.unique(h).size < 2:
        raise ValueError(f"`h` must hold at least two different step sizes to fit an order, got "
                         f"{h.tolist()}")
    columns = [np.ones_like(h), np.log(h)]
    if next_order_term:
        if h.size < 4:
            raise ValueError("the next-order correction needs at least 4 points")
        columns.append(h)
    coef = np.linalg.lstsq(np.stack(columns, axis=1), np.log(err), rcond=None)[0]
    return float(coef[1])


def asymptotic_window(h, err, *, lo: float = 1e-12, hi: float = 1e-3, n_fit: int | None = None):
    """The entries with ``lo <= err <= hi`` (above rounding, below the pre-asymptotic regime).

    With ``n_fit``, only the ``n_fit`` smallest step sizes in that band are kept: the most
    asymptotic points that rounding has not yet reached.
    """
    h = np.asarray(h, dtype=np.float64)
    err = np.asarray(err, dtype=np.float64)
    keep = (err >= lo) & (err <= hi)
    h, err = h[keep], err[keep]
    if n_fit is not None and h.size > n_fit:
        order = np.argsort(h)[:n_fit]
        order.sort()
        h, err = h[order], err[order]
    return h, err


class OrderStudy:
    """Result of :func:`refinement_study`: ``h``, ``err``, the window used and the fitted ``order``."""

    def __init__(self, h, err, h_fit, err_fit, next_order_term=False):
        self.h, self.err, self.h_fit, self.err_fit = h, err, h_fit, err_fit
        need = 4 if next_order_term else 2
        self.order = (observed_order(h_fit, err_fit, next_order_term=next_order_term)
                      if len(h_fit) >= need else float("nan"))

    def __repr__(self) -> str:
        return f"OrderStudy(order={self.order:.3f}, points={len(self.h_fit)})"


def refinement_study(error_at: Callable[[float], float], h: Sequence[float], *, lo: float = 1e-12,
                     hi: float = 1e-3, n_fit: int | None = None,
                     next_order_term: bool = False) -> OrderStudy:
    """Evaluate ``error_at(h)`` for each step size and fit the order over the asymptotic window
    (see :func:`asymptotic_window`)."""
    hs = np.asarray(h, dtype=np.float64)
    if hs.ndim != 1 or hs.size < 2:
        raise ValueError(f"`h` must be 1-D with at least two step sizes, got shape {hs.shape}")
    errs = np.array([float(error_at(float(x))) for x in hs])
    hf, ef = asymptotic_window(hs, errs, lo=lo, hi=hi, n_fit=n_fit)
    return OrderStudy(hs, errs, hf, ef, next_order_term)
