"""Problems with exact solutions, shared by the test suite."""

from __future__ import annotations

import numpy as np


class Problem:
    def __init__(self, name, f, y0, t0, t1, exact):
        self.name, self.f, self.y0, self.t0, self.t1, self.exact = name, f, np.asarray(y0, float), t0, t1, exact


def _nonautonomous_f(t, y):
    # y1' = -t y1^2 / 2   -> y1 = 1 / (1 + t^2 / 4)   (poles at +-2i: a clean asymptotic regime)
    # y2' = y2 cos(t)     -> y2 = exp(sin t)          (a wrong c shows in both components)
    return np.array([-0.5 * t * y[0] ** 2, y[1] * np.cos(t)])


def _nonautonomous_exact(t):
    t = np.asarray(t, dtype=float)
    return np.stack([1.0 / (1.0 + 0.25 * t ** 2), np.exp(np.sin(t))], axis=-1)


NONAUTONOMOUS = Problem("nonautonomous", _nonautonomous_f, [1.0, 1.0], 0.0, 1.0, _nonautonomous_exact)


def _logistic_f(t, y):
    return y * (1.0 - y)


def _logistic_exact(t, y0=0.1):
    t = np.asarray(t, dtype=float)
    return (y0 * np.exp(t) / (1.0 - y0 + y0 * np.exp(t)))[..., None]


LOGISTIC = Problem("logistic", _logistic_f, [0.1], 0.0, 5.0, _logistic_exact)

_A = np.array([[-0.5, 2.0], [-2.0, -0.5]])


def _linear_exact(t, y0=(1.0, 0.0)):
    from scipy.linalg import expm

    t = np.atleast_1d(np.asarray(t, dtype=float))
    out = np.stack([expm(_A * s) @ np.asarray(y0) for s in t])
    return out


LINEAR = Problem("linear", lambda t, y: _A @ y, [1.0, 0.0], 0.0, 3.0, _linear_exact)


def gbm_stratonovich_exact(x0, mu, sigma, t, w):
    """Geometric Brownian motion dX = mu X dt + sigma X o dW: X = x0 exp(mu t + sigma W)."""
    return x0 * np.exp(mu * t + sigma * w)
