"""CheckpointAdjoint: the discrete adjoint of the forward steps.

Core: equals central differences of the discrete solve replayed with its step sequence frozen
(an independent replay of the Runge-Kutta steps and the interpolant written here). Torch: equals
direct backpropagation (``adjoint=None``) to 1e-9 relative in float64.
"""

import numpy as np
import pytest
from adjoint_fields import LorenzField, TanhField

import gqlib
from gqlib.adjoint import CheckpointAdjoint, gradient


def replay(field, y0, t_out, ck_t, tab):
    """The forward's discrete solution at ``t_out`` on the frozen steps ``ck_t``."""
    A, B, C, P = tab.A, tab.B, tab.C, tab.P
    out = [np.array(y0, dtype=float)]
    y = np.array(y0, dtype=float)
    j = 1
    for k in range(len(ck_t) - 1):
        t0, t1 = ck_t[k], ck_t[k + 1]
        h = t1 - t0
        n_st = A.shape[0] if P is not None else tab.stages
        K = []
        for i in range(n_st):
            Y = y + h * sum((A[i, l] * K[l] for l in range(i) if A[i, l] != 0), np.zeros_like(y))
            ti = t1 if (C[i] == 1.0 and i < tab.stages) else t0 + C[i] * h
            K.append(field(ti, Y))
        y1 = y + h * sum(B[i] * K[i] for i in range(tab.stages))
        while j < len(t_out) and (t_out[j] - t1) * np.sign(h) < 0:
            th = (t_out[j] - t0) / h
            if P is not None:
                Q = sum(np.outer(K[i], P[i]) for i in range(P.shape[0]))
                out.append(y + h * Q @ (th ** np.arange(1, P.shape[1] + 1)))
            else:
                f0, f1 = K[0], field(t1, y1)
                out.append(y + h * f0 * (th - 2 * th**2 + th**3) + h * f1 * (th**3 - th**2)
                           + (y1 - y) * (3 * th**2 - 2 * th**3))
            j += 1
        if j < len(t_out) and t_out[j] == t1:
            out.append(y1)
            j += 1
        y = y1
    return np.array(out)


@pytest.mark.parametrize("method", ["dopri5", "fehlberg2", "dop853", "bosh3"])
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_core_equals_central_differences_of_the_frozen_discrete_solve(method, direction):
    rng = np.random.default_rng(7)
    D = 4
    field = TanhField(rng.standard_normal((D, D)) / 2, 0.1 * rng.standard_normal(D))
    y0 = rng.standard_normal(D)
    t = direction * np.array([0.0, 0.37, 1.0, 1.6])
    sol = gqlib.solve(field, y0, t, method=method, rtol=1e-4, atol=1e-6, checkpoints=True)
    c = rng.standard_normal(sol.y.shape)
    g = gradient(field, sol, c, adjoint=CheckpointAdjoint())
    tab = gqlib.METHODS[method]
    ck_t = sol.checkpoints.t
    np.testing.assert_allclose(replay(field, y0, t, ck_t, tab), sol.y, rtol=1e-12, atol=1e-12)

    def loss(theta, y_init):
        return float(np.sum(c * replay(field.with_theta(theta), y_init, t, ck_t, tab)))

    eps = 1e-6
    theta = field.theta
    fd_p = np.array([(loss(theta + eps * e, y0) - loss(theta - eps * e, y0)) / (2 * eps)
                     for e in np.eye(theta.size)])
    fd_y = np.array([(loss(theta, y0 + eps * e) - loss(theta, y0 - eps * e)) / (2 * eps)
                     for e in np.eye(D)])
    assert np.linalg.norm(g.params - fd_p) / np.linalg.norm(fd_p) < 1e-7
    assert np.linalg.norm(g.y0 - fd_y) / np.linalg.norm(fd_y) < 1e-7
    assert g.stats["n_steps"] == len(ck_t) - 1


def test_core_tstops_use_the_forward_one_sided_times():
    """A field that jumps at a tstop: the discrete adjoint evaluates where the forward did."""
    field = LorenzField()
    y0 = np.array([1.0, 1.0, 20.0])
    t = np.array([0.0, 0.5, 1.0])
    sol = gqlib.solve(field, y0, t, rtol=1e-8, atol=1e-10, tstops=[0.3, 0.71], dense_output=True)
    g = gradient(field, sol, np.ones_like(sol.y), adjoint="checkpoint")
    ref = gradient(field, sol, np.ones_like(sol.y), adjoint="interpolated", rtol=1e-10,
                   atol=1e-12)
    assert np.linalg.norm(g.params - ref.params) / np.linalg.norm(ref.params) < 1e-5


torch = pytest.importorskip("torch")


def _mlp(seed=0, D=3, W=16):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(D, W), torch.nn.Tanh(),
                               torch.nn.Linear(W, D)).double()


