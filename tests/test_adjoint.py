"""Adjoint gradients: exact linear cases, finite differences, agreement between strategies."""

import math
import warnings

import numpy as np
import pytest
from adjoint_fields import KinkField, LinearField, TanhField
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.linalg import expm, expm_frechet

import gqlib
from gqlib.adjoint import (
    BacksolveAdjoint,
    CheckpointAdjoint,
    CollocationAdjoint,
    FunctionField,
    GQAdjoint,
    InterpolatedAdjoint,
    gradient,
)
from gqlib.errors import GradientAccuracyWarning

ADJ = ["gq", "backsolve", "interpolated", "collocation", "checkpoint"]
TIGHT = dict(rtol=1e-11, atol=1e-13)


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300)


def _linear_exact(A, y0, t, c):
    """L = sum_i c_i . y(t_i) for y' = A y: exact dL/dy0, dL/dA (expm_frechet) and dL/dt."""
    D = len(y0)
    dy0 = np.zeros(D)
    dA = np.zeros((D, D))
    dt = np.zeros(len(t))
    for i in range(1, len(t)):
        tau = t[i] - t[0]
        Ei = expm(A * tau)
        dy0 += Ei.T @ c[i]
        for j in range(D):
            for k in range(D):
                E = np.zeros((D, D))
                E[j, k] = tau
                dA[j, k] += c[i] @ expm_frechet(A * tau, E, compute_expm=False) @ y0
        dt[i] = c[i] @ A @ Ei @ y0
        dt[0] -= c[i] @ A @ Ei @ y0
    dy0 += c[0]
    return dy0, dA, dt


@pytest.mark.parametrize("adjoint", ADJ)
@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_linear_exact_gradients(adjoint, direction):
    rng = np.random.default_rng(3)
    A = 0.6 * rng.standard_normal((3, 3))
    y0 = rng.standard_normal(3)
    t = direction * np.array([0.0, 0.3, 0.7, 1.5])
    c = rng.standard_normal((4, 3))
    field = LinearField(A)
    sol = gqlib.solve(field, y0, t, dense_output=True, **TIGHT)
    g = gradient(field, sol, c, adjoint=adjoint)
    dy0, dA, dt = _linear_exact(A, y0, t, c)
    assert _rel(g.y0, dy0) < 1e-7
    assert _rel(g.params, dA.ravel()) < 1e-7
    assert _rel(g.t, dt) < 1e-7


@pytest.mark.parametrize("adjoint", ADJ)
def test_strategies_agree_on_nonlinear_nonautonomous_field(adjoint):
    rng = np.random.default_rng(0)
    D = 4
    field = TanhField(rng.standard_normal((D, D)) * 1.2, rng.standard_normal(D) * 0.3)
    y0 = rng.standard_normal(D)
    t = np.linspace(0.0, 2.0, 11)
    grad_y = rng.standard_normal((11, D))
    sol = gqlib.solve(field, y0, t, dense_output=True, rtol=1e-12, atol=1e-12)
    ref = gradient(field, sol, grad_y, adjoint="backsolve", rtol=1e-12, atol=1e-12)
    g = gradient(field, sol, grad_y, adjoint=adjoint)
    assert _rel(g.y0, ref.y0) < 1e-8
    assert _rel(g.params, ref.params) < 1e-8
    assert _rel(g.t, ref.t) < 1e-8


def _fd_gradients(field, y0, t, grad_y, h_step, eps=1e-6):
    """Central differences of L = sum_i grad_y[i] . y(t_i) on a fixed-step rk4 solve."""
    def loss(f, y):
        sol = gqlib.solve(f, y, t, method="rk4", step_size=h_step)
        return float(np.sum(grad_y * sol.y))

    th = field.theta
    d_theta = np.array([(loss(field.with_theta(th + eps * e), y0) - loss(field.with_theta(th - eps * e), y0))
                        / (2 * eps) for e in np.eye(th.size)])
    d_y0 = np.array([(loss(field, y0 + eps * e) - loss(field, y0 - eps * e)) / (2 * eps)
                     for e in np.eye(y0.size)])
    return d_y0, d_theta


