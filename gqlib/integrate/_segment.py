"""One accepted step and its local interpolant, and the tableau coefficients the stepper uses.

A :class:`Segment` holds what its interpolant needs (stages, tableau, the counted vector field)
and nothing of the stepper that made it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .._backend import constant_like, namespace
from ..interpolate import evaluate_dense
from ..tableaux import ButcherTableau

__all__ = ["Segment", "RKCoefficients", "CountedRHS", "combine"]


class CountedRHS:
    """``f(t, y)`` counting its evaluations in ``stats["nfe"]``, its output's shape and dtype
    checked on every call against the state's (host metadata, no sync; the state's shape and
    dtype are read once, on the first call) unless ``check`` is False."""

    __slots__ = ("fun", "stats", "check", "_shape", "_dtype")

    def __init__(self, fun: Callable, stats: dict, check: bool = True):
        self.fun, self.stats, self.check = fun, stats, check
        self._shape = self._dtype = None

    def __call__(self, t: float, y):
        self.stats["nfe"] += 1
        out = self.fun(t, y)
        if self.check:
            try:  # `is` on the dtype first: dtypes are (nearly always) singletons
                bad = out.shape != self._shape or out.dtype is not self._dtype
            except AttributeError:
                bad = True
            if bad:
                if self._shape is None or y.shape != self._shape or y.dtype != self._dtype:
                    self._shape, self._dtype = y.shape, y.dtype
                if getattr(out, "shape", None) != y.shape or getattr(out, "dtype", None) != y.dtype:
                    _bad_output(out, y, t)
        return out

    def at_state(self, t: float, y):
        """A call at the solver's own state (a step's first stage, f(t1, y1)), which it reuses:
        one that writes into ``y`` raises (NumPy: ``y`` read-only for the call; torch: its
        in-place counter). Stage inputs are temporaries and are not guarded."""
        if not self.check:
            return self(t, y)
        if isinstance(y, np.ndarray) and y.flags.writeable:
            y.flags.writeable = False
            try:
                return self(t, y)
            except ValueError as err:
                if "read-only" in str(err):
                    _modified_in_place(t, err)
                raise
            finally:
                y.flags.writeable = True
        version = getattr(y, "_version", None)  # torch's in-place counter
        out = self(t, y)
        if version is not None and y._version != version:
            _modified_in_place(t)
        return out


def _modified_in_place(t: float, cause=None):
    raise ValueError(
        f"`f(t, y)` modified its input `y` in place at t = {t!r}: `y` is the solver's own state, "
        "which would change under it and give a wrong solution. Use out-of-place "
        "operations (`y = y * 2`, not `y *= 2`)") from cause


def _bad_output(out, y, t: float):
    if getattr(out, "shape", None) != y.shape:
        raise ValueError(f"`f(t, y)` returned shape {tuple(getattr(out, 'shape', ()))} at "
                         f"t = {t!r}; expected the state's shape {tuple(y.shape)}")
    raise TypeError(f"`f(t, y)` returned dtype {getattr(out, 'dtype', None)} at t = {t!r}; "
                    f"expected the state's dtype {y.dtype}")


def combine(K, coeffs):
    """``sum_j w_j K_j`` over ``coeffs = [(j, w_j), ...]``; the accumulator is fresh, so it is
    updated in place where the array type allows (torch ``add_``, autograd-safe; NumPy ``+=``)."""
    if not coeffs:
        return 0.0 * K[0]
    (j0, w0), rest = coeffs[0], coeffs[1:]
    acc = w0 * K[j0]
    if not rest:
        return acc
    if hasattr(acc, "add_"):
        for j, w in rest:
            acc.add_(K[j], alpha=w)
    elif isinstance(acc, np.ndarray):
        for j, w in rest:
            acc += w * K[j]
    else:
        for j, w in rest:
            acc = acc + w * K[j]
    return acc


class RKCoefficients:
    """A tableau's nonzero weights as Python floats, row by row (``[(j, w_j), ...]``)."""

    def __init__(self, tab: ButcherTableau):
        def row(values):
            return [(j, float(w)) for j, w in enumerate(values) if w != 0.0]

        self.tab = tab
        self.A = [row(tab.A[i, :i]) for i in range(tab.A.shape[0])]  # extra dense stages too
        self.C = [float(c) for c in tab.C]
        self.B = row(tab.B)
        self.E = None if tab.E is None else row(tab.E)
        self.E_low = None if tab.E_low is None else row(tab.E_low)
        self.P_rows = [] if tab.P is None else [i for i in range(tab.P.shape[0]) if np.any(tab.P[i])]


