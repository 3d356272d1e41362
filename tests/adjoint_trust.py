"""The trust suite's problems and error measure (tests/test_adjoint_trust.py and
validation/adjoint_trust.py): each strategy's gradient error against a reference, beside the
error of the discrete adjoint (= direct backpropagation) at the same tolerance."""

import warnings

import numpy as np
from adjoint_fields import LinearField, LorenzField, LotkaVolterraField, TanhField, VanDerPolField
from scipy.linalg import expm, expm_frechet

import gqlib
from gqlib.adjoint import (
    AutoAdjoint,
    BacksolveAdjoint,
    CheckpointAdjoint,
    CollocationAdjoint,
    GQAdjoint,
    InterpolatedAdjoint,
    gradient,
)
from gqlib.errors import GQLibError, GradientAccuracyWarning


def dissipative(lam, n_out=2, D=20, seed=0):
    """y' = A y, A symmetric with eigenvalues -1 ... -lam; L = sum_i |y(t_i)|^2 on [0, 1]."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((D, D)))
    A = Q @ np.diag(-np.linspace(1.0, lam, D)) @ Q.T
    return LinearField(A), rng.standard_normal(D), np.linspace(0.0, 1.0, n_out)


def linear_reference(field, y0, t):
    """Exact (dL/dy0, dL/dtheta) of L = sum_{i>0} |y(t_i)|^2 (expm, expm_frechet)."""
    A = field.A
    D = len(y0)
    dy0, dA = np.zeros(D), np.zeros((D, D))
    for ti in t[1:]:
        tau = ti - t[0]
        E = expm(A * tau)
        c = 2.0 * E @ y0
        dy0 += E.T @ c
        # d/dA of c^T expm(A tau) y0 = tau * L(A tau, .)^T applied: frechet in each direction
        # via the adjoint identity <c y0^T, L(A tau, E)> = <L(A^T tau, c y0^T), E>
        dA += tau * expm_frechet(A.T * tau, np.outer(c, y0), compute_expm=False)
    return dy0, dA.ravel()


PROBLEMS = {
    # name: (field, y0, t)
    "linear_lam10": lambda: dissipative(10.0),
    "linear_lam40": lambda: dissipative(40.0),
    "linear_lam200": lambda: dissipative(200.0),
    "linear_lam200_11out": lambda: dissipative(200.0, n_out=11),
    "lorenz": lambda: (LorenzField(), np.array([1.0, 1.0, 20.0]), np.linspace(0.0, 3.0, 4)),
    "vdp_mu1": lambda: (VanDerPolField(1.0), np.array([2.0, 0.0]), np.linspace(0.0, 10.0, 21)),
    "vdp_mu5": lambda: (VanDerPolField(5.0), np.array([2.0, 0.0]), np.linspace(0.0, 10.0, 21)),
    "lotka_volterra": lambda: (LotkaVolterraField(), np.array([1.0, 1.0]), np.linspace(0.0, 10.0, 11)),
    "tanh_mlp": lambda: _tanh(),
}
BENIGN = ("lotka_volterra", "tanh_mlp", "vdp_mu1", "linear_lam10")


def _tanh():
    rng = np.random.default_rng(1)
    D = 6
    return (TanhField(rng.standard_normal((D, D)) / np.sqrt(D), 0.1 * rng.standard_normal(D)),
            rng.standard_normal(D), np.linspace(0.0, 2.0, 5))


def strategies(rtol):
    out = {}
    for ck in (True, False):
        tag = "" if ck else " nockpt"
        out["gq" + tag] = GQAdjoint(checkpoints=ck)
        out["gq paper" + tag] = GQAdjoint(checkpoints=ck, nodes="paper")
        out["backsolve" + tag] = BacksolveAdjoint(checkpoints=ck)
        out["seminorm" + tag] = BacksolveAdjoint(checkpoints=ck, seminorm=True)
    out["interpolated"] = InterpolatedAdjoint()
    out["collocation"] = CollocationAdjoint()
    out["checkpoint"] = CheckpointAdjoint()
    out["auto"] = AutoAdjoint()  # the default: a candidate, or the continuous one where stiff
    return out


def loss_grad(sol):
    g = 2.0 * np.asarray(sol.y, dtype=float)
    g[0] = 0.0
    return g


def reference(name):
    field, y0, t = PROBLEMS[name]()
    if isinstance(field, LinearField):
        return linear_reference(field, y0, t)
    sol = gqlib.solve(field, y0, t, method="dopri8", rtol=1e-12, atol=1e-12, dense_output=True)
    g = gradient(field, sol, loss_grad(sol), adjoint=CheckpointAdjoint(), grad_t=False)
    return g.y0, g.params


def rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


def evaluate(name, rtol, names=None, ref=None):
    """{strategy: (error of dL/dtheta, warned, raised)} and the discrete adjoint's error."""
    field, y0, t = PROBLEMS[name]()
    ref_y0, ref_p = reference(name) if ref is None else ref
    sol = gqlib.solve(field, y0, t, rtol=rtol, atol=rtol / 100, dense_output=True)
    gy = loss_grad(sol)
    out = {}
    for label, strategy in strategies(rtol).items():
        if names is not None and label not in names:
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", GradientAccuracyWarning)
            try:
                g = gradient(field, sol, gy, adjoint=strategy, grad_t=False)
                err, raised = rel(g.params, ref_p), False
                drift = g.stats["max_drift"]
            except GQLibError:
                err, raised, drift = float("nan"), True, float("nan")
        warned = [w for w in caught if issubclass(w.category, GradientAccuracyWarning)]
        out[label] = (err, len(warned), raised, drift)
    direct = out["checkpoint"][0] if "checkpoint" in out else None
    return out, direct