@pytest.mark.parametrize("adjoint", ADJ)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(D=st.integers(1, 3), n_t=st.integers(2, 5), seed=st.integers(0, 2 ** 16),
       span=st.floats(0.3, 1.5))
def test_gradients_match_central_differences(D, n_t, seed, span, adjoint):
    rng = np.random.default_rng(seed)
    field = TanhField(rng.standard_normal((D, D)), 0.5 * rng.standard_normal(D))
    y0 = rng.standard_normal(D)
    t = np.sort(rng.uniform(0, span, n_t - 1))
    t = np.concatenate([[0.0], t + 1e-2 * np.arange(1, n_t)])
    grad_y = rng.standard_normal((n_t, D))
    h = 0.01
    sol = gqlib.solve(field, y0, t, method="rk4", step_size=h, dense_output=True)
    # with fixed steps, rtol/atol drive only the node rule (its default is the solve's 1e-7);
    # ask for the quadrature to resolve the interpolant well below the comparison's tolerance
    # (collocation has no node rule: its 2 nodes per rk4 step are 4th order on the same steps;
    # checkpoint differentiates the rk4 steps themselves)
    tol = {} if adjoint in ("collocation", "checkpoint") else dict(rtol=1e-10, atol=1e-12)
    g = gradient(field, sol, grad_y, adjoint=adjoint, **tol)
    fd_y0, fd_theta = _fd_gradients(field, y0, t, grad_y, h)
    # rk4 at h = 0.01: discretisation differences ~1e-9; central differences ~1e-9
    np.testing.assert_allclose(g.y0, fd_y0, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g.params, fd_theta, rtol=1e-6, atol=1e-7)


def test_tstops_split_quadrature_and_reach_backward_solver():
    """A field with a kink in t: panels split at the tstop; gq matches backsolve tightly."""
    field = KinkField()
    s, calls = field.s, field.calls
    y0 = np.array([1.0, 2.0])
    t = np.array([0.0, 1.0])
    G = np.array([[0.0, 0.0], [1.0, 1.0]])
    sol = gqlib.solve(field, y0, t, tstops=[s], rtol=1e-10, atol=1e-12, checkpoints=True)
    assert sol.tstops == (s,)
    g = gradient(field, sol, G, adjoint="gq")
    assert _rel(g.params, field.exact_params(y0)) < 1e-8
    assert g.stats["n_panels"] >= 2
    # the backward solver stepped onto the tstop and evaluated one-sidedly around it
    assert math.nextafter(s, 1.0) in calls and math.nextafter(s, 0.0) in calls and s not in calls


def test_many_outputs_no_restart():
    """200 output times: the stepper keeps its step size across jumps.

    Without step checkpoints the backward solve restarts y only at the output times, so its
    steps are its own (with checkpoints it would also stop at every forward step end)."""
    A = np.array([[-0.1, 1.0], [-1.0, -0.1]])
    field = LinearField(A)
    t = np.linspace(0, 10, 201)
    sol = gqlib.solve(field, np.array([1.0, 0.0]), t, rtol=1e-8, atol=1e-10)
    G = np.ones((201, 2)) * 0.01
    g = gradient(field, sol, G, adjoint=GQAdjoint(checkpoints=False))
    ref = gradient(field, sol, G, adjoint=BacksolveAdjoint(checkpoints=False))
    assert _rel(g.params, ref.params) < 1e-6
    # about one backward step per interval: restarting the step-size search at every jump
    # (as a fresh solver per interval would) takes ~400 steps here
    assert g.stats["n_accepted"] <= 200 + 10


