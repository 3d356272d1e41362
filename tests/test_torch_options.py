"""gqlib.torch options: torchdiffeq's `options` and `adjoint_options`, and their errors."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchdiffeq = pytest.importorskip("torchdiffeq")

import gqlib  # noqa: E402
from gqlib.torch import odeint  # noqa: E402

pytestmark = pytest.mark.torch
F64 = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-12)
ADJ = ["gq", "backsolve", "interpolated"]


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


class Field(torch.nn.Module):
    def __init__(self, d=2, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = torch.nn.Parameter(0.8 * torch.randn(d, d, generator=g, dtype=F64))
        self.b = torch.nn.Parameter(0.3 * torch.randn(d, generator=g, dtype=F64))

    def forward(self, t, y):
        return torch.tanh(y @ self.W.T + self.b) * (1.0 + 0.3 * torch.cos(3.0 * t)) - 0.1 * y


def _t(*vals):
    return torch.tensor(vals, dtype=F64)


# -- fixed grids ------------------------------------------------------------------------------------

def test_step_size_outputs_land_exactly():
    # torchdiffeq would step 0, 0.3, 0.6, 0.9, 1.0 and interpolate t = 0.5 linearly; gqlib cuts
    # each output interval into equal steps no longer than step_size and lands on 0.5
    a = -1.3
    out = odeint(lambda t, y: a * y, torch.ones(1, dtype=F64), _t(0.0, 0.5, 1.0), method="euler",
                 options=dict(step_size=0.3))
    assert out[1].item() == pytest.approx((1 + 0.25 * a) ** 2, rel=1e-14)
    assert out[2].item() == pytest.approx((1 + 0.25 * a) ** 4, rel=1e-14)
    assert not math.isclose(out[1].item(), torchdiffeq.odeint(
        lambda t, y: a * y, torch.ones(1, dtype=F64), _t(0.0, 0.5, 1.0), method="euler",
        options=dict(step_size=0.3))[1].item(), rel_tol=1e-6)


def test_fixed_method_without_step_size_steps_on_t():
    t = _t(0.0, 0.1, 0.3, 0.35)
    ours = odeint(Field(), torch.ones(2, dtype=F64), t, method="midpoint")
    ref = torchdiffeq.odeint(Field(), torch.ones(2, dtype=F64), t, method="midpoint")
    assert torch.allclose(ours, ref, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("perturb", [False, True])
def test_perturb_evaluates_after_the_grid_points(perturb):
    # f jumps at t = 0.5, a grid point: perturb=True sees the value after it, as in torchdiffeq
    def f(t, y):
        return (t > 0.5).to(y.dtype) * torch.ones_like(y)

    kw = dict(method="euler", options=dict(step_size=0.25, perturb=perturb))
    ours = odeint(f, torch.zeros(1, dtype=F64), _t(0.0, 1.0), **kw)
    ref = torchdiffeq.odeint(f, torch.zeros(1, dtype=F64), _t(0.0, 1.0), **kw)
    assert ours[-1].item() == pytest.approx(0.5 if perturb else 0.25, abs=1e-12)
    assert ours[-1].item() == pytest.approx(ref[-1].item(), abs=1e-12)


def test_grid_constructor():
    calls = []

    def grid(func, y0, t):
        calls.append((func(t[0], y0).shape, y0.shape))
        return torch.tensor([0.0, 0.1, 0.25, 0.5, 0.6, 1.0], dtype=F64)

    t = _t(0.0, 0.5, 1.0)
    for method in ("rk4", "heun3"):
        ours = odeint(Field(), torch.ones(2, dtype=F64), t, method=method,
                      options=dict(grid_constructor=grid))
        ref = torchdiffeq.odeint(Field(), torch.ones(2, dtype=F64), t, method=method,
                                 options=dict(grid_constructor=grid))
        assert torch.allclose(ours, ref, rtol=1e-13, atol=1e-13)
    assert calls[0] == (torch.Size([2]), torch.Size([2]))
    with pytest.raises(ValueError, match="must return a grid from t"):
        odeint(Field(), torch.ones(2, dtype=F64), _t(0.0, 2.0), method="rk4",
               options=dict(grid_constructor=grid))
    with pytest.raises(ValueError, match="mutually exclusive"):
        odeint(Field(), torch.ones(2, dtype=F64), t, method="rk4",
               options=dict(grid_constructor=grid, step_size=0.1))


@pytest.mark.parametrize("adjoint", ADJ)
def test_grid_constructor_gradients(adjoint):
    func = Field()
    y0 = torch.ones(2, dtype=F64, requires_grad=True)
    t = _t(0.0, 0.5, 1.0)
    opts = dict(grid_constructor=lambda f, y, t: torch.linspace(0, 1, 41, dtype=F64))
    grads = []
    for adj in (None, adjoint):
        ys = odeint(func, y0, t, method="rk4", options=opts, adjoint=adj, rtol=1e-8, atol=1e-10)
        grads.append(torch.autograd.grad(ys.sum(), (y0, *func.parameters())))
    for a, b in zip(*grads, strict=True):
        assert _rel(a, b) < 1e-5


def test_step_size_with_an_adaptive_method_runs_it_fixed_step():
    func = Field()
    y0 = torch.ones(2, dtype=F64)
    with torch.no_grad():
        out, stats = odeint(func, y0, _t(0.0, 1.0), method="dopri5", options=dict(step_size=0.1),
                            return_stats=True)
        core = gqlib.solve(lambda s, y: func(torch.tensor(s, dtype=F64), y), y0, [0.0, 1.0],
                           method="dopri5", step_size=0.1)
    assert torch.equal(out, core.y)
    assert stats.forward["n_accepted"] == 10 and stats.forward["n_rejected"] == 0


# -- jump_t, step_t -----------------------------------------------------------------------------------

def _kink(t, y):
    return torch.where(t < 0.4, 1.0, -2.0) * torch.ones_like(y) - 0.5 * y


def _kink_exact(t1):
    # y' = s - y/2, y(0) = 0: s = 1 on [0, 0.4), -2 after
    y_mid = 2.0 * (1 - math.exp(-0.2))
    return -4.0 + (y_mid + 4.0) * math.exp(-0.5 * (t1 - 0.4))


def test_jump_t_steps_onto_discontinuities():
    y0 = torch.zeros(1, dtype=F64)
    t = _t(0.0, 1.0)
    tol = dict(rtol=1e-8, atol=1e-10)
    with_jump, s1 = odeint(_kink, y0, t, options=dict(jump_t=_t(0.4)), return_stats=True, **tol)
    without, s0 = odeint(_kink, y0, t, return_stats=True, **tol)
    ref = torchdiffeq.odeint(_kink, y0, t, options=dict(jump_t=_t(0.4)), **tol)
    assert abs(with_jump[-1].item() - _kink_exact(1.0)) < 1e-8
    assert abs(with_jump[-1].item() - ref[-1].item()) < 1e-8
    assert s1.forward["n_rejected"] < s0.forward["n_rejected"]
    stepped = odeint(_kink, y0, t, options=dict(step_t=[0.4]), **tol)
    assert abs(stepped[-1].item() - _kink_exact(1.0)) < 1e-8
    with pytest.raises(ValueError, match="must not have any elements in common"):
        odeint(_kink, y0, t, options=dict(jump_t=_t(0.4), step_t=_t(0.4)))


@pytest.mark.parametrize("adjoint", ADJ)
def test_jump_t_is_seen_by_the_adjoints(adjoint):
    k = torch.tensor(0.5, dtype=F64, requires_grad=True)
    y0 = torch.tensor([0.3], dtype=F64, requires_grad=True)

    def f(t, y):
        return torch.where(t < 0.4, 1.0, -2.0) * torch.ones_like(y) - k * y

    t = _t(0.0, 0.7, 1.0)
    kw = dict(options=dict(jump_t=_t(0.4)), adjoint_params=(k,), **TIGHT)
    g_direct = torch.autograd.grad(odeint(f, y0, t, **kw).sum(), (y0, k))
    ys, stats = odeint(f, y0, t, adjoint=adjoint, return_stats=True, **kw)
    g = torch.autograd.grad(ys.sum(), (y0, k))
    for a, b in zip(g, g_direct, strict=True):
        assert _rel(a, b) < 1e-8
    if adjoint != "backsolve":
        assert stats.backward["n_panels"] == 3  # [0, 0.4], [0.4, 0.7], [0.7, 1]


# -- adaptive control -------------------------------------------------------------------------------

def test_step_size_control_options():
    func = Field()
    y0 = torch.ones(2, dtype=F64)
    t = _t(0.0, 2.0)

    def run(**opts):
        return odeint(func, y0, t, options=opts, return_stats=True, rtol=1e-6, atol=1e-8)

    base, s_base = run()
    _, s_max = run(max_step=0.05)
    assert s_max.forward["n_accepted"] >= 40
    _, s_first = run(first_step=1e-7)
    assert s_first.forward["n_accepted"] > s_base.forward["n_accepted"]
    out, s_ctl = run(safety=0.5, ifactor=2.0, dfactor=0.5)
    assert s_ctl.forward["n_accepted"] > s_base.forward["n_accepted"]
    assert (out - base).abs().max() < 1e-5
    out, _ = run(min_step=1e-3, dtype=torch.float64)
    assert (out - base).abs().max() < 1e-5


def test_user_norm_sees_the_state_as_given():
    shapes = []

    def norm(x):
        shapes.append(tuple(x.shape) if torch.is_tensor(x) else tuple(tuple(c.shape) for c in x))
        return x.abs().max() if torch.is_tensor(x) else max(c.abs().max() for c in x)

    odeint(Field(), torch.ones(3, 2, dtype=F64), _t(0.0, 1.0), options=dict(norm=norm))
    assert set(shapes) == {(3, 2)}
    shapes.clear()
    odeint(lambda t, y: (-y[0], y[1]), (torch.ones(2, dtype=F64), torch.ones(1, dtype=F64)),
           _t(0.0, 1.0), options=dict(norm=norm))
    assert set(shapes) == {((2,), (1,))}


# -- adjoint options --------------------------------------------------------------------------------

def test_seminorm_backsolve():
    func = Field(d=3, seed=4)
    y0 = torch.randn(2, 3, dtype=F64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    t = torch.linspace(0, 2, 4, dtype=F64)
    tol = dict(rtol=1e-8, atol=1e-10)
    ref = torch.autograd.grad(odeint(func, y0, t, **tol).sum(), (y0, *func.parameters()))
    nfe = {}
    for norm in (None, "seminorm"):
        ys, stats = odeint(func, y0, t, adjoint="backsolve", return_stats=True,
                           adjoint_options=None if norm is None else dict(norm=norm), **tol)
        g = torch.autograd.grad(ys.sum(), (y0, *func.parameters()))
        for a, b in zip(g, ref, strict=True):
            assert _rel(a, b) < 1e-6
        nfe[norm] = stats.backward["nfe_f"]
    assert nfe["seminorm"] <= nfe[None]


def test_user_adjoint_norm_gets_torchdiffeqs_tuple():
    seen = []

    def anorm(x):
        seen.append(len(x))
        return max(v.abs().max() for v in x[1:])

    func = Field()
    y0 = torch.ones(2, dtype=F64, requires_grad=True)
    for adjoint, n in (("gq", 3), ("interpolated", 3), ("backsolve", 5)):
        seen.clear()
        ys = odeint(func, y0, _t(0.0, 1.0), adjoint=adjoint, adjoint_options=dict(norm=anorm))
        ys.sum().backward()
        assert set(seen) == {n}  # (t, y, adj_y, *adj_params): W and b for backsolve


def test_adjoint_method_and_options():
    func = Field()
    y0 = torch.ones(2, dtype=F64, requires_grad=True)
    t = _t(0.0, 1.0)
    with pytest.raises(ValueError, match="`adjoint_options` cannot be inferred"):
        odeint(func, y0, t, method="rk4", options=dict(step_size=0.1), adjoint="gq",
               adjoint_method="dopri5")
    ref = torch.autograd.grad(odeint(func, y0, t, **TIGHT).sum(), y0)[0]
    ys = odeint(func, y0, t, method="rk4", options=dict(step_size=0.01), adjoint="gq",
                adjoint_method="dopri5", adjoint_options=dict(), adjoint_rtol=1e-10,
                adjoint_atol=1e-12)
    (g,) = torch.autograd.grad(ys.sum(), y0)
    assert _rel(g, ref) < 1e-6
    ys = odeint(func, y0, t, adjoint="gq", adjoint_method="rk4",
                adjoint_options=dict(step_size=0.01), **TIGHT)
    (g,) = torch.autograd.grad(ys.sum(), y0)
    assert _rel(g, ref) < 1e-6


@pytest.mark.parametrize("nodes", ["paper", 3])
def test_quadrature_node_options(nodes):
    func = Field()
    y0 = torch.ones(2, dtype=F64, requires_grad=True)
    t = torch.linspace(0, 1, 4, dtype=F64)
    ys, stats = odeint(func, y0, t, adjoint="gq", return_stats=True,
                       adjoint_options=dict(nodes=nodes, gtol=0.5), **TIGHT)
    ys.sum().backward()
    if nodes == 3:
        assert stats.backward["n_nodes"] == 9
    else:
        assert stats.backward["n_nodes"] >= 3


# -- errors -------------------------------------------------------------------------------------------

def _run(**kw):
    func = kw.pop("func", Field())
    y0 = kw.pop("y0", torch.ones(2, dtype=F64, requires_grad=True))
    ys = odeint(func, y0, kw.pop("t", _t(0.0, 1.0)), **kw)
    ys.sum().backward()


def test_unknown_options_raise_listing_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['stepsize'\] for method 'rk4'; "
                                         r"valid: \[.*'step_size'.*\]"):
        _run(method="rk4", options=dict(stepsize=0.1))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['perturb'\] for method 'dopri5'"):
        _run(options=dict(perturb=True))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['first_step'\] for method 'euler'"):
        _run(method="euler", options=dict(first_step=0.1))
    # keys that are not torchdiffeq solver options go to the strategy's constructor
    with pytest.raises(ValueError, match=r"adjoint_options: adjoint='gq' \(GQAdjoint\) takes no "
                                         r"\['grid'\]; its settings: \[.*'nodes'.*\]"):
        _run(adjoint="gq", adjoint_options=dict(grid=1))
    with pytest.raises(ValueError, match="applies to adaptive step-size control"):
        _run(options=dict(step_size=0.1, first_step=0.1))


def test_invalid_option_values():
    cases = [
        (dict(options=dict(safety=1.5)), ValueError, r"options\['safety'\] must be in \(0, 1\]"),
        (dict(options=dict(dfactor=2.0)), ValueError, r"options\['dfactor'\] must be in"),
        (dict(options=dict(ifactor=0.5)), ValueError, r"options\['ifactor'\] must be at least 1"),
        (dict(options=dict(first_step=-1.0)), ValueError, "must be positive"),
        (dict(options=dict(max_num_steps=0)), ValueError, "positive integer"),
        (dict(options=dict(dtype="float64")), TypeError, "floating torch.dtype"),
        (dict(options=dict(norm="l2")), ValueError, r"options\['norm'\] must be"),
        (dict(options=dict(norm="seminorm")), ValueError, r"options\['norm'\] must be"),
        (dict(method="euler", options=dict(interp="quadratic")), ValueError, "'linear' or 'cubic'"),
        (dict(method="euler", options=dict(perturb=1)), TypeError, "must be a bool"),
        (dict(method="euler", options=dict(step_size=0.0)), ValueError, "must be positive"),
        (dict(options=[("rtol", 1)]), TypeError, "`options` must be a dict"),
        (dict(adjoint="gq", adjoint_options=dict(nodes="many")), ValueError, "nodes"),
        (dict(adjoint="backsolve", adjoint_options=dict(nodes=3)), ValueError,
         r"adjoint_options: adjoint='backsolve' \(BacksolveAdjoint\) takes no \['nodes'\]"),
        (dict(adjoint="gq", adjoint_rtol=torch.tensor([1e-6, 1e-6])), ValueError,
         "must be a scalar for the adjoint"),
        (dict(adjoint="gq", options=dict(jump_t=_t(0.5)), adjoint_options=dict(jump_t=_t(0.6))),
         ValueError, r"adjoint_options\['jump_t'\] must equal"),
        (dict(method="rk4", options=dict(step_size=0.1), adjoint="gq",
              adjoint_options=dict(grid_constructor=lambda f, y, t: t)), ValueError,
         "grid_constructor'] is not supported"),
    ]
    for kw, exc, match in cases:
        with pytest.raises(exc, match=match):
            _run(**kw)


def test_interp_is_accepted_and_outputs_land_exactly():
    t = _t(0.0, 0.55, 1.0)
    a = odeint(Field(), torch.ones(2, dtype=F64), t, method="rk4",
               options=dict(step_size=0.1, interp="cubic"))
    b = odeint(Field(), torch.ones(2, dtype=F64), t, method="rk4",
               options=dict(step_size=0.1, interp="linear"))
    assert torch.equal(a, b)
    exact = odeint(Field(), torch.ones(2, dtype=F64), t, **TIGHT)
    assert np.abs((a - exact).detach().numpy()).max() < 1e-5


@pytest.mark.parametrize("kw", [dict(adjoint_method="bogus"), dict(adjoint_rtol=-1.0),
                                dict(adjoint_options=dict(first_step=-1.0)),
                                dict(adjoint_options=dict(norm="rms"))])
def test_checkpoint_default_validates_the_settings_it_does_not_need(kw):
    """The discrete adjoint has no backward solve, but bad torchdiffeq settings still raise."""
    import torch as _torch

    from gqlib.torch import odeint_adjoint as _oa

    lin = _torch.nn.Linear(2, 2).double()
    with pytest.raises(ValueError):
        _oa(lambda t, y: lin(y), _torch.ones(2, dtype=_torch.float64),
            _torch.linspace(0, 1, 3, dtype=_torch.float64), adjoint_params=tuple(lin.parameters()),
            **kw)
