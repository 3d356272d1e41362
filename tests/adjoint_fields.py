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


class LorenzField:
    """Lorenz (1963): x' = s (y - x), y' = x (r - z) - y, z' = x y - b z; theta = (s, r, b)."""

    def __init__(self, s=10.0, r=28.0, b=8.0 / 3.0):
        self.theta = np.array([s, r, b], dtype=float)

    def __call__(self, t, u):
        s, r, b = self.theta
        x, y, z = u
        return np.array([s * (y - x), x * (r - z) - y, x * y - b * z])

    def vjp_y(self, t, u, a):
        s, r, b = self.theta
        x, y, z = u
        return np.array([-s * a[0] + (r - z) * a[1] + y * a[2],
                         s * a[0] - a[1] + x * a[2],
                         -x * a[1] - b * a[2]])

    def vjp_params(self, t, u, a):
        x, y, z = u
        return np.array([(y - x) * a[0], x * a[1], -z * a[2]])


class VanDerPolField:
    """Van der Pol: x' = v, v' = mu (1 - x^2) v - x; theta = (mu,)."""

    def __init__(self, mu=1.0):
        self.theta = np.array([mu], dtype=float)

    def __call__(self, t, u):
        x, v = u
        return np.array([v, self.theta[0] * (1.0 - x * x) * v - x])

    def vjp_y(self, t, u, a):
        x, v = u
        mu = self.theta[0]
        return np.array([(-2.0 * mu * x * v - 1.0) * a[1], a[0] + mu * (1.0 - x * x) * a[1]])

    def vjp_params(self, t, u, a):
        x, v = u
        return np.array([(1.0 - x * x) * v * a[1]])


class LotkaVolterraField:
    """x' = al x - be x y, y' = de x y - ga y; theta = (al, be, de, ga)."""

    def __init__(self, al=1.5, be=1.0, de=1.0, ga=3.0):
        self.theta = np.array([al, be, de, ga], dtype=float)

    def __call__(self, t, u):
        al, be, de, ga = self.theta
        x, y = u
        return np.array([al * x - be * x * y, de * x * y - ga * y])

    def vjp_y(self, t, u, a):
        al, be, de, ga = self.theta
        x, y = u
        return np.array([(al - be * y) * a[0] + de * y * a[1], -be * x * a[0] + (de * x - ga) * a[1]])

    def vjp_params(self, t, u, a):
        x, y = u
        return np.array([x * a[0], -x * y * a[0], x * y * a[1], -y * a[1]])


class RobertsonField:
    """Robertson's kinetics with rates (k1, k2, k3) scaled so that an explicit solver gets
    through: y1' = -k1 y1 + k3 y2 y3, y2' = k1 y1 - k3 y2 y3 - k2 y2^2, y3' = k2 y2^2;
    theta = (k1, k2, k3). Its stiff eigenvalue moves with y2 inside a step."""

    def __init__(self, k1=0.04, k2=3e4, k3=1e2):
        self.theta = np.array([k1, k2, k3], dtype=float)

    def __call__(self, t, y):
        k1, k2, k3 = self.theta
        return np.array([-k1 * y[0] + k3 * y[1] * y[2],
                         k1 * y[0] - k3 * y[1] * y[2] - k2 * y[1] ** 2, k2 * y[1] ** 2])

    def vjp_y(self, t, y, a):
        k1, k2, k3 = self.theta
        J = np.array([[-k1, k3 * y[2], k3 * y[1]],
                      [k1, -k3 * y[2] - 2 * k2 * y[1], -k3 * y[1]],
                      [0.0, 2 * k2 * y[1], 0.0]])
        return J.T @ a

    def vjp_params(self, t, y, a):
        J = np.array([[-y[0], 0.0, y[1] * y[2]], [y[0], -y[1] ** 2, -y[1] * y[2]],
                      [0.0, y[1] ** 2, 0.0]])
        return J.T @ a