class _Lorenz(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor([10.0, 28.0, 8.0 / 3.0], dtype=torch.float64))

    def forward(self, t, u):
        s, r, b = self.theta
        x, y, z = u[..., 0], u[..., 1], u[..., 2]
        return torch.stack([s * (y - x), x * (r - z) - y, x * y - b * z], dim=-1)


class _Jump(torch.nn.Module):
    """A field with a jump in t at 0.4 (given to the solver as jump_t)."""

    def __init__(self):
        super().__init__()
        self.net = _mlp(1)

    def forward(self, t, y):
        return self.net(y) * (1.0 + (t > 0.4).double())


def _grads(module, y0, t, adjoint, options=None):
    y0 = y0.clone().requires_grad_(True)
    t = t.clone().requires_grad_(True)
    module.zero_grad()
    from gqlib.torch import odeint

    ys = odeint(lambda tt, y: module(tt, y) if not isinstance(module, torch.nn.Sequential)
                else module(y), y0, t, rtol=1e-7, atol=1e-9, adjoint=adjoint, options=options,
                adjoint_params=tuple(module.parameters()) if adjoint else None)
    (ys ** 2).sum().backward()
    return torch.cat([y0.grad.reshape(-1), t.grad.reshape(-1)]
                     + [p.grad.reshape(-1) for p in module.parameters()])


@pytest.mark.parametrize("case", ["mlp", "lorenz", "jump"])
def test_torch_equals_direct_backprop(case):
    t = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
    if case == "mlp":
        module, y0, opts = _mlp(), torch.tensor([[0.5, -1.0, 0.3], [1.0, 0.2, -0.4]],
                                                dtype=torch.float64), None
    elif case == "lorenz":
        module, y0, opts = _Lorenz(), torch.tensor([1.0, 1.0, 20.0], dtype=torch.float64), None
    else:
        module, y0, opts = _Jump(), torch.tensor([0.5, -1.0, 0.3], dtype=torch.float64), \
            {"jump_t": torch.tensor([0.4], dtype=torch.float64)}
    direct = _grads(module, y0, t, None, opts)
    ckpt = _grads(module, y0, t, "checkpoint", opts)
    assert torch.linalg.norm(ckpt - direct) / torch.linalg.norm(direct) < 1e-9


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "dop853", "dopri8", "bosh3", "fehlberg2",
                                    "adaptive_heun", "rk4", "euler"])
@pytest.mark.parametrize("reverse", [False, True])
def test_torch_every_method_equals_direct_backprop(method, reverse):
    """The fused step pullback (one autograd pass per recomputed step) on every kind of step:
    P interpolant with extra stages, Hermite with and without FSAL, fixed steps; outputs
    interpolated inside steps; both directions."""
    t = torch.tensor([0.0, 0.13, 0.5, 0.61, 1.0], dtype=torch.float64)
    if reverse:
        t = t.flip(0)
    module = _mlp(3)
    y0 = torch.tensor([[0.5, -1.0, 0.3]], dtype=torch.float64)
    opts = {"step_size": 0.05} if method in ("rk4", "euler") else None
    direct = _grads(module, y0, t, None, opts)
    ckpt = _grads(module, y0, t, "checkpoint", opts)
    assert torch.linalg.norm(ckpt - direct) / torch.linalg.norm(direct) < 1e-9


@pytest.mark.parametrize("method, rtol, n_out", [("dop853", 1e-4, 2), ("dop853", 1e-8, 2),
                                                 ("dopri8", 1e-5, 11)])
def test_recomputed_stiff_steps_are_the_forwards_to_the_bit(method, rtol, n_out):
    """y' = A y, eigenvalues -1 ... -200: the stepper's h and t1 - t0 differ by a float spacing
    of t, and on a step at the stability boundary 12 stages amplified that to 1150 round-offs at
    the step's end: NondeterministicField on a deterministic field (17 of 108 solves of
    dop853/dopri8, rtol 1e-3 ... 1e-8). The checkpoints now keep the stepper's h: every
    recomputed step ends exactly where the forward's did."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from adjoint_trust import dissipative, loss_grad

    field, y0, t = dissipative(200.0, n_out=n_out)
    sol = gqlib.solve(field, y0, t, method=method, rtol=rtol, atol=rtol / 100, checkpoints=True)
    assert np.any(sol.checkpoints.h != np.diff(sol.checkpoints.t))  # the case this is about
    g = gradient(field, sol, loss_grad(sol), adjoint=CheckpointAdjoint(), grad_t=False)
    assert np.all(np.isfinite(g.params))
    from gqlib.adjoint._checkpoint import _DiscretePass
    from gqlib.adjoint._field import CountedField
    run = _DiscretePass(CountedField(field), sol, loss_grad(sol), np, t, grad_t=False)
    for k in range(len(sol.checkpoints) - 1):
        y1 = run.step_forward(field, k, sol.checkpoints.y[k], [])[0]
        assert np.array_equal(y1, sol.checkpoints.y[k + 1]), k
