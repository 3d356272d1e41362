"""Rules built on Gauss-Legendre: mapping to an interval, composite rules, ``integrate``."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from gqlib.quadrature._gauss_legendre import _map, _rule, gauss_legendre
from gqlib.quadrature._validate import check_breakpoints, check_dtype, check_interval, check_n

__all__ = ["map_to_interval", "composite", "integrate"]


def map_to_interval(nodes: ArrayLike, weights: ArrayLike, a: float,
                    b: float) -> tuple[np.ndarray, np.ndarray]:
    """Map a rule on ``[-1, 1]`` to ``[a, b]``: ``t = (a + b)/2 + (b - a)/2 x``, ``v = (b - a)/2 w``.

    Parameters
    ----------
    nodes, weights : array_like, shape (n,)
        A quadrature rule on ``[-1, 1]``.
    a, b : float
        Finite interval ends, ``a < b``.

    Returns
    -------
    nodes, weights : ndarray of float64, shape (n,)

    Raises
    ------
    ValueError
        If ``a >= b``, a bound is not finite, or the shapes of ``nodes`` and ``weights`` differ.

    Examples
    --------
    >>> from gqlib.quadrature import gauss_legendre, map_to_interval
    >>> t, v = map_to_interval(*gauss_legendre(2), 0.0, 2.0)
    >>> [round(float(s), 12) for s in t], v.tolist()
    ([0.42264973081, 1.57735026919], [1.0, 1.0])
    """
    a, b = check_interval(a, b)
    x = np.asarray(nodes, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if x.shape != w.shape:
        raise ValueError(f"`nodes` and `weights` must have the same shape; got {x.shape} and "
                         f"{w.shape}.")
    return _map(x, w, a, b)


def composite(n: int, breakpoints: ArrayLike, *,
              dtype: DTypeLike = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre rule: the n-point rule on each interval of a partition.

    Exact for piecewise polynomials of degree ``2n - 1`` with breaks at ``breakpoints``; for smooth
    f on m equal intervals of width h the error is O(h^{2n}).

    Parameters
    ----------
    n : int
        Nodes per interval, ``n >= 1``.
    breakpoints : array_like, shape (m + 1,)
        Strictly increasing finite partition ``t_0 < t_1 < ... < t_m``.
    dtype : float64 or float32
        Output dtype (computed in float64, then rounded).

    Returns
    -------
    nodes, weights : ndarray, shape (m * n,)
        Ascending; ``nodes[i*n:(i+1)*n]`` lie in ``[t_i, t_{i+1}]``.

    Raises
    ------
    TypeError, ValueError
        If ``n`` is not a positive integer or ``breakpoints`` is not a finite, strictly
        increasing 1-D array of length >= 2.

    Examples
    --------
    >>> import numpy as np
    >>> from gqlib.quadrature import composite
    >>> t, v = composite(2, [0.0, 0.5, 1.0])
    >>> t.shape, round(float(v @ np.abs(t - 0.5) ** 3), 15)  # piecewise cubic: exact
    ((4,), 0.03125)
    """
    n = check_n(n)
    bp = check_breakpoints(breakpoints)
    dt = check_dtype(dtype)
    x, w = _rule(n)
    lo, hi = bp[:-1, None], bp[1:, None]
    h = 0.5 * hi - 0.5 * lo
    t = (0.5 * lo + 0.5 * hi) + h * x
    np.clip(t, lo, hi, out=t)
    v = h * w
    t, v = t.ravel(), v.ravel()
    if dt != np.float64:
        t, v = t.astype(dt), v.astype(dt)
    return t, v


def integrate(f: Callable[[np.ndarray], ArrayLike], a: float, b: float, n: int, *,
              intervals: int = 1):
    """Integrate a vectorised ``f`` over ``[a, b]`` with the n-point Gauss-Legendre rule.

    Parameters
    ----------
    f : callable
        ``f(t)`` for nodes ``t`` of shape ``(N,)`` returns an array of shape ``(N, ...)``; the
        integral has shape ``(...)``.
    a, b : float
        Finite interval ends, ``a < b``.
    n : int
        Nodes per interval; exact for polynomials of degree ``2n - 1``.
    intervals : int
        Number of equal subintervals (composite rule), default 1.

    Returns
    -------
    float or ndarray
        A Python scalar when ``f`` returns a 1-D array, else an array of shape ``(...)``.

    Raises
    ------
    TypeError, ValueError
        On invalid ``n``, ``intervals`` or bounds, or if ``f(t)`` does not have ``len(t)`` rows.

    Examples
    --------
    >>> import numpy as np
    >>> from gqlib.quadrature import integrate
    >>> round(integrate(np.exp, 0.0, 1.0, 10), 14) == round(np.e - 1, 14)
    True
    >>> integrate(lambda t: np.stack([t, t**2], axis=-1), 0.0, 3.0, 2).round(12)
    array([4.5, 9. ])
    """
    n = check_n(n)
    a, b = check_interval(a, b)
    m = check_n(intervals, "intervals")
    if m == 1:
        t, w = gauss_legendre(n, a, b)
    else:
        t, w = composite(n, np.linspace(a, b, m + 1))
    fx = np.asarray(f(t))
    if fx.ndim == 0 or fx.shape[0] != t.shape[0]:
        raise ValueError(f"`f` must be vectorised: f(t) for t of shape {t.shape} must return an "
                         f"array with {t.shape[0]} rows; got shape {fx.shape}.")
    res = np.tensordot(w, fx, axes=(0, 0))
    return res.item() if res.ndim == 0 else res
