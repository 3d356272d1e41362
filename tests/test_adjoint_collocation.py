"""The collocation adjoint: coefficients, measured orders, counts, torch linearisation, errors."""

import numpy as np
import pytest
from adjoint_fields import LinearField, TanhField

import gqlib
from gqlib.adjoint import FunctionField, gradient
from gqlib.adjoint._collocation import collocation_coefficients
from gqlib.convergence import observed_order
from gqlib.errors import NonFiniteState


@pytest.mark.parametrize("n", range(1, 8))
def test_coefficients_satisfy_the_simplifying_assumptions(n):
    """B(2n) and C(n) (Butcher 1964): order 2n, stage order n."""
    c, b, alpha = collocation_coefficients(n)
    for k in range(1, 2 * n + 1):
        assert abs(np.sum(b * c ** (k - 1)) - 1.0 / k) < 1e-14
    for k in range(1, n + 1):
        np.testing.assert_allclose(alpha @ c ** (k - 1), c ** k / k, rtol=0, atol=1e-13)


def _problem():
    rng = np.random.default_rng(0)
    D = 3
    field = TanhField(rng.standard_normal((D, D)) * 1.2, rng.standard_normal(D) * 0.3)
    y0 = rng.standard_normal(D)
    t = np.array([0.0, 2.0])
    G = np.zeros((2, D))
    G[1] = rng.standard_normal(D)
    # fixed forward steps of 0.5: panels of 0.5 / k align with them, so J(t) is smooth on each
    sol = gqlib.solve(field, y0, t, method="dop853", step_size=0.5, dense_output=True)
    return field, sol, G


@pytest.fixture(scope="module")
def reference():
    field, sol, G = _problem()
    fine = gradient(field, sol, G, adjoint="collocation", nodes=6, step_size=0.05)
    # an independent method on the same interpolated trajectory
    other = gradient(field, sol, G, adjoint="interpolated", rtol=1e-13, atol=1e-15)
    assert np.abs(fine.params - other.params).max() < 1e-8
    assert np.abs(fine.y0 - other.y0).max() < 1e-8
    return field, sol, G, fine


@pytest.mark.parametrize(("nodes", "sweeps", "order", "ks"), [
    (1, 0, 1, (4, 8, 16, 32)),
    (1, 1, 2, (4, 8, 16, 32)),
    (2, 1, 2, (4, 8, 16, 32)),
    (3, 2, 3, (2, 4, 8, 16)),
    (2, 3, 4, (1, 2, 4, 8)),
    (3, 5, 6, (2, 3, 4, 6)),  # from k = 1 the first point is pre-asymptotic (6.16)
])
def test_measured_order_is_min_of_sweeps_plus_one_and_2n(reference, nodes, sweeps, order, ks):
    field, sol, G, fine = reference
    H = [0.5 / k for k in ks]
    err_p, err_y = [], []
    for h in H:
        g = gradient(field, sol, G, adjoint="collocation", nodes=nodes, sweeps=sweeps, step_size=h)
        err_p.append(np.abs(g.params - fine.params).max())
        err_y.append(np.abs(g.y0 - fine.y0).max())
    assert abs(observed_order(H, err_p) - order) < 0.15
    assert abs(observed_order(H, err_y) - order) < 0.15


def test_default_nodes_follow_the_forward_order_and_counts():
    """dopri5 forward (p = 5): 3 nodes, 5 sweeps; one linearisation per node."""
    field, sol, G = _problem()
    sol = gqlib.solve(field, sol.y[0], [0.0, 0.7, 2.0], dense_output=True, rtol=1e-8, atol=1e-10)
    G = np.vstack([G[:1], G[1:], G[1:]])

    class Linearizing(TanhField):
        forward_passes = 0

        def linearize(self, t, y):
            Linearizing.forward_passes += 1
            outer = self

            class Lin:
                def vjp_y(self, a):
                    return outer.vjp_y(t, y, a)

                def vjp(self, a):
                    return outer.vjp_y(t, y, a), outer.vjp_params(t, y, a)
            return Lin()

    lf = Linearizing(field.W, field.b)
    g = gradient(lf, sol, G, adjoint="collocation", grad_t=False)
    s = g.stats
    assert s["n_nodes"] == 3 * s["n_panels"]
    assert s["nfe_f"] == Linearizing.forward_passes == 3 * s["n_panels"]
    assert s["nfe_vjp_y"] == 3 * (5 + 1) * s["n_panels"]
    assert s["nfe_vjp_params"] == 3 * s["n_panels"]
    assert s["state_size"] == 3 and g.t is None
    # every forward step is a panel (cut at 0.7): the intervals hold whole steps
    assert s["n_panels"] == sol.dense.n_steps + 1
    ref = gradient(field, sol, G, adjoint="gq", rtol=1e-11, atol=1e-13)
    assert np.abs(g.params - ref.params).max() < 1e-7


