"""Vector fields with hand-written VJPs for the adjoint tests (NumPy, no framework)."""

import numpy as np


class LinearField:
    """y' = A y, theta = A.ravel()."""

    def __init__(self, A):
        self.A = np.asarray(A, dtype=float)

    def __call__(self, t, y):
        return self.A @ y

    def vjp_y(self, t, y, a):
        return self.A.T @ a

    def vjp_params(self, t, y, a):
        return np.outer(a, y).ravel()


class TanhField:
    """y' = (1 + c sin(omega t)) tanh(W y + b) - gamma y, theta = (W, b); batch-friendly (y: (D,) )."""

    def __init__(self, W, b, c=0.5, omega=2.0, gamma=0.1):
        self.W, self.b, self.c, self.omega, self.gamma = np.asarray(W), np.asarray(b), c, omega, gamma

    @property
    def theta(self):
        return np.concatenate([self.W.ravel(), self.b.ravel()])

    def with_theta(self, theta):
        D = self.b.size
        return TanhField(theta[: D * D].reshape(D, D), theta[D * D:], self.c, self.omega, self.gamma)

    def _s(self, t):
        return 1.0 + self.c * np.sin(self.omega * t)

    def __call__(self, t, y):
        return self._s(t) * np.tanh(self.W @ y + self.b) - self.gamma * y

    def _inner(self, t, y, a):
        u = np.tanh(self.W @ y + self.b)
        return self._s(t) * a * (1.0 - u * u)  # a^T d/d(pre-activation)

    def vjp_y(self, t, y, a):
        return self.W.T @ self._inner(t, y, a) - self.gamma * a

    def vjp_params(self, t, y, a):
        r = self._inner(t, y, a)
        return np.concatenate([np.outer(r, y).ravel(), r])

    def vjp_t(self, t, y, a):
        return self.c * self.omega * np.cos(self.omega * t) * np.sum(a * np.tanh(self.W @ y + self.b))


class KinkField:
    """y' = -rate(t) k y with rate(t) = 1 + 2 max(t - s, 0) (continuous, kink at s), theta = k;
    records the times of its y-VJPs in ``calls``. ``exact_params(y0)``: dL/dk for
    L = sum(y(1)) from y(0) = y0, i.e. -R y0 exp(-k R) with R = int_0^1 rate = 1 + (1 - s)^2."""

    def __init__(self, s=0.45, k=(0.7, -0.3)):
        self.s, self.k = s, np.asarray(k, dtype=float)
        self.calls = []

    def rate(self, t):
        return 1.0 + 2.0 * max(t - self.s, 0.0)

    def __call__(self, t, y):
        return -self.rate(t) * self.k * y

    def vjp_y(self, t, y, a):
        self.calls.append(t)
        return -self.rate(t) * self.k * a

    def vjp_params(self, t, y, a):
        return -self.rate(t) * a * y

    def exact_params(self, y0):
        R = 1.0 + (1.0 - self.s) ** 2
        return -R * np.asarray(y0) * np.exp(-self.k * R)
