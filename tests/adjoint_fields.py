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