def test_node_rules():
    rng = np.random.default_rng(1)
    D = 3
    field = TanhField(rng.standard_normal((D, D)) * 1.5, rng.standard_normal(D))
    y0 = rng.standard_normal(D)
    t = np.linspace(0, 1, 11)
    G = rng.standard_normal((11, D))
    sol = gqlib.solve(field, y0, t, rtol=1e-6, atol=1e-8, checkpoints=True)
    ref = gradient(field, gqlib.solve(field, y0, t, rtol=1e-12, atol=1e-12, checkpoints=True), G,
                   adjoint="backsolve", rtol=1e-12, atol=1e-12)
    # the fixed rules under-resolve some panels here, and say so
    with pytest.warns(GradientAccuracyWarning, match="nodes='paper'"):
        paper = gradient(field, sol, G, adjoint="gq", nodes="paper")
    adaptive = gradient(field, sol, G, adjoint="gq")
    with pytest.warns(GradientAccuracyWarning, match="nodes=1"):
        one = gradient(field, sol, G, adjoint="gq", nodes=1)
    assert one.stats["n_nodes"] == 10
    assert paper.stats["n_nodes"] >= 10
    err_adaptive = _rel(adaptive.params, ref.params)
    assert err_adaptive < 1e-5
    assert err_adaptive < _rel(one.params, ref.params)


def test_restart_jumps_do_not_split_panels():
    """With step checkpoints y jumps back onto the forward state at every restart (by the drift:
    6 forward tolerance units, 600 of a backward solved 100x tighter). The adaptive rule samples
    the pieces moved back by those jumps: they are the re-integration's error, not a feature of
    the integrand, and resolving them halved panels towards MAX_SPLITS (86 nodes in 18 panels
    before, vs 45 in 6 without restarts)."""
    rng = np.random.default_rng(3)
    field = TanhField(0.8 * rng.standard_normal((3, 3)), 0.3 * rng.standard_normal(3))
    y0, t = np.array([0.5, -0.2, 0.9]), np.array([0.0, 0.5, 1.3, 2.0])
    G = rng.standard_normal((4, 3))
    sol = gqlib.solve(field, y0, t, checkpoints=True, rtol=1e-6, atol=1e-8)
    ref = gradient(field, gqlib.solve(field, y0, t, checkpoints=True, **TIGHT), G,
                   adjoint="checkpoint")
    back = dict(rtol=1e-8, atol=1e-10)
    ck = gradient(field, sol, G, adjoint=GQAdjoint(checkpoints=True, **back))
    plain = gradient(field, sol, G, adjoint=GQAdjoint(checkpoints=False, **back))
    assert ck.stats["max_drift"] > 1.0  # the restarts do jump
    assert ck.stats["n_nodes"] <= plain.stats["n_nodes"]
    assert ck.stats["n_panels"] == plain.stats["n_panels"]
    assert _rel(ck.params, ref.params) < 1e-6  # measured 5.7e-7 (1.0e-6 without restarts)


def test_stats_and_memory_shape():
    field = LinearField(np.array([[-1.0]]))
    sol = gqlib.solve(field, np.ones(1), [0.0, 1.0], checkpoints=True)
    g = gradient(field, sol, np.array([[0.0], [1.0]]), adjoint="gq")
    for key in ("nfe_f", "nfe_vjp_y", "nfe_vjp_params", "n_nodes", "n_accepted", "n_rejected"):
        assert key in g.stats
    assert g.stats["nfe_vjp_params"] == g.stats["n_nodes"]
    b = gradient(field, sol, np.array([[0.0], [1.0]]), adjoint="backsolve")
    assert g.stats["nfe_vjp_params"] < b.stats["nfe_vjp_params"]


def test_seminorm_reduces_backsolve_cost():
    rng = np.random.default_rng(5)
    D = 3
    field = TanhField(rng.standard_normal((D, D)) * 2, rng.standard_normal(D))
    t = np.linspace(0, 2, 3)
    sol = gqlib.solve(field, rng.standard_normal(D), t, rtol=1e-7, atol=1e-9)
    G = rng.standard_normal((3, D))
    # without step checkpoints: the backward steps are not capped by the forward's, so the
    # step counts measure the error control alone
    full = gradient(field, sol, G, adjoint=BacksolveAdjoint(checkpoints=False))
    semi = gradient(field, sol, G, adjoint="backsolve", checkpoints=False, seminorm=True)
    assert semi.stats["n_steps"] <= full.stats["n_steps"]
    assert _rel(semi.params, full.params) < 1e-4


