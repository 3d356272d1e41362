"""The collocation adjoint: coefficients, measured orders, counts, torch linearisation, errors."""

import numpy as np
import pytest
from adjoint_fields import KinkField, LinearField, TanhField

import gqlib
from gqlib.adjoint import FunctionField, LinearizationUnavailable, gradient
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
    fine = gradient(field, sol, G, adjoint="collocation", nodes=6, max_panel=0.05)
    # an independent method on the same interpolated trajectory
    # (method given: the backward is adaptive, not the forward's inherited fixed step)
    other = gradient(field, sol, G, adjoint="interpolated", method="dop853", rtol=1e-13,
                     atol=1e-15)
    assert np.abs(fine.params - other.params).max() < 1e-10
    assert np.abs(fine.y0 - other.y0).max() < 1e-10
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
        g = gradient(field, sol, G, adjoint="collocation", nodes=nodes, sweeps=sweeps, max_panel=h)
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
    # one panel per interval, except where an interval overlaps a forward step shorter than
    # itself (the short first steps of Hairer's initial step): cut there
    short = np.sum(sol.dense.h < 0.1)
    assert 100 <= g.stats["n_panels"] <= 100 + short
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
    assert len(calls) - n_fwd - b["nfe_check"] == b["nfe_f"] == 2 * b["n_panels"]  # one call of func per node
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
    (dict(method="dopri5"), TypeError, r"\(CollocationAdjoint\) takes no \['method'\]"),
    (dict(nodes="paper"), ValueError, "`nodes` must be an int >= 1"),
    (dict(nodes=0), ValueError, "`nodes` must be an int >= 1"),
    (dict(nodes=True), ValueError, "`nodes` must be an int >= 1"),
    (dict(sweeps=-1), ValueError, "`sweeps` must be an int >= 0"),
    (dict(sweeps=1.0), ValueError, "`sweeps` must be an int >= 0"),
    (dict(seminorm=True), TypeError, r"\(CollocationAdjoint\) takes no \['seminorm'\]"),
    (dict(max_panel=-0.1), ValueError, "`max_panel` must be positive"),
    (dict(max_panel=0.0), ValueError, "`max_panel` must be positive"),
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
    with pytest.raises(ValueError, match="CollocationAdjoint reads y from the forward dense "
                                         "output: solve with `dense_output=True`"):
        gradient(field, sol, np.ones((2, 2)), adjoint="collocation")
    with pytest.raises(ValueError, match="dense_output=True"):  # checkpoints are not enough
        gradient(field, gqlib.solve(field, np.ones(2), [0.0, 1.0], checkpoints=True),
                 np.ones((2, 2)), adjoint="collocation")
    for adjoint in ("gq", "backsolve", "interpolated", "checkpoint"):
        with pytest.raises(TypeError, match=r"takes no \['sweeps'\]"):
            gradient(field, sol, np.ones((2, 2)), adjoint=adjoint, sweeps=2)


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
                      (dict(adjoint_options={"gtol": 0.1}),
                       r"adjoint_options: adjoint='collocation' \(CollocationAdjoint\) takes no "
                       r"\['gtol'\]"),
                      (dict(adjoint_options={"step_size": 0.1}), r"takes no \['step_size'\]"),
                      (dict(adjoint_options={"sweeps": -1}), "sweeps")]:
        with pytest.raises(ValueError, match=match):
            gt.odeint(f, y0, ts, adjoint="collocation", adjoint_params=(k,), **kw)


