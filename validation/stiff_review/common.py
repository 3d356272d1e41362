"""Shared fields and helpers for the stiffness-check review (numpy core)."""
import warnings

import numpy as np

import gqlib
from gqlib.adjoint import gradient
from gqlib.errors import GradientAccuracyWarning


class JacField:
    """y' = f(t, y, p) with analytic Jacobians Jy(t, y, p) (D x D) and Jp(t, y, p) (D x P)."""
    def __init__(self, f, Jy, Jp, p):
        self.f_, self.Jy, self.Jp, self.p = f, Jy, Jp, np.asarray(p, float)
        self.n_params = self.p.size
    def __call__(self, t, y):
        return self.f_(t, y, self.p)
    def vjp_y(self, t, y, a):
        return self.Jy(t, y, self.p).T @ a
    def vjp_params(self, t, y, a):
        return self.Jp(t, y, self.p).T @ a


def robertson(k=(0.04, 3e4, 1e2)):
    # scaled Robertson: rates reduced so an explicit solver gets through
    def f(t, y, p):
        k1, k2, k3 = p
        return np.array([-k1*y[0] + k3*y[1]*y[2], k1*y[0] - k3*y[1]*y[2] - k2*y[1]**2, k2*y[1]**2])
    def Jy(t, y, p):
        k1, k2, k3 = p
        return np.array([[-k1, k3*y[2], k3*y[1]], [k1, -k3*y[2] - 2*k2*y[1], -k3*y[1]],
                         [0, 2*k2*y[1], 0]])
    def Jp(t, y, p):
        return np.array([[-y[0], 0, y[1]*y[2]], [y[0], -y[1]**2, -y[1]*y[2]], [0, y[1]**2, 0]])
    return JacField(f, Jy, Jp, k), np.array([1.0, 0.0, 0.0]), np.linspace(0, 10.0, 6)


def forced_linear(lam=1000.0):
    # y' = A y + b sin(t): A with eigenvalues -1, -lam, mixed; params: b
    Q = np.array([[1.0, 1.0], [0.0, 1.0]])
    A = Q @ np.diag([-1.0, -lam]) @ np.linalg.inv(Q)
    def f(t, y, p):
        return A @ y + p * np.sin(t)
    def Jy(t, y, p):
        return A
    def Jp(t, y, p):
        return np.eye(2) * np.sin(t)
    return JacField(f, Jy, Jp, [1.0, 2.0]), np.array([1.0, 1.0]), np.linspace(0, 5.0, 6)


def oregonator(s=10.0, w=0.161, q=8.375e-6):
    def f(t, y, p):
        s, w, q = p
        return np.array([s*(y[1] - y[0]*y[1] + y[0] - q*y[0]**2), (-y[1] - y[0]*y[1] + y[2])/s,
                         w*(y[0] - y[2])])
    def Jy(t, y, p):
        s, w, q = p
        return np.array([[s*(-y[1] + 1 - 2*q*y[0]), s*(1 - y[0]), 0],
                         [-y[1]/s, (-1 - y[0])/s, 1/s], [w, 0, -w]])
    def Jp(t, y, p):
        s, w, q = p
        return np.array([[y[1] - y[0]*y[1] + y[0] - q*y[0]**2, 0, -s*y[0]**2],
                         [-(-y[1] - y[0]*y[1] + y[2])/s**2, 0, 0], [0, y[0] - y[2], 0]])
    return JacField(f, Jy, Jp, [s, w, q]), np.array([1.0, 2.0, 3.0]), np.linspace(0, 10.0, 6)


def vdp(mu=50.0):
    def f(t, y, p):
        return np.array([y[1], p[0]*(1 - y[0]**2)*y[1] - y[0]])
    def Jy(t, y, p):
        return np.array([[0, 1], [-2*p[0]*y[0]*y[1] - 1, p[0]*(1 - y[0]**2)]])
    def Jp(t, y, p):
        return np.array([[0.0], [(1 - y[0]**2)*y[1]]])
    return JacField(f, Jy, Jp, [mu]), np.array([2.0, 0.0]), np.linspace(0, 5.0, 6)


def linear(A, y0, t):
    A = np.asarray(A, float)
    D = A.shape[0]
    def f(t, y, p):
        return p.reshape(D, D) @ y
    def Jy(t, y, p):
        return p.reshape(D, D)
    def Jp(t, y, p):
        return np.kron(np.eye(D), y[None, :])
    return JacField(f, Jy, Jp, A.ravel()), np.asarray(y0, float), np.asarray(t, float)


def loss_grad(ys):
    g = 2.0 * np.asarray(ys, float)
    g[0] = 0.0
    return g


def reference(field, y0, t, rtol=1e-12):
    sol = gqlib.solve(field, y0, t, method="dop853", rtol=rtol, atol=rtol, dense_output=True,
                      max_steps=2_000_000)
    g = gradient(field, sol, loss_grad(sol.y), adjoint="collocation", grad_t=False)
    return np.concatenate([np.ravel(g.y0), np.ravel(g.params)])


def run(field, y0, t, adjoint=None, **opts):
    """-> (grad vector, stats, warned) for the default (or given) strategy."""
    if adjoint is None:
        strat = gqlib.adjoint.AutoAdjoint()
        rec = strat.record_for(field.n_params, y0.size)
        opts.setdefault("dense_output" if rec == "dense" else "checkpoints", True)
    else:
        opts.setdefault("checkpoints", True)
        opts.setdefault("dense_output", True)
    opts.setdefault("max_steps", 2_000_000)
    sol = gqlib.solve(field, y0, t, **opts)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = gradient(field, sol, loss_grad(sol.y), adjoint=adjoint, grad_t=False)
    warned = [str(w.message)[:60] for w in caught if issubclass(w.category, GradientAccuracyWarning)]
    return np.concatenate([np.ravel(g.y0), np.ravel(g.params)]), g.stats, warned, sol


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
