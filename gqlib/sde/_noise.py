"""Noise approximations for Wong-Zakai: a smooth or piecewise-linear W whose derivative drives an ODE.

Each noise has ``W(t)``, ``dW(t)`` (the derivative, what the random ODE reads) and ``tstops`` (kinks of
``dW`` the ODE solver must land on; empty for smooth noise). ``t`` may be a Python float (what a solver
passes), a 0-d array, or a NumPy array of times (vectorised, NumPy result of shape
``t.shape + noise.shape``). Pass ``like=y`` to receive the value in ``y``'s namespace, device and dtype;
coefficients are held in NumPy float64 and converted once per (namespace, device, dtype). A noise is
defined on its interval ``[t0, t1]`` only: a time outside it (beyond a few ulps of rounding) or NaN
raises ValueError, so a solve past the Brownian path's end fails instead of extending the last slope.
Returned values are fresh arrays, never views of the noise's buffers.

All three approximations treat every component identically and linearly in W, so the expected Levy
area of any two components vanishes and the random ODE converges to the *Stratonovich* solution
(Wong & Zakai 1965; Ikeda & Watanabe 1989, VI.7), for non-commutative noise too.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import betainc

from ..integrate._policy import substep_count
from ._brownian import BrownianPath
from ._xp import ConversionCache, convert_like, is_numpy, namespace, to_numpy

__all__ = ["PiecewiseLinearNoise", "KarhunenLoeveNoise", "SmoothLinearNoise"]



def _scalar_time(t: Any) -> float | None:
    """``t`` as a float if it is a scalar (Python, NumPy or 0-d array of any namespace), else None."""
    if isinstance(t, (float, int, np.floating, np.integer)):
        return float(t)
    shape = getattr(t, "shape", None)
    if shape is not None and len(shape) == 0:
        return float(t)
    return None


def _check_path(path: Any) -> BrownianPath:
    if not isinstance(path, BrownianPath):
        raise TypeError(f"`path` must be a BrownianPath; got {type(path).__name__}.")
    return path


def _uniform_grid(t0: float, t1: float, h: Any) -> np.ndarray:
    """Grid t0, t0 + h, ..., t1 (last cell shorter if h does not divide t1 - t0)."""
    try:
        h = float(h)
    except (TypeError, ValueError):
        raise TypeError(f"`h` must be a positive float; got {h!r}.") from None
    if not (h > 0 and math.isfinite(h)):
        raise ValueError(f"`h` must be positive and finite; got {h!r}.")
    n = substep_count.py_func(t1 - t0, h)
    grid = t0 + h * np.arange(n + 1, dtype=np.float64)
    grid[-1] = t1
    return grid


#: Times this many ulps (of the larger end) outside [t0, t1] are rounding, not a query past the end:
#: a solver nudges one ulp past a tstop, and ``t + c h`` may round past the step's end.
_SLACK_ULPS = 4


class _Noise:
    """Shared plumbing: time handling, conversion to the caller's namespace."""

    t0: float
    t1: float
    shape: tuple[int, ...]
    tstops: np.ndarray

    def _set_span(self, t0: float, t1: float) -> None:
        self.t0, self.t1 = t0, t1
        slack = _SLACK_ULPS * math.ulp(max(abs(t0), abs(t1)))
        self._lo, self._hi = t0 - slack, t1 + slack

    def W(self, t: Any, like: Any = None):
        """The approximating path ``W_approx(t)``, shape ``t.shape + self.shape``."""
        return self._dispatch(t, like, self._W_np, self._W_scalar)

    def dW(self, t: Any, like: Any = None):
        """Its time derivative ``d W_approx/dt (t)``: the noise that drives the random ODE."""
        return self._dispatch(t, like, self._dW_np, self._dW_scalar)

    def __call__(self, t: Any, like: Any = None):
        return self.dW(t, like)

    def _dispatch(self, t, like, vec, scalar):
        ts = _scalar_time(t)
        if ts is not None:
            if like is None and not is_numpy(t):
                like = t
            return scalar(self._clip(ts), like)
        ta = np.asarray(to_numpy(t), dtype=np.float64)
        outside = ~((ta >= self._lo) & (ta <= self._hi))
        if outside.any():
            self._outside(float(ta[outside].ravel()[0]))
        out = vec(np.clip(ta, self.t0, self.t1))
        if like is None and not is_numpy(t):
            like = t
        if like is None or isinstance(like, np.ndarray):
            return out
        return convert_like(out, like)

    def _clip(self, t: float) -> float:
        if self.t0 <= t <= self.t1:
            return t
        if self._lo <= t <= self._hi:  # rounding at an end: the boundary value
            return min(max(t, self.t0), self.t1)
        self._outside(t)

    def _outside(self, t: float):
        raise ValueError(f"`t` = {t!r} is outside the noise's interval [{self.t0!r}, {self.t1!r}]: "
                         "the noise approximates a Brownian path on that interval only; solve "
                         "within it, or build the BrownianPath on a longer interval.")

    # Subclasses implement the scalar-time path (hot: called by the ODE solver at every stage)
    # and the vectorised NumPy path.
    def _W_scalar(self, t: float, like):  # pragma: no cover - abstract
        raise NotImplementedError

    def _dW_scalar(self, t: float, like):  # pragma: no cover - abstract
        raise NotImplementedError

    def _W_np(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _dW_np(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class PiecewiseLinearNoise(_Noise):
    r"""The classic Wong-Zakai noise: W interpolated linearly on a grid of width ``h``.

    On the cell ``[t_k, t_{k+1}]`` the derivative is the constant ``(W(t_{k+1}) - W(t_k))/(t_{k+1} - t_k)``
    (right-continuous: at a grid point, the cell to the right; solvers stepping backwards nudge into the
    left cell). The grid is ``t0, t0 + h, ...``; the last cell is shorter if ``h`` does not divide
    ``t1 - t0``. ``tstops`` are the interior grid points. The random ODE converges to the Stratonovich
    SDE as ``h -> 0``: mean-square rate ``h**(1/2)`` in general, about ``h`` at the grid points for
    scalar noise (Wong & Zakai 1965; Kloeden & Platen 1992, 6.1).

    Parameters
    ----------
    path : BrownianPath
        The Brownian path to interpolate (read once, at the grid points).
    h : float
        Grid width.

    Examples
    --------
    >>> path = BrownianPath(0.0, 1.0, shape=(2,), seed=3)
    >>> noise = PiecewiseLinearNoise(path, 0.25)
    >>> noise.tstops
    array([0.25, 0.5 , 0.75])
    >>> bool(np.allclose(noise.W(0.5), path(0.5)))
    True
    >>> bool(np.allclose(noise.dW(0.3), (path(0.5) - path(0.25)) / 0.25))
    True
    """

    def __init__(self, path: BrownianPath, h: float):
        path = _check_path(path)
        self.path = path
        self._set_span(path.t0, path.t1)
        self.shape = path.shape
        self.h = float(h)
        self.grid = _frozen(_uniform_grid(path.t0, path.t1, h))
        w = np.asarray(path(self.grid), dtype=np.float64)
        widths = np.diff(self.grid).reshape((-1,) + (1,) * len(self.shape))
        self.values = _frozen(w)
        self.slopes = _frozen(np.diff(w, axis=0) / widths)
        self.tstops = _frozen(self.grid[1:-1].copy())
        self._grid_list = self.grid.tolist()
        self._cache = ConversionCache(slopes=self.slopes, values=self.values)

    def __repr__(self) -> str:
        return f"PiecewiseLinearNoise(path={self.path!r}, h={self.h!r})"

    def _cell(self, t):
        return np.clip(np.searchsorted(self.grid, t, side="right") - 1, 0, self.grid.size - 2)

    def _dW_scalar(self, t, like):
        k = int(self._cell(t))
        return _copy(self._cache.get("slopes", like)[k])

    def _W_scalar(self, t, like):
        k = int(self._cell(t))
        dt = t - self._grid_list[k]
        return self._cache.get("values", like)[k] + self._cache.get("slopes", like)[k] * dt

    def _dW_np(self, t):
        return self.slopes[self._cell(t)]

    def _W_np(self, t):
        k = self._cell(t)
        dt = (t - self.grid[k]).reshape(t.shape + (1,) * len(self.shape))
        return self.values[k] + self.slopes[k] * dt


class KarhunenLoeveNoise(_Noise):
    r"""Truncated Karhunen-Loeve (cosine) expansion of Brownian motion on ``[t0, t1]``.

    With ``c = t1 - t0``, ``s = (t - t0)/c`` and ``omega_n = (n - 1/2) pi``,

        W(t)  = sqrt(2 c) sum_{n=1}^{N} xi_n sin(omega_n s) / omega_n,
        dW(t) = sqrt(2 / c) sum_{n=1}^{N} xi_n cos(omega_n s),

    ``xi_n ~ N(0, 1)`` independent, one vector ``xi[n]`` of the noise's shape per term (``xi`` has shape
    ``(N, *shape)``). The expansion is exact in law as ``N -> inf``; the mean-square truncation error
    is ``E int (W - W_N)^2 dt = c^2 sum_{n>N} omega_n^-2 ~ c^2/(pi^2 N)``. The noise is smooth
    (``tstops`` is empty), so adaptive solvers need no stops; they resolve frequencies up to
    ``omega_N / c``. Sample once per forward pass and reuse the object (it holds ``xi``) in the
    backward pass.

    Construct with :meth:`sample` (fresh ``xi``), :meth:`from_path` (the coefficients of a given
    :class:`BrownianPath`), or directly from ``xi``.

    Examples
    --------
    >>> noise = KarhunenLoeveNoise.sample(0.0, 1.0, n_terms=10, shape=(4,), seed=0)
    >>> noise.xi.shape, noise.dW(0.5).shape, noise.tstops.size
    ((10, 4), (4,), 0)
    >>> bool(np.all(noise.W(0.0) == 0.0))
    True
    """

    def __init__(self, t0: float, t1: float, xi: Any):
        t0, t1 = float(t0), float(t1)
        if not (math.isfinite(t0) and math.isfinite(t1) and t0 < t1):
            raise ValueError(f"`t1` must be after `t0` (both finite); got t0 = {t0!r}, t1 = {t1!r}.")
        xi = np.array(to_numpy(xi), dtype=np.float64)  # a copy: frozen below
        if xi.ndim < 1 or xi.shape[0] < 1:
            raise ValueError(f"`xi` must have shape (n_terms >= 1, *shape); got {xi.shape}.")
        self._set_span(t0, t1)
        self.xi = _frozen(xi)
        self.shape = xi.shape[1:]
        self.n_terms = xi.shape[0]
        self.tstops = np.empty(0)
        c = t1 - t0
        self.omega = (np.arange(self.n_terms) + 0.5) * math.pi
        self._c = c
        self._amp_dW = math.sqrt(2.0 / c)
        self._amp_W = math.sqrt(2.0 * c)
        self._cache = ConversionCache(xi=xi, omega=self.omega, xi_over_omega=xi / self.omega.reshape(
            (-1,) + (1,) * len(self.shape)))

    def __repr__(self) -> str:
        return f"KarhunenLoeveNoise(t0={self.t0!r}, t1={self.t1!r}, n_terms={self.n_terms}, shape={self.shape!r})"

    @classmethod
    def sample(cls, t0: float, t1: float, n_terms: int, shape: tuple[int, ...] | int = (),
               seed: Any = None) -> KarhunenLoeveNoise:
        """Fresh ``xi ~ N(0, I)`` of shape ``(n_terms, *shape)`` from ``numpy.random.default_rng(seed)``."""
        n_terms = _positive_int(n_terms, "n_terms")
        if isinstance(shape, (int, np.integer)):
            shape = (int(shape),)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return cls(t0, t1, rng.standard_normal((n_terms, *tuple(shape))))

    @classmethod
    def from_path(cls, path: BrownianPath, n_terms: int, levels: int | None = None) -> KarhunenLoeveNoise:
        r"""Project a Brownian path on the first ``n_terms`` KL modes.

        ``xi_n = sqrt(2/c) int cos(omega_n s) dW(t)``, computed exactly for the piecewise-linear
        interpolant of W on the dyadic grid of ``2**levels`` cells:
        ``xi_n = sqrt(2/c) sum_k dW_k (sin(omega_n s_{k+1}) - sin(omega_n s_k)) / (omega_n ds)``.
        The grid points are nodes of the path's Brownian tree, so with ``levels = path.depth`` the
        projection is exact for the path as defined (it is linear below its resolution). For coarser
        grids the error in ``xi_n`` is Gaussian with standard deviation about
        ``omega_n / (sqrt(12) 2**levels)`` (the unresolved bridge). Default:
        ``levels = min(path.depth, max(12, ceil(log2(64 n_terms))))``, an error below
        ``0.03 (n - 1/2)/n_terms`` in ``xi_n``.

        Cost: ``2**levels + 1`` path queries (one sorted traversal) and an
        ``(n_terms, 2**levels)`` matrix product per element.
        """
        path = _check_path(path)
        n_terms = _positive_int(n_terms, "n_terms")
        if levels is None:
            levels = min(path.depth, max(12, math.ceil(math.log2(64 * n_terms))))
        else:
            levels = _positive_int(levels, "levels", allow_zero=True)
            if levels > path.depth:
                raise ValueError(f"`levels` = {levels} exceeds the path's depth {path.depth} "
                                 "(its resolution); finer grids add nothing.")
        m = 2**levels
        s = np.arange(m + 1, dtype=np.float64) / m
        c = path.t1 - path.t0
        w = np.asarray(path(path.t0 + c * s), dtype=np.float64).reshape(m + 1, -1)
        omega = (np.arange(n_terms) + 0.5) * math.pi
        sin_s = np.sin(np.outer(omega, s))
        A = (sin_s[:, 1:] - sin_s[:, :-1]) * (math.sqrt(2.0 / c) * m / omega[:, None])
        xi = A @ np.diff(w, axis=0)
        return cls(path.t0, path.t1, xi.reshape((n_terms,) + path.shape))

    def _s(self, t):
        return (t - self.t0) / self._c

    def _dW_scalar(self, t, like):
        s = self._s(t)
        if like is None or isinstance(like, np.ndarray):
            coef = np.cos(self.omega * s)
            xi = self._cache.get("xi", like)
            return np.tensordot(coef.astype(xi.dtype), xi, axes=1) * self._amp_dW
        xp = namespace(like)
        omega = self._cache.get("omega", like)
        return xp.tensordot(xp.cos(omega * s), self._cache.get("xi", like), axes=1) * self._amp_dW

    def _W_scalar(self, t, like):
        s = self._s(t)
        if like is None or isinstance(like, np.ndarray):
            coef = np.sin(self.omega * s)
            xo = self._cache.get("xi_over_omega", like)
            return np.tensordot(coef.astype(xo.dtype), xo, axes=1) * self._amp_W
        xp = namespace(like)
        omega = self._cache.get("omega", like)
        return xp.tensordot(xp.sin(omega * s), self._cache.get("xi_over_omega", like),
                            axes=1) * self._amp_W

    def _dW_np(self, t):
        coef = np.cos(np.multiply.outer(self._s(t), self.omega))
        return np.tensordot(coef, self.xi, axes=1) * self._amp_dW

    def _W_np(self, t):
        coef = np.sin(np.multiply.outer(self._s(t), self.omega))
        return np.tensordot(coef, self._cache.numpy("xi_over_omega"), axes=1) * self._amp_W


class SmoothLinearNoise(_Noise):
    r"""The piecewise-linear polygon traversed smoothly: exact at grid points, no ``tstops``.

    On the cell ``[t_k, t_{k+1}]`` (width ``h_k``), ``W(t) = W(t_k) + dW_k S(x)`` with
    ``x = (t - t_k)/h_k``, ``dW_k = W(t_{k+1}) - W(t_k)`` and ``S`` the smoothstep
    ``S(x) = I_x(q, q)`` (regularised incomplete beta, a polynomial of degree ``2q - 1``) with
    ``q = smoothness + 2``, so that

        dW(t) = dW_k / h_k * x^(q-1) (1 - x)^(q-1) / B(q, q),

    which vanishes with its first ``smoothness`` derivatives at every grid point: ``dW`` is
    ``C^smoothness`` and adaptive solvers step across grid points without stopping (``tstops`` is
    empty). The approximation follows the same polygon through the same grid values as
    :class:`PiecewiseLinearNoise`, only with a smooth speed along each chord; the iterated integrals
    over each cell are the chord's (no Levy area), so for a driftless SDE the random ODE takes the
    same values at grid points, and in general it converges to the Stratonovich solution at the same
    rates (measured: about ``h`` at grid points for scalar noise). The peak speed is
    ``(2q - 1)!/((q - 1)!^2 4^(q-1))`` times the chord's: 2.71 for the default ``smoothness = 4``.

    Smoothness matters to high-order adaptive solvers: with ``smoothness = 2`` dop853 at
    ``rtol = 1e-10`` reached only 1e-8 on geometric Brownian motion (its error estimate assumes more
    derivatives than ``dW`` has across grid points); with 4 it reached 1e-10 at the same cost.

    Parameters
    ----------
    path : BrownianPath
    h : float
        Grid width (last cell shorter if ``h`` does not divide ``t1 - t0``).
    smoothness : int
        Continuity class of ``dW`` (>= 1; default 4).

    Examples
    --------
    >>> path = BrownianPath(0.0, 1.0, shape=(2,), seed=3)
    >>> noise = SmoothLinearNoise(path, 0.125)
    >>> noise.tstops.size, bool(np.allclose(noise.W(0.375), path(0.375)))
    (0, True)
    >>> bool(np.all(noise.dW(0.375) == 0.0))
    True
    """

    def __init__(self, path: BrownianPath, h: float, smoothness: int = 4):
        path = _check_path(path)
        smoothness = _positive_int(smoothness, "smoothness")
        self.path = path
        self._set_span(path.t0, path.t1)
        self.shape = path.shape
        self.h = float(h)
        self.smoothness = smoothness
        self.grid = _frozen(_uniform_grid(path.t0, path.t1, h))
        self.tstops = np.empty(0)
        w = np.asarray(path(self.grid), dtype=np.float64)
        self.values = _frozen(w)
        self.increments = _frozen(np.diff(w, axis=0))
        self._widths = np.diff(self.grid)
        self._grid_list = self.grid.tolist()
        self._width_list = self._widths.tolist()
        q = smoothness + 2
        self._q = q
        self._inv_beta = 1.0 / (math.factorial(q - 1) ** 2 / math.factorial(2 * q - 1))
        self._cache = ConversionCache(increments=self.increments, values=self.values)

    def __repr__(self) -> str:
        return (f"SmoothLinearNoise(path={self.path!r}, h={self.h!r}, "
                f"smoothness={self.smoothness!r})")

    def _cell(self, t):
        return np.clip(np.searchsorted(self.grid, t, side="right") - 1, 0, self.grid.size - 2)

    def _speed(self, x):
        """S'(x) = x^(q-1) (1-x)^(q-1) / B(q, q)."""
        return (x * (1.0 - x)) ** (self._q - 1) * self._inv_beta

    def _locate(self, t: float):
        k = int(self._cell(t))
        hk = self._width_list[k]
        return k, hk, min(max((t - self._grid_list[k]) / hk, 0.0), 1.0)

    def _dW_scalar(self, t, like):
        k, hk, x = self._locate(t)
        return self._cache.get("increments", like)[k] * (self._speed(x) / hk)

    def _W_scalar(self, t, like):
        k, hk, x = self._locate(t)
        S = float(betainc(self._q, self._q, x))
        return self._cache.get("values", like)[k] + self._cache.get("increments", like)[k] * S

    def _x(self, t):
        k = self._cell(t)
        hk = self._widths[k]
        x = np.clip((t - self.grid[k]) / hk, 0.0, 1.0)
        return k, hk, x

    def _expand(self, a):
        return a.reshape(a.shape + (1,) * len(self.shape))

    def _dW_np(self, t):
        k, hk, x = self._x(t)
        return self.increments[k] * self._expand(self._speed(x) / hk)

    def _W_np(self, t):
        k, hk, x = self._x(t)
        return self.values[k] + self.increments[k] * self._expand(betainc(self._q, self._q, x))


def _frozen(a: np.ndarray) -> np.ndarray:
    """``a`` made read-only: the noise's buffers are shared with every value it hands out."""
    a.setflags(write=False)
    return a


def _copy(a: Any):
    """A fresh copy of a row of a cached buffer (NumPy or another array-API namespace)."""
    if isinstance(a, np.ndarray):
        return a.copy()
    return namespace(a).asarray(a, copy=True)


def _positive_int(x: Any, name: str, allow_zero: bool = False) -> int:
    try:
        v = int(x)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be an int; got {x!r}.") from None
    if v != x or v < (0 if allow_zero else 1):
        raise ValueError(f"`{name}` must be a {'non-negative' if allow_zero else 'positive'} int; "
                         f"got {x!r}.")
    return v