@pytest.mark.parametrize("n", [2, 5, 8, 12])
def test_coefficients_against_mpmath(n):
    """alpha_ij = integral_0^{c_i} l_j, with nodes and integrals at 50 digits."""
    import mpmath

    with mpmath.workdps(50):
        start = np.polynomial.legendre.leggauss(n)[0]  # refined by Newton at 50 digits
        cs = [(mpmath.findroot(lambda x: mpmath.legendre(n, x), float(x0)) + 1) / 2
              for x0 in start]
        alpha = np.empty((n, n))
        for j in range(n):
            def lj(s, j=j):
                out = mpmath.mpf(1)
                for m in range(n):
                    if m != j:
                        out *= (s - cs[m]) / (cs[j] - cs[m])
                return out
            for i in range(n):
                alpha[i, j] = float(mpmath.quad(lj, [0, cs[i]]))
    c, _, got = collocation_coefficients(n)
    np.testing.assert_allclose(c, [float(x) for x in cs], rtol=0, atol=2e-16)
    np.testing.assert_allclose(got, alpha, rtol=0, atol=1e-14)


@pytest.mark.parametrize(("nodes", "sweeps", "order", "ks"), [
    (1, 1, 2, (4, 8, 16, 32)),
    (2, 3, 4, (1, 2, 4, 8)),
])
def test_measured_order_with_decreasing_time(nodes, sweeps, order, ks):
    rng = np.random.default_rng(0)
    D = 3
    field = TanhField(rng.standard_normal((D, D)) * 1.2, rng.standard_normal(D) * 0.3)
    t = np.array([0.0, -2.0])
    G = np.zeros((2, D))
    G[1] = rng.standard_normal(D)
    sol = gqlib.solve(field, rng.standard_normal(D), t, method="dop853", step_size=0.5,
                      dense_output=True)
    fine = gradient(field, sol, G, adjoint="collocation", nodes=6, max_panel=0.05)
    # (method given: the backward is adaptive, not the forward's inherited fixed step)
    other = gradient(field, sol, G, adjoint="interpolated", method="dop853", rtol=1e-13,
                     atol=1e-15)
    assert np.abs(fine.params - other.params).max() < 1e-10
    H = [0.5 / k for k in ks]
    err = [np.abs(gradient(field, sol, G, adjoint="collocation", nodes=nodes, sweeps=sweeps,
                           max_panel=h).params - fine.params).max() for h in H]
    assert abs(observed_order(H, err) - order) < 0.15


def test_stiff_problem_at_the_forward_stability_limit():
    """dopri5 steps limited by stability (|h lambda| near 3.3), outputs 1.5 steps apart: the
    panels stay within forward steps, where the default (3 nodes, 5 sweeps) is stable."""
    lam = np.array([100.0, 1.0])
    field = FunctionField(lambda t, y: -lam * y, lambda t, y, a: -lam * a,
                          lambda t, y, a: -a * y)
    y0 = np.ones(2)
    probe = gqlib.solve(field, y0, [0.0, 3.0], rtol=1e-3, atol=1e-6)
    h = 3.0 / probe.stats["n_accepted"]
    assert 2.0 < h * lam[0] < 3.5  # the solve is stability-limited
    t = np.arange(0.0, 3.0, 1.5 * h)
    sol = gqlib.solve(field, y0, t, rtol=1e-3, atol=1e-6, dense_output=True)
    G = np.ones((len(t), 2))
    exact_y0 = np.sum(np.exp(-np.outer(t, lam)), axis=0)
    exact_lam = -np.sum(t[:, None] * np.exp(-np.outer(t, lam)), axis=0)

    def errors(**kw):
        g = gradient(field, sol, G, adjoint="collocation", **kw)
        return (np.abs(g.y0 - exact_y0).max() / np.abs(exact_y0).max(),
                np.abs(g.params - exact_lam).max() / np.abs(exact_lam).max())

    assert max(errors()) < 1e-5                       # measured 6e-7
    # 1 node, 1 sweep (stable for |H lambda| <= 2) on these panels was unstable (error > 1);
    # the sweeps' contraction test now halves them (2nd order: 1e-3 here), as max_panel does
    assert max(errors(nodes=1)) < 5e-3
    assert gradient(field, sol, G, adjoint="collocation", nodes=1).stats["n_rejected"] > 0
    assert max(errors(nodes=1, max_panel=0.5 * h)) < 5e-3