def test_bad_input():
    field = LinearField(np.eye(2) * -1)
    sol = gqlib.solve(field, np.ones(2), [0.0, 1.0], checkpoints=True)
    G = np.ones((2, 2))
    with pytest.raises(ValueError, match="grad_y"):
        gradient(field, sol, np.ones((3, 2)))
    with pytest.raises(ValueError, match="adjoint"):
        gradient(field, sol, G, adjoint="seminorm")
    with pytest.raises(ValueError, match="dense_output=True"):
        gradient(field, sol, G, adjoint="interpolated")
    with pytest.raises(TypeError, match=r"adjoint='gq' \(GQAdjoint\) takes no \['seminorm'\]"):
        gradient(field, sol, G, adjoint="gq", seminorm=True)
    with pytest.raises(ValueError, match="nodes"):
        gradient(field, sol, G, adjoint="gq", nodes="gauss")
    with pytest.raises(TypeError, match="vjp_y"):
        gradient(lambda t, y: -y, sol, G)
    with pytest.raises(TypeError, match="Solution"):
        gradient(field, {"y": 1}, G)
    # a field without vjp_params: state gradients only
    g = gradient(FunctionField(lambda t, y: -y, lambda t, y, a: -a), sol, G)
    assert g.params is None
    np.testing.assert_allclose(g.y0, np.exp(-1.0) * np.ones(2) + 1.0, rtol=1e-6)


def test_backward_state_sizes():
    """Memory: the backward solver holds 2D (gq), D (interpolated, collocation) or 2D + P (backsolve)."""
    rng = np.random.default_rng(2)
    D = 3
    field = TanhField(rng.standard_normal((D, D)), rng.standard_normal(D))
    P = field.theta.size
    t = np.linspace(0, 1, 4)
    sol = gqlib.solve(field, rng.standard_normal(D), t, dense_output=True)
    G = rng.standard_normal((4, D))
    sizes = {adj: gradient(field, sol, G, adjoint=adj).stats["state_size"] for adj in ADJ}
    assert sizes == {"gq": 2 * D, "interpolated": D, "backsolve": 2 * D + P, "collocation": D,
                     "checkpoint": D}


@pytest.mark.parametrize("adjoint", ADJ)
def test_single_output_time(adjoint):
    field = LinearField(np.array([[-1.0, 0.5], [0.0, -2.0]]))
    sol = gqlib.solve(field, np.ones(2), [0.3], dense_output=True)
    g = gradient(field, sol, np.array([[1.0, 2.0]]), adjoint=adjoint)
    np.testing.assert_array_equal(g.y0, [1.0, 2.0])
    np.testing.assert_array_equal(g.params, np.zeros(4))
    np.testing.assert_array_equal(g.t, [0.0])


@pytest.mark.parametrize("adjoint", ADJ)
def test_field_returning_its_own_buffer_is_not_mutated_into(adjoint):
    """A field may return (and reuse) a preallocated array from vjp_params."""
    class Buffered(LinearField):
        def __init__(self, A):
            super().__init__(A)
            self.buf = np.zeros(A.size)

        def vjp_params(self, t, y, a):
            self.buf[:] = np.outer(a, y).ravel()
            return self.buf

    A = np.array([[-0.5, 0.2], [0.1, -0.3]])
    t = [0.0, 0.5, 1.0]
    G = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, 1.0]])
    sol = gqlib.solve(LinearField(A), np.ones(2), t, dense_output=True, **TIGHT)
    plain = gradient(LinearField(A), sol, G, adjoint=adjoint)
    buffered = gradient(Buffered(A), sol, G, adjoint=adjoint)
    np.testing.assert_allclose(buffered.params, plain.params, rtol=1e-12)


def test_inherited_callable_norm_applies_blockwise():
    A = np.array([[-1.0, 0.3], [0.2, -0.5]])
    field = FunctionField(lambda t, y: y @ A.T, lambda t, y, a: a @ A,
                          lambda t, y, a: (a[..., :, None] * y[..., None, :]).sum(axis=0).ravel())
    y0 = np.ones((3, 2))
    norm = lambda e: np.max(np.sqrt(np.mean(e ** 2, axis=1)))  # noqa: E731 - written for (3, 2)
    sol = gqlib.solve(field, y0, [0.0, 1.0], norm=norm, rtol=1e-10, atol=1e-12, checkpoints=True)
    G = np.zeros((2, 3, 2))
    G[1] = 1.0
    g = gradient(field, sol, G, adjoint="gq")
    ref = gradient(field, sol, G, adjoint="gq", norm="rms")
    assert _rel(g.params, ref.params) < 1e-7