class Segment:
    """The accepted step ``[t0, t1]`` and its local interpolant.

    ``segment(tq)`` evaluates the continuous extension declared by the method (``Q = K.T @ P``),
    or cubic Hermite from ``y0, y1, f0, f1`` when the method declares none. Coefficients are
    built on first use, so extra dense-output stages (dop853) and Hermite's ``f(t1, y1)`` are
    evaluated only if an interpolant is asked for.
    """

    __slots__ = ("t0", "t1", "h", "h_step", "y0", "y1", "_K", "_coef", "_rhs", "end_is_stop",
                 "_Q", "f1")

    def __init__(self, t0, t1, y0, y1, K, coef: RKCoefficients, rhs: CountedRHS,
                 end_is_stop: bool, f1=None, h_step=None):
        self.t0, self.t1, self.h = t0, t1, t1 - t0
        # the stepper's h, which its stages used (t0 + h_step rounds to t1)
        self.h_step = self.h if h_step is None else h_step
        self.y0, self.y1 = y0, y1
        self._K, self._coef, self._rhs = K, coef, rhs
        self.end_is_stop = end_is_stop
        self._Q = None
        self.f1 = f1  # f(t1, y1) from inside the step, once known (FSAL or Hermite)

    @property
    def K(self) -> list:
        """The step's stage derivatives ``f(t0 + c_j h, Y_j)`` (dop853's extra dense-output stages
        appended once the interpolant is built)."""
        return self._K

    @property
    def Q(self):
        """Coefficients ``Q`` with ``y(t0 + theta h) = y0 + h * sum_p Q[..., p] theta^(p+1)``."""
        if self._Q is None:
            self._Q = self._dense_coefficients()
        return self._Q

    def __call__(self, tq):
        """Interpolate at the float time(s) ``tq`` (scalar -> state shape; 1-D -> (len, *shape))."""
        tq_arr = np.asarray(tq, dtype=np.float64)
        theta = (tq_arr - self.t0) / self.h
        return evaluate_dense(self.y0, self.h, self.Q, theta)

    def _dense_coefficients(self):
        tab = self._coef.tab
        K = self._K
        if tab.P is not None:
            if len(K) < tab.P.shape[0]:
                K = self._extra_stages()
            P = constant_like(f"P:{tab.name}", tab.P, self.y0)  # (stages, degree), on the device
            # row by row in stage order (the numba driver sums in the same order: parity)
            Q = None
            for i in self._coef.P_rows:
                term = K[i][..., None] * P[i]
                Q = term if Q is None else Q + term
            return Q
        if self.f1 is None:  # one-sided from inside when t1 is a tstop
            direction = 1.0 if self.h > 0 else -1.0
            t_eval = math.nextafter(self.t1, -direction * math.inf) if self.end_is_stop else self.t1
            self.f1 = self._rhs.at_state(t_eval, self.y1)
        f0, f1, h = K[0], self.f1, self.h
        delta = (self.y1 - self.y0) / h
        c2 = 3.0 * delta - 2.0 * f0 - f1
        c3 = f0 + f1 - 2.0 * delta
        return namespace(self.y0).stack([f0, c2, c3], axis=-1)

    def _extra_stages(self):
        tab, K, h = self._coef.tab, list(self._K), self.h
        for i in range(tab.stages, tab.A.shape[0]):
            yi = self.y0 + h * combine(K, self._coef.A[i])
            K.append(self._rhs(self.t0 + self._coef.C[i] * h, yi))
        self._K = K
        return K