def test_tstop_inside_a_short_output_interval_cuts_the_panel():
    field = KinkField()
    s, calls = field.s, field.calls
    y0 = np.array([1.0, 2.0])
    t = np.array([0.0, 0.4, 0.5, 1.0])
    G = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    sol = gqlib.solve(field, y0, t, tstops=[s], rtol=1e-4, atol=1e-6, dense_output=True)
    assert sol.dense.n_steps < 10  # steps much longer than the interval [0.4, 0.5]
    g = gradient(field, sol, G, adjoint="collocation", nodes=2)  # 4th order, panels cut at s
    assert sum(0.4 < x < s for x in calls) >= 2 and sum(s < x < 0.5 for x in calls) >= 2
    assert s not in calls
    fine = gradient(field, sol, G, adjoint="collocation", nodes=4, max_panel=0.01)
    exact = field.exact_params(y0)
    np.testing.assert_allclose(fine.params, exact, rtol=1e-4)
    np.testing.assert_allclose(g.params, exact, rtol=1e-3)


def test_landing_steps_two_per_interval_make_two_panels():
    field = LinearField(np.array([[-0.5, 0.2], [0.1, -0.3]]))
    t = np.linspace(0.0, 2.0, 11)  # intervals of 0.2 = two rk4 steps
    sol = gqlib.solve(field, np.ones(2), t, method="rk4", step_size=0.1, dense_output=True)
    g = gradient(field, sol, np.ones((11, 2)), adjoint="collocation")
    assert g.stats["n_panels"] == 20 and g.stats["n_nodes"] == 2 * 20  # rk4: ceil(4 / 2) nodes


def test_field_without_linearize_or_params():
    """The stand-in linearisation (a fused vjp when present) and a field without parameters."""
    A = np.array([[-0.5, 0.2], [0.1, -0.3]])
    sol = gqlib.solve(LinearField(A), np.ones(2), [0.0, 0.5, 1.0], dense_output=True,
                      rtol=1e-10, atol=1e-12)
    G = np.ones((3, 2))

    class Fused(LinearField):
        def vjp(self, t, y, a):
            return self.vjp_y(t, y, a), self.vjp_params(t, y, a)

    plain = gradient(LinearField(A), sol, G, adjoint="collocation", grad_t=False)
    fused = gradient(Fused(A), sol, G, adjoint="collocation", grad_t=False)
    np.testing.assert_array_equal(plain.params, fused.params)
    assert fused.stats["nfe_f"] == 0 and fused.stats["nfe_vjp_params"] == fused.stats["n_nodes"]
    bare = FunctionField(lambda t, y: A @ y, lambda t, y, a: A.T @ a)
    g = gradient(bare, sol, G, adjoint="collocation")
    assert g.params is None
    np.testing.assert_allclose(g.y0, plain.y0, rtol=1e-14)


@pytest.mark.parametrize("adjoint", ["gq", "backsolve", "interpolated", "collocation"])
def test_grad_t_false_skips_the_time_gradient(adjoint):
    field = LinearField(np.array([[-0.5, 0.2], [0.1, -0.3]]))
    t = np.linspace(0.0, 1.0, 6)
    sol = gqlib.solve(field, np.ones(2), t, dense_output=True)
    G = np.ones((6, 2))
    with_t = gradient(field, sol, G, adjoint=adjoint)
    without = gradient(field, sol, G, adjoint=adjoint, grad_t=False)
    assert without.t is None and with_t.t.shape == (6,)
    np.testing.assert_array_equal(with_t.params, without.params)
    if adjoint in ("interpolated", "collocation"):  # one f per output time saved
        assert with_t.stats["nfe_f"] - without.stats["nfe_f"] == 6