@pytest.mark.parametrize("adjoint", ["gq", "backsolve", "interpolated"])
def test_array_tolerances_rejected_by_the_adjoints(adjoint):
    field = LinearField(-np.eye(2))
    sol = gqlib.solve(field, np.ones(2), [0.0, 1.0], atol=np.array([1e-9, 1e-8]),
                      dense_output=True)
    with pytest.raises(ValueError, match="`atol`.*scalar"):
        gradient(field, sol, np.ones((2, 2)), adjoint=adjoint)
    g = gradient(field, sol, np.ones((2, 2)), adjoint=adjoint, atol=1e-9)
    assert np.all(np.isfinite(g.params))


def test_float32_dense_reads_stay_finite_on_short_pieces():
    """Short first steps (y0 = 0) must not overflow the interpolant reads of far pieces."""
    torch = pytest.importorskip("torch")
    from gqlib.integrate._stepper import evaluate_pieces

    sol = gqlib.solve(lambda t, y: -0.1 * y + 1.0, torch.zeros(2, dtype=torch.float32),
                      [0.0, 100.0], method="dop853", rtol=1e-5, atol=1e-6, dense_output=True)
    tq = np.array([50.0, 99.0])
    vals = evaluate_pieces(sol.dense.pieces_between(0.0, 100.0), tq,
                           torch.tensor(tq, dtype=torch.float64), sol.y[0])
    assert torch.all(torch.isfinite(vals))
    torch.testing.assert_close(vals, sol(tq), rtol=1e-5, atol=1e-5)



@pytest.mark.parametrize("adjoint", ADJ)
def test_float32_state_gets_float32_gradients(adjoint):
    """The collocation adjoint's panel ends were NumPy float64 scalars, which promote a float32
    adjoint (NEP 50): it returned float64 dL/dy0, dL/dtheta and dL/dt for a float32 state."""
    A = np.array([[-0.5, 0.2], [0.1, -0.3]], dtype=np.float32)
    field = FunctionField(lambda t, y: A @ y, lambda t, y, a: A.T @ a,
                          lambda t, y, a: np.outer(a, y).ravel())
    sol = gqlib.solve(field, np.ones(2, np.float32), [0.0, 0.4, 1.0], rtol=1e-5, atol=1e-6,
                      dense_output=True)
    g = gradient(field, sol, np.ones((3, 2), np.float32), adjoint=adjoint)
    assert (g.y0.dtype, g.params.dtype, g.t.dtype) == (np.float32,) * 3

# -- the strategy API -------------------------------------------------------------------------------

def _api_problem(**solve_kw):
    field = LinearField(np.array([[-0.5, 0.2], [0.1, -0.3]]))
    t = [0.0, 0.4, 1.0]
    sol = gqlib.solve(field, np.ones(2), t, **solve_kw)
    return field, sol, np.ones((3, 2))


@pytest.mark.parametrize(("alias", "settings", "obj"), [
    ("gq", dict(nodes=3, rtol=1e-9), GQAdjoint(nodes=3, rtol=1e-9)),
    ("gq", dict(checkpoints=False), GQAdjoint(checkpoints=False)),
    ("backsolve", dict(seminorm=True), BacksolveAdjoint(seminorm=True)),
    ("interpolated", dict(nodes="paper", gtol=0.5), InterpolatedAdjoint(nodes="paper", gtol=0.5)),
    ("collocation", dict(nodes=2, sweeps=2, max_panel=0.1),
     CollocationAdjoint(nodes=2, sweeps=2, max_panel=0.1)),
    ("checkpoint", {}, CheckpointAdjoint()),
])
def test_alias_with_settings_equals_the_strategy_object(alias, settings, obj):
    field, sol, G = _api_problem(dense_output=True)
    a = gradient(field, sol, G, adjoint=alias, **settings)
    b = gradient(field, sol, G, adjoint=obj)
    for x, y in ((a.y0, b.y0), (a.params, b.params), (a.t, b.t)):
        np.testing.assert_array_equal(x, y)
    assert a.stats["n_steps"] == b.stats["n_steps"] and a.stats["n_nodes"] == b.stats["n_nodes"]
    assert type(obj)(**settings) == obj  # a value: equal settings, equal strategies