def test_short_output_intervals_are_one_panel_each():
    """Outputs denser than the forward steps: one panel per output interval."""
    field = LinearField(np.array([[-0.2, 0.1], [0.0, -0.1]]))
    t = np.linspace(0.0, 10.0, 101)
    sol = gqlib.solve(field, np.ones(2), t, dense_output=True, rtol=1e-6, atol=1e-8)
    assert sol.dense.n_steps < 30
    G = np.ones((101, 2))
    g = gradient(field, sol, G, adjoint="collocation", nodes=1)
    assert g.stats["n_panels"] == 100
    ref = gradient(field, sol, G, adjoint="gq", rtol=1e-10, atol=1e-12)
    assert np.abs(g.params - ref.params).max() / np.abs(ref.params).max() < 1e-3


def test_torch_linearisation_reuses_one_forward_per_node():
    torch = pytest.importorskip("torch")
    import gqlib.torch as gt

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    calls = []

    class F(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            calls.append(1)
            return self.net(y)

    func = F()
    y0 = torch.randn(5, 2, dtype=torch.float64)
    ts = torch.linspace(0, 1, 6, dtype=torch.float64)
    ys, stats = gt.odeint(func, y0, ts, adjoint="collocation", adjoint_options={"nodes": 2},
                          rtol=1e-10, atol=1e-12, return_stats=True)
    n_fwd = len(calls)
    ys.square().sum().backward()
    b = stats.backward
    assert len(calls) - n_fwd == b["nfe_f"] == 2 * b["n_panels"]  # one call of func per node
    assert b["nfe_vjp_y"] == 2 * 4 * b["n_panels"]
    got = [p.grad.clone() for p in func.parameters()]
    for p in func.parameters():
        p.grad = None
    odeint_ys = gt.odeint(func, y0, ts, rtol=1e-10, atol=1e-12)
    odeint_ys.square().sum().backward()
    for g_, p in zip(got, func.parameters(), strict=True):
        torch.testing.assert_close(g_, p.grad, rtol=1e-6, atol=1e-8)


def test_non_finite_adjoint_raises_with_time():
    field = FunctionField(lambda t, y: -y, lambda t, y, a: a * np.inf,
                          lambda t, y, a: np.array([np.sum(a)]))
    sol = gqlib.solve(field, np.ones(2), [0.0, 0.5, 1.0], dense_output=True)
    with pytest.raises(NonFiniteState, match="collocation") as info, np.errstate(all="ignore"):
        gradient(field, sol, np.ones((3, 2)), adjoint="collocation")
    assert info.value.t == 0.5


@pytest.mark.parametrize(("kwargs", "exc", "match"), [
    (dict(method="dopri5"), ValueError, "takes no `method`"),
    (dict(nodes="paper"), ValueError, "`nodes` must be a positive int"),
    (dict(nodes=0), ValueError, "`nodes` must be a positive int"),
    (dict(sweeps=-1), ValueError, "`sweeps` must be a non-negative int"),
    (dict(seminorm=True), ValueError, "seminorm"),
    (dict(step_size=-0.1), ValueError, "step_size"),
    (dict(grad_t=1), TypeError, "grad_t"),
])
def test_bad_arguments(kwargs, exc, match):
    field = LinearField(-np.eye(2))
    sol = gqlib.solve(field, np.ones(2), [0.0, 1.0], dense_output=True)
    with pytest.raises(exc, match=match):
        gradient(field, sol, np.ones((2, 2)), adjoint="collocation", **kwargs)


def test_needs_dense_output_and_sweeps_only_for_collocation():
    field = LinearField(-np.eye(2))
    sol = gqlib.solve(field, np.ones(2), [0.0, 1.0])
    with pytest.raises(ValueError, match="dense_output=True"):
        gradient(field, sol, np.ones((2, 2)), adjoint="collocation")
    with pytest.raises(ValueError, match="`sweeps` applies"):
        gradient(field, sol, np.ones((2, 2)), adjoint="gq", sweeps=2)


def test_torch_options_validated():
    torch = pytest.importorskip("torch")
    import gqlib.torch as gt

    y0 = torch.ones(2, dtype=torch.float64)
    ts = torch.tensor([0.0, 1.0], dtype=torch.float64)
    k = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)

    def f(t, y):
        return -k * y

    for kw, match in [(dict(adjoint_method="rk4"), "takes no `adjoint_method`"),
                      (dict(adjoint_rtol=1e-6), "takes no `adjoint_rtol`"),
                      (dict(adjoint_options={"gtol": 0.1}), "do not apply"),
                      (dict(adjoint_options={"sweeps": -1}), "sweeps")]:
        with pytest.raises(ValueError, match=match):
            gt.odeint(f, y0, ts, adjoint="collocation", adjoint_params=(k,), **kw)