@pytest.mark.parametrize("kwargs", [dict(rtol=1e-6), dict(atol=1e-9), dict(norm="max"),
                                    dict(first_step=0.1), dict(min_step=1e-3), dict(max_step=0.5),
                                    dict(gtol=0.2), dict(extra_nodes=1), dict(max_nodes=8),
                                    dict(controller=gqlib.PIController(safety=0.8)),
                                    # the old names of max_panel and max_panels
                                    dict(step_size=0.1), dict(max_steps=10)])
def test_solver_settings_rejected(kwargs):
    field = LinearField(-np.eye(2))
    sol = gqlib.solve(field, np.ones(2), [0.0, 1.0], dense_output=True)
    key = next(iter(kwargs))
    with pytest.raises(TypeError, match=rf"adjoint='collocation' \(CollocationAdjoint\) takes no "
                                        rf"\['{key}'\]; its settings: \['max_panel', "
                                        rf"'max_panels', 'nodes', 'sweeps'\]"):
        gradient(field, sol, np.ones((2, 2)), adjoint="collocation", **kwargs)


def test_max_panels_caps_the_panels_and_single_time_validates():
    field = LinearField(-np.eye(2))
    sol = gqlib.solve(field, np.ones(2), [0.0, 1.0], dense_output=True)
    with pytest.raises(gqlib.errors.TooManySteps):
        gradient(field, sol, np.ones((2, 2)), adjoint="collocation", max_panel=1e-3,
                 max_panels=50)
    one = gqlib.solve(field, np.ones(2), [0.3], dense_output=True)
    with pytest.raises(ValueError, match="sweeps"):
        gradient(field, one, np.ones((1, 2)), adjoint="collocation", sweeps=-1)
    g = gradient(field, one, np.array([[1.0, 2.0]]), adjoint="collocation")
    np.testing.assert_array_equal(g.y0, [1.0, 2.0])
    with pytest.raises(TypeError, match="grad_t"):
        gradient(field, one, np.ones((1, 2)), adjoint="gq", grad_t=1)


def test_a_refused_linearisation_replays_full_vjps_with_the_same_gradient():
    """A linearisation whose products raise LinearizationUnavailable (torch.compile's donated
    buffers) is replaced by full VJP calls, for the panel in flight and every later one."""
    field, sol, G = _problem()

    class Refusing(TanhField):
        forward_passes = 0

        def linearize(self, t, y):
            Refusing.forward_passes += 1

            class Lin:
                def vjp_y(self, a):
                    raise LinearizationUnavailable("no graph for a second backward pass")

                def vjp(self, a):
                    raise LinearizationUnavailable("no graph for a second backward pass")
            return Lin()

    g = gradient(Refusing(field.W, field.b), sol, G, adjoint="collocation", grad_t=False)
    ref = gradient(field, sol, G, adjoint="collocation", grad_t=False)
    np.testing.assert_allclose(g.params, ref.params, rtol=1e-13, atol=0)
    np.testing.assert_allclose(g.y0, ref.y0, rtol=1e-13, atol=0)
    s, nodes = g.stats, g.stats["n_nodes"] // g.stats["n_panels"]
    assert s["n_panels"] > 1
    # the first panel's linearisations were made (and counted) before the first refusal; none after
    assert Refusing.forward_passes == s["nfe_f"] == nodes
    assert s["nfe_vjp_y"] == ref.stats["nfe_vjp_y"]
    assert s["nfe_vjp_params"] == ref.stats["nfe_vjp_params"]