def test_default_adjoint_is_the_default_alias():
    field, sol, G = _api_problem(checkpoints=True)
    default = gqlib.adjoint.DEFAULT_ADJOINT
    assert default in gqlib.adjoint.ALIASES
    assert gqlib.adjoint.as_strategy() == gqlib.adjoint.as_strategy(default)
    a, b = gradient(field, sol, G), gradient(field, sol, G, adjoint=default)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.y0, b.y0)


def test_settings_beside_a_strategy_object_raise():
    field, sol, G = _api_problem(dense_output=True)
    with pytest.raises(TypeError, match=r"settings \['nodes'\] were given beside the strategy "
                                        r"object"):
        gradient(field, sol, G, adjoint=GQAdjoint(), nodes=3)
    with pytest.raises(TypeError, match="beside the strategy object"):
        gradient(field, sol, G, adjoint=CheckpointAdjoint(), rtol=1e-6)


@pytest.mark.parametrize(("alias", "key", "cls"), [
    ("gq", "seminorm", "GQAdjoint"), ("backsolve", "nodes", "BacksolveAdjoint"),
    ("interpolated", "checkpoints", "InterpolatedAdjoint"),
    ("collocation", "rtol", "CollocationAdjoint"), ("checkpoint", "method", "CheckpointAdjoint"),
])
def test_unknown_setting_for_an_alias_names_the_strategy(alias, key, cls):
    field, sol, G = _api_problem(dense_output=True)
    with pytest.raises(TypeError, match=rf"adjoint='{alias}' \({cls}\) takes no \['{key}'\]; "
                                        r"its settings: \["):
        gradient(field, sol, G, adjoint=alias, **{key: 1})
    with pytest.raises(TypeError, match=key):  # the constructor itself refuses it too
        getattr(gqlib.adjoint, cls)(**{key: 1})


def test_missing_forward_record_names_the_solve_flag():
    field, plain, G = _api_problem()
    for adjoint in ("gq", "backsolve", "checkpoint", GQAdjoint(nodes=2)):
        with pytest.raises(ValueError, match=r"solve with `checkpoints=True`"):
            gradient(field, plain, G, adjoint=adjoint)
    for adjoint in ("interpolated", "collocation"):
        with pytest.raises(ValueError, match=r"solve with `dense_output=True`"):
            gradient(field, plain, G, adjoint=adjoint)
    _, ck, _ = _api_problem(checkpoints=True)
    with pytest.raises(ValueError, match=r"dense_output=True"):  # checkpoints are not dense output
        gradient(field, ck, G, adjoint="interpolated")
    # without step checkpoints gq and backsolve need no record; dense output holds checkpoints
    _, dense, _ = _api_problem(dense_output=True)
    ref = gradient(field, dense, G, adjoint="interpolated", rtol=1e-12, atol=1e-14)
    for adjoint in (GQAdjoint(checkpoints=False), BacksolveAdjoint(checkpoints=False)):
        assert adjoint.forward_record is None
        g = gradient(field, plain, G, adjoint=adjoint)
        assert _rel(g.params, ref.params) < 1e-5
    for adjoint in ("gq", "backsolve", "checkpoint"):
        assert _rel(gradient(field, dense, G, adjoint=adjoint).params, ref.params) < 1e-5


@pytest.mark.parametrize("obj", [GQAdjoint(), BacksolveAdjoint(), InterpolatedAdjoint(),
                                 CollocationAdjoint(), CheckpointAdjoint()])
def test_strategies_are_frozen(obj):
    import dataclasses

    name = dataclasses.fields(obj)[0].name if dataclasses.fields(obj) else "nodes"
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, name, None)
    hash(obj)  # frozen dataclasses are hashable values


