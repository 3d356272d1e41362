"""One explicit Runge-Kutta step in JAX, from the core's tableau (``gqlib.METHODS[name]``).

The coefficients are the core's :class:`~gqlib.integrate._segment.RKCoefficients` (the tableau's
nonzero weights as Python floats) and the weighted sums are the core's
:func:`~gqlib.integrate._segment.combine`, unrolled at trace time: XLA evaluates exactly the
core's arithmetic. Nothing here decides anything: the step size, the landing and acceptance come
from the host (:mod:`gqlib.jax._host`).
"""

from __future__ import annotations

import jax.numpy as jnp

from ..integrate._segment import RKCoefficients, combine
from ..tableaux import ButcherTableau

__all__ = ["RK"]


class RK:
    """A tableau's step, error norm and interpolant for a flat-state field ``F(t, y)``.

    ``F`` takes the time in the adapter's time dtype and a flat state; ``norm`` is the core's
    norm (:func:`gqlib.integrate._norms.resolve_norm`), applied to jax arrays.
    """

    def __init__(self, tab: ButcherTableau, norm, rtol, atol):
        self.tab = tab
        self.coef = RKCoefficients(tab)
        self.norm = norm
        self.rtol, self.atol = rtol, atol
        self.s = tab.stages
        self.fsal = tab.fsal
        self.n_extra = tab.A.shape[0] - tab.stages  # dense-output stages (dop853)
        self.P = tab.P

    def stages(self, F, t0, h, t1, y0, f0):
        """Stages ``K`` (list) and ``y1`` of the step ``t0 -> t1`` of size ``h``."""
        K = [f0]
        A, C = self.coef.A, self.coef.C
        hy = h.astype(y0.dtype)
        for i in range(1, self.s):
            c = C[i]
            ti = t1 if c == 1.0 else t0 + c * h
            yi = y0 + hy * combine(K, A[i]) if A[i] else y0
            K.append(F(ti, yi))
        y1 = y0 + hy * combine(K, self.coef.B)
        return K, y1

    def point(self, K, h, y0, i):
        """Stage ``i``'s point ``y0 + h sum_l A[i, l] K[l]`` (the arithmetic of :meth:`stages`)."""
        A = self.coef.A
        return y0 + h.astype(y0.dtype) * combine(K, A[i]) if A[i] else y0

    def error(self, K, h, y0, y1):
        """The scaled error norm of the step (the core stepper's formula)."""
        scale = self.atol + self.rtol * jnp.maximum(jnp.abs(y0), jnp.abs(y1))
        hy = h.astype(y0.dtype)
        e5 = self.norm((hy * combine(K, self.coef.E)) / scale)
        if self.coef.E_low is not None:  # Hairer's DOP853 combination
            e3 = self.norm((hy * combine(K, self.coef.E_low)) / scale)
            e5 = e5 * e5 / ((e5 * e5 + 0.01 * e3 * e3) ** 0.5 + 1e-300)
        # a non-finite y1 with finite stages would give scale = inf and err = 0: poison it
        return e5 + 0.0 * jnp.sum(y1)

    def dense(self, F, K, t0, h, t1, y0, y1, f1=None):
        """``Q`` (``D x degree``): ``y(t0 + theta (t1 - t0)) = y0 + (t1 - t0) Q @ theta^[1..]``,
        the method's continuous extension or cubic Hermite (the core's ``Segment.Q``), Hermite
        with ``f1 = f(t1, y1)`` (the FSAL stage when there is one). Returns ``Q``; the extra
        evaluations it costs are :attr:`dense_evals`."""
        if self.P is not None:
            K = list(K)
            hy = h.astype(y0.dtype)
            for i in range(self.s, self.s + self.n_extra):
                yi = y0 + hy * combine(K, self.coef.A[i])
                K.append(F(t0 + self.coef.C[i] * h, yi))
            Q = None
            for i in self.coef.P_rows:
                term = K[i][..., None] * jnp.asarray(self.P[i], dtype=y0.dtype)
                Q = term if Q is None else Q + term
            return Q
        if self.fsal:
            f1 = K[self.s - 1]
        hs = (t1 - t0).astype(y0.dtype)
        f0 = K[0]
        delta = (y1 - y0) / hs
        c2 = 3.0 * delta - 2.0 * f0 - f1
        c3 = f0 + f1 - 2.0 * delta
        return jnp.stack([f0, c2, c3], axis=-1)

    @property
    def dense_evals(self) -> int:
        return self.n_extra if self.P is not None else 0

    @property
    def degree(self) -> int:
        return self.P.shape[1] if self.P is not None else 3

    @staticmethod
    def evaluate(y0, hs, Q, theta):
        """``y0 + hs Q @ [theta, theta^2, ...]`` (the core's ``evaluate_dense``)."""
        degree = Q.shape[-1]
        powers = theta ** jnp.arange(1, degree + 1, dtype=theta.dtype)
        return y0 + hs.astype(y0.dtype) * (Q @ powers.astype(y0.dtype))