def test_stiff_steps_beyond_the_forward_stability_limit_are_subdivided():
    """dopri5 on y' = A y, eigenvalues -1 ... -200, rtol 1e-6: once the stiff modes are below
    atol its accepted steps reach |h lambda| = 6.5, beyond its own stability limit (3.3) and the
    default sweeps' (3.55), where each panel amplified the stiff part of ``a`` 52 times; the
    parameter gradient was 2.8e-4 off the exact one with no warning. Panels whose Picard sweeps
    do not contract are halved (measured 3.0e-8; the discrete adjoint's error: 5.8e-9)."""
    from adjoint_trust import dissipative, linear_reference, loss_grad
    field, y0, t = dissipative(200.0, n_out=3)
    ref_y0, ref_p = linear_reference(field, y0, t)
    sol = gqlib.solve(field, y0, t, rtol=1e-6, atol=1e-8, dense_output=True)
    h = np.diff(np.concatenate([sol.dense.t0, [sol.dense.t_last]]))
    assert 200.0 * h.max() > 5.0  # the forward overshoots its stability limit
    g = gradient(field, sol, loss_grad(sol), adjoint="collocation")
    err = np.linalg.norm(g.params - ref_p) / np.linalg.norm(ref_p)
    assert err < 1e-6
    assert g.stats["n_rejected"] > 0
    assert g.stats["n_steps"] == g.stats["n_accepted"] + g.stats["n_rejected"]


def test_forced_stiff_loss_within_the_trust_bound():
    """A loss on a forced lambda = -200 problem starts the adjoint with a stiff component: on
    the forward's stability-limited steps the fixed sweeps contract (ratio under PICARD_LIMIT)
    but had not converged, and the parameter gradient was 1.4e-3 off at rtol 1e-5 (bound
    max(10 x discrete adjoint, 10 rtol) = 2.8e-4), 1.4e-4 at 1e-6 (bound 2.3e-5), without a
    warning (the trust suite's bound, tests/adjoint_trust.py). A panel whose sweeps leave more
    than SWEEP_LIMIT tolerances is halved: 2.0e-5 and 2.2e-6 with 3-5 more panels."""
    P = np.array([-200.0, 0.5])
    field = FunctionField(lambda t, y: P[0] * (y - np.cos(t)) - np.sin(t) + P[1] * y[::-1],
                          lambda t, y, a: P[0] * a + P[1] * a[::-1],
                          lambda t, y, a: np.array([np.sum(a * (y - np.cos(t))),
                                                    np.sum(a * y[::-1])]))
    y0, t = np.array([1.3, 0.2]), np.array([0.0, 2.0])

    def grads(sol, adjoint):
        G = 2.0 * sol.y
        G[0] = 0.0
        return gradient(field, sol, G, adjoint=adjoint, grad_t=False).params

    ref = grads(gqlib.solve(field, y0, t, method="dopri8", rtol=1e-13, atol=1e-13,
                            dense_output=True), "checkpoint")
    for rtol in (1e-5, 1e-6):
        sol = gqlib.solve(field, y0, t, rtol=rtol, atol=rtol / 100, dense_output=True)
        err = [np.linalg.norm(grads(sol, a) - ref) / np.linalg.norm(ref)
               for a in ("checkpoint", "collocation")]
        assert err[1] <= max(10 * err[0], 10 * rtol), (rtol, err)


def test_the_sweep_test_reads_a_over_the_cotangent_scale():
    """The sweeps' convergence test holds a / max|dL/dy| to the tolerances (atol times
    max|dL/dy| on a), as the solved passes solve for a / max|dL/dy|: the same panels at any loss
    scale, grad(1e-8 L) / 1e-8 = grad(L) to round-off (measured 7.5e-16). Before, a loss times
    1e-8 passed every sweep test: Lotka-Volterra, nodes=2, sweeps=1, 11 % off, silently."""
    from adjoint_fields import LotkaVolterraField

    from gqlib.adjoint import CollocationAdjoint
    F, adj = LotkaVolterraField(), CollocationAdjoint(nodes=2, sweeps=1)
    sol = gqlib.solve(F, np.array([1.0, 0.5]), np.linspace(0.0, 6.0, 4), dense_output=True,
                      rtol=1e-4, atol=1e-4)
    ref, small = (gradient(F, sol, c * sol.y, adjoint=adj) for c in (1.0, 1e-8))
    for got, want in ((small.y0, ref.y0), (small.params, ref.params), (small.t, ref.t)):
        assert np.max(np.abs(got / 1e-8 - want)) < 1e-12 * np.max(np.abs(want)), (got, want)