def test_strategy_constructors_validate():
    with pytest.raises(TypeError, match="`checkpoints` must be a bool"):
        GQAdjoint(checkpoints=1)
    with pytest.raises(TypeError, match="`seminorm` must be a bool"):
        BacksolveAdjoint(seminorm="yes")
    with pytest.raises(ValueError, match="`seminorm=True` or a `norm`"):
        BacksolveAdjoint(seminorm=True, norm="max")
    with pytest.raises(ValueError, match="`nodes`"):
        InterpolatedAdjoint(nodes="gauss")
    with pytest.raises(ValueError, match="`rtol` of the backward solve must be a scalar"):
        GQAdjoint(rtol=np.array([1e-6, 1e-7]))
    with pytest.raises(ValueError, match="`adjoint` must be a strategy object or one of"):
        gradient(*_api_problem(checkpoints=True), adjoint=GQAdjoint)


@pytest.mark.parametrize("method", sorted(gqlib.METHODS))
@pytest.mark.parametrize("adjoint", ADJ)
def test_every_strategy_with_every_method(adjoint, method):
    """One fast case of each strategy x method pair: exact gradients of a linear system to the
    method's accuracy (adaptive: rtol 1e-7, 1e-6 for second order, within 1000 rtol; fixed step h = 0.01: 20 h^order),
    without a GradientAccuracyWarning, except the one for reading dopri8's low-order dense
    output (test_a_low_order_interpolant_warns)."""
    A = np.array([[-0.5, 0.8], [-0.8, -0.3]])
    y0 = np.array([1.0, -0.5])
    t = np.array([0.0, 0.45, 1.0])
    c = np.array([[0.0, 0.0], [1.0, 0.5], [-0.3, 1.0]])
    field = LinearField(A)
    tab = gqlib.METHODS[method]
    rtol = 1e-7 if tab.order >= 3 else 1e-6  # second-order pairs: fewer steps, same test
    kw = dict(rtol=rtol, atol=rtol / 100) if tab.adaptive else dict(step_size=0.01)
    bound = 1000 * rtol if tab.adaptive else 20 * 0.01 ** tab.order
    sol = gqlib.solve(field, y0, t, method=method, dense_output=True, **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GradientAccuracyWarning)
        g = gradient(field, sol, c, adjoint=adjoint)
    warned = [str(w.message) for w in caught if issubclass(w.category, GradientAccuracyWarning)]
    poor = gqlib.adjoint.as_strategy(adjoint).poor_interpolants(method)
    assert len(warned) == len(poor) and all(f"dense output of {m!r}" in w
                                            for m, w in zip(poor, warned, strict=True)), warned
    dy0, dA, dt = _linear_exact(A, y0, t, c)
    assert _rel(g.y0, dy0) < bound
    assert _rel(g.params, dA.ravel()) < bound
    assert _rel(g.t, dt) < bound


def test_rowwise_stacking_in_the_numpy_core():
    """A NumPy field declaring ``rowwise = True`` (f ignores t, maps rows of y on their own): the
    checkpoint adjoint and GQ stack its parameter VJPs and return the unstacked gradient; the
    same field reading t raises RowwiseMismatch."""
    import gqlib
    from gqlib.adjoint import CheckpointAdjoint, FunctionField, GQAdjoint, RowwiseMismatch, gradient

    rng = np.random.default_rng(5)
    W = 0.7 * rng.standard_normal((3, 3))

    def make(t_weight):
        def f(t, y):
            return np.tanh(y @ W.T) * (1.0 + t_weight * t)

        def vjp_y(t, y, a):
            return ((a * (1.0 + t_weight * t)) * (1.0 - np.tanh(y @ W.T) ** 2)) @ W

        def vjp_params(t, y, a):
            g = (a * (1.0 + t_weight * t)) * (1.0 - np.tanh(y @ W.T) ** 2)
            return (g.T @ y).ravel()
        return FunctionField(f, vjp_y, vjp_params)

    y0 = rng.standard_normal((4, 3))
    t = np.array([0.0, 0.4, 1.0])
    G = rng.standard_normal((3, 4, 3))
    for strategy in (CheckpointAdjoint(), GQAdjoint()):
        sol = gqlib.solve(make(0.0), y0, t, rtol=1e-8, atol=1e-10, checkpoints=True)
        plain = gradient(make(0.0), sol, G, adjoint=strategy)
        field = make(0.0)
        field.rowwise = True
        stacked = gradient(field, sol, G, adjoint=strategy)
        assert stacked.stats["n_row_stacks"] >= 1 and plain.stats["n_row_stacks"] == 0
        np.testing.assert_allclose(stacked.params, plain.params, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(stacked.y0, plain.y0, rtol=1e-12, atol=1e-14)
        bad = make(0.5)
        bad.rowwise = True
        sol_bad = gqlib.solve(bad, y0, t, rtol=1e-8, atol=1e-10, checkpoints=True)
        with pytest.raises(RowwiseMismatch):
            gradient(bad, sol_bad, G, adjoint=strategy)


def test_large_time_offset_keeps_the_node_count():
    """At t0 = 1.7e9 (unix time) the sample times' round-off (eps |t| = 2e-7) once exceeded what
    the adaptive node rule resolves, and every panel was split to MAX_SPLITS (45,056 parameter
    VJPs against 4 at t0 = 0, the same gradient). The interpolant is now read at offsets from
    the panel's middle."""
    rng = np.random.default_rng(3)
    A = 0.6 * rng.standard_normal((3, 3))
    y0 = rng.standard_normal(3)
    c = rng.standard_normal((2, 3))
    field = LinearField(A)
    counts = []
    for t0 in (0.0, 1.7e9):  # unix time
        t = np.array([t0, t0 + 0.5])
        sol = gqlib.solve(field, y0, t, checkpoints=True)
        g = gradient(field, sol, c, adjoint="gq")
        assert _rel(g.params, _linear_exact(A, y0, t - t0, c)[1].ravel()) < 1e-6
        counts.append(g.stats["nfe_vjp_params"])
    assert counts[1] <= 4 * counts[0], counts


@pytest.mark.parametrize("adjoint", ["interpolated", "gq", "collocation"])
def test_a_low_order_interpolant_warns(adjoint):
    """dopri8's dense output (global order 5) under an order-8 method: at rtol 1e-9 the
    parameter gradient was 150 (interpolated), 97 (gq) and 87 (collocation) x rtol off the
    exact one, silently. Now a GradientAccuracyWarning; dop853 (dense order 7): none."""
    rng = np.random.default_rng(3)
    A = 0.6 * rng.standard_normal((3, 3))
    y0 = rng.standard_normal(3)
    t = np.array([0.0, 0.31, 0.77, 1.5])
    c = rng.standard_normal((4, 3))
    exact_p = _linear_exact(A, y0, t, c)[1].ravel()
    field = LinearField(A)
    errs = {}
    for method in ("dopri8", "dop853"):
        sol = gqlib.solve(field, y0, t, method=method, rtol=1e-9, atol=1e-11, dense_output=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            g = gradient(field, sol, c, adjoint=adjoint)
        warned = [w for w in caught if issubclass(w.category, GradientAccuracyWarning)
                  and "dense output of 'dopri8'" in str(w.message)]
        errs[method] = (_rel(g.params, exact_p), len(warned))
    assert errs["dopri8"][0] > 2e-8 and errs["dopri8"][1] == 1, errs
    assert errs["dop853"][0] < 1e-8 and errs["dop853"][1] == 0, errs


def test_auto_does_not_choose_a_low_order_interpolant():
    """"auto" picks the interpolated adjoint where the parameters dominate, except over a
    dopri8 forward (see test_a_low_order_interpolant_warns): there the discrete one."""
    from gqlib.adjoint import AutoAdjoint
    field = LinearField(0.1 * np.eye(2))
    for method, chosen in (("dopri5", "interpolated"), ("dopri8", "checkpoint")):
        sol = gqlib.solve(field, np.ones(2), [0.0, 1.0], method=method, dense_output=True)
        assert AutoAdjoint(ratio=10).choose(sol, 1000).name == chosen
