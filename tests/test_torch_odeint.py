"""gqlib.torch.odeint: values against torchdiffeq and exact solutions, states, dtypes, errors, stats."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchdiffeq = pytest.importorskip("torchdiffeq")

import gqlib  # noqa: E402
from gqlib.torch import OdeintStats, odeint, odeint_adjoint  # noqa: E402

pytestmark = pytest.mark.torch
F64 = torch.float64
TIGHT = dict(rtol=1e-10, atol=1e-12)


class Field(torch.nn.Module):
    """A small non-autonomous MLP field (a wrong stage time c would show)."""

    def __init__(self, d=3, width=8, seed=0, dtype=F64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1 = torch.nn.Linear(d, width).to(dtype)
        self.l2 = torch.nn.Linear(width, d).to(dtype)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.5)

    def forward(self, t, y):
        return self.l2(torch.tanh(self.l1(y))) * (1.0 + 0.5 * torch.sin(2.0 * t)) - 0.1 * y


def _linear(t, y):
    A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=y.dtype)
    return y @ A.T


def _linear_exact(t, y0):
    from scipy.linalg import expm

    A = np.array([[-0.5, 2.0], [-2.0, -0.5]])
    return np.stack([expm(A * s) @ y0 for s in np.asarray(t)])


# -- values ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["euler", "midpoint", "heun2", "heun3", "rk4"])
def test_fixed_methods_match_torchdiffeq(method):
    # step_size divides every output interval: the grids coincide and so must the values
    func = Field()
    y0 = torch.randn(2, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=F64)
    opts = dict(step_size=0.05)
    with torch.no_grad():
        ours = odeint(func, y0, t, method=method, options=opts)
        ref = torchdiffeq.odeint(func, y0, t, method=method, options=opts)
    assert torch.allclose(ours, ref, rtol=1e-12, atol=1e-12)


def test_rk4_is_torchdiffeqs_three_eighths_rule():
    # (nonlinear and non-autonomous: on linear problems all 4-stage order-4 methods coincide)
    func = Field()
    y0 = torch.tensor([1.0, 0.0, 0.5], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with torch.no_grad():
        ours = odeint(func, y0, t, method="rk4", options=dict(step_size=0.25))
        core = gqlib.solve(lambda s, y: func(torch.tensor(s, dtype=F64), y), y0, [0.0, 1.0],
                           method="rk38", step_size=0.25)
        classic = gqlib.solve(lambda s, y: func(torch.tensor(s, dtype=F64), y), y0, [0.0, 1.0],
                              method="rk4", step_size=0.25)
    assert torch.equal(ours, core.y)
    assert not torch.allclose(ours, classic.y, rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", ["dopri5", "dopri8", "bosh3", "adaptive_heun", "fehlberg2"])
def test_adaptive_methods_match_torchdiffeq_and_exact(method):
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.linspace(0.0, 3.0, 7, dtype=F64)
    tol = dict(rtol=1e-9, atol=1e-11) if method in ("dopri5", "dopri8") else dict(rtol=1e-5, atol=1e-7)
    ours = odeint(_linear, y0, t, method=method, **tol)
    ref = torchdiffeq.odeint(_linear, y0, t, method=method, **tol)
    exact = torch.as_tensor(_linear_exact(t.numpy(), y0.numpy()))
    scale = 1e3 * tol["rtol"]
    assert (ours - exact).abs().max() < scale
    assert (ours - ref).abs().max() < scale


def test_tsit5_runs_and_is_accurate():
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.linspace(0.0, 3.0, 7, dtype=F64)
    ours = odeint(_linear, y0, t, method="tsit5", rtol=1e-9, atol=1e-11)
    exact = torch.as_tensor(_linear_exact(t.numpy(), y0.numpy()))
    assert (ours - exact).abs().max() < 1e-7


def test_decreasing_times_match_torchdiffeq():
    func = Field()
    y0 = torch.randn(3, dtype=F64, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([1.0, 0.4, -0.3], dtype=F64)
    with torch.no_grad():
        ours = odeint(func, y0, t, **TIGHT)
        ref = torchdiffeq.odeint(func, y0, t, **TIGHT)
        fixed = odeint(func, y0, t, method="rk4", options=dict(step_size=0.1))
        fixed_ref = torchdiffeq.odeint(func, y0, t, method="rk4", options=dict(step_size=0.1))
    assert (ours - ref).abs().max() < 1e-8
    assert (fixed - fixed_ref).abs().max() < 1e-12


def test_single_time_returns_y0():
    y0 = torch.randn(2, 3, dtype=F64)
    for method in ("dopri5", "euler"):
        out = odeint(Field(), y0, torch.tensor([0.3], dtype=F64), method=method)
        assert out.shape == (1, 2, 3) and torch.equal(out[0], y0)


@pytest.mark.parametrize("adjoint", [None, "gq", "backsolve", "interpolated"])
def test_single_time_backward(adjoint):
    """len(t) == 1: dL/dy0 = dL/dy(t0), zero parameter and time gradients, in every mode."""
    func = Field()
    y0 = torch.randn(2, 3, dtype=F64, requires_grad=True)
    t = torch.tensor([0.3], dtype=F64, requires_grad=True)
    out = odeint(func, y0, t, adjoint=adjoint)
    (2.0 * out).sum().backward()
    assert torch.equal(y0.grad, torch.full_like(y0, 2.0))
    for p in func.parameters():
        assert p.grad is None or torch.count_nonzero(p.grad) == 0
    assert t.grad is None or torch.count_nonzero(t.grad) == 0


# -- states: batch dimensions, tuples, dtypes ------------------------------------------------------

def test_batch_dimensions_keep_their_shape():
    func = Field()
    y0 = torch.randn(2, 3, 3, dtype=F64, generator=torch.Generator().manual_seed(3))
    t = torch.linspace(0, 1, 4, dtype=F64)
    with torch.no_grad():
        ours = odeint(func, y0, t, **TIGHT)
        ref = torchdiffeq.odeint(func, y0, t, **TIGHT)
    assert ours.shape == (4, 2, 3, 3)
    assert (ours - ref).abs().max() < 1e-8


def _tuple_func(t, y):
    x, v = y
    return v, -x - 0.1 * v * (1 + torch.cos(t))


def test_tuple_state_matches_torchdiffeq():
    y0 = (torch.tensor([1.0, 0.5], dtype=F64), torch.tensor([[0.0], [0.2]], dtype=F64).reshape(2))
    t = torch.linspace(0, 2, 5, dtype=F64)
    ours = odeint(_tuple_func, y0, t, **TIGHT)
    ref = torchdiffeq.odeint(_tuple_func, y0, t, **TIGHT)
    assert isinstance(ours, tuple) and len(ours) == 2
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape == (5, 2)
        assert (a - b).abs().max() < 1e-8
    fixed = odeint(_tuple_func, y0, t, method="rk4", options=dict(step_size=0.1))
    fixed_ref = torchdiffeq.odeint(_tuple_func, y0, t, method="rk4", options=dict(step_size=0.1))
    for a, b in zip(fixed, fixed_ref, strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)


def test_tuple_state_of_mixed_shapes_and_tuple_tolerances():
    def f(t, y):
        a, b = y
        return -a, b.sum() * torch.ones_like(b) * 0.1

    y0 = (torch.ones(2, 2, dtype=F64), torch.ones(3, dtype=F64))
    t = torch.tensor([0.0, 1.0], dtype=F64)
    ours = odeint(f, y0, t, rtol=(1e-9, 1e-9), atol=(1e-11, 1e-11))
    assert ours[0].shape == (2, 2, 2) and ours[1].shape == (2, 3)
    assert torch.allclose(ours[0][-1], torch.full((2, 2), math.exp(-1.0), dtype=F64), rtol=1e-7)
    assert torch.allclose(ours[1][-1], torch.full((3,), math.exp(0.3), dtype=F64), rtol=1e-7)


def test_float32_state_and_time_tensor_passed_to_func():
    seen = []

    def f(t, y):
        seen.append((t.dtype, t.shape, t.device))
        return -y

    y0 = torch.ones(3, dtype=torch.float32)
    t = torch.tensor([0.0, 1.0], dtype=torch.float32)
    out = odeint(f, y0, t, rtol=1e-5, atol=1e-7)
    assert out.dtype == torch.float32
    assert abs(out[-1, 0].item() - math.exp(-1.0)) < 1e-5
    assert all(s == (torch.float32, torch.Size([]), y0.device) for s in seen)


def test_per_element_tolerance_tensor():
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    out = odeint(_linear, y0, t, rtol=torch.tensor([1e-9, 1e-9]), atol=torch.tensor(1e-11))
    exact = _linear_exact([0.0, 1.0], y0.numpy())
    assert np.abs(out.numpy() - exact).max() < 1e-7


# -- stats ----------------------------------------------------------------------------------------

def test_stats_count_every_evaluation_without_a_counter_in_the_model():
    calls = [0]

    class Counted(Field):
        def forward(self, t, y):
            calls[0] += 1
            return super().forward(t, y)

    func = Counted()
    y0 = torch.randn(3, dtype=F64)
    t = torch.linspace(0, 1, 3, dtype=F64)
    ys, stats = odeint(func, y0, t, adjoint="gq", return_stats=True)
    assert isinstance(stats, OdeintStats) and stats.adjoint == "gq" and stats.method == "dopri5_shampine"  # torchdiffeq's dopri5
    assert stats.nfe == calls[0] == stats.forward["nfe"] > 0
    assert stats.backward is None and stats.nfe_backward is None
    calls[0] = 0
    ys.sum().backward()
    b = stats.backward
    assert set(b) >= {"nfe_f", "nfe_vjp_y", "nfe_vjp_params", "n_nodes", "n_accepted", "n_rejected"}
    # every backward evaluation is a call of func: plain, fused with a y-VJP, or for a node VJP
    # (and two calls whose graphs are searched for tensors outside adjoint_params)
    assert calls[0] == b["nfe_f"] + b["nfe_vjp_params"] + b["nfe_check"]
    assert b["nfe_check"] == 2
    assert b["n_nodes"] == b["nfe_vjp_params"] > 0
    _, s_direct = odeint(func, y0, t, return_stats=True)
    assert s_direct.adjoint is None and s_direct.forward["n_accepted"] > 0


def test_odeint_adjoint_is_the_default_strategy_with_torchdiffeqs_signature():
    import inspect

    ours = inspect.signature(odeint_adjoint).parameters
    theirs = inspect.signature(torchdiffeq.odeint_adjoint).parameters
    for name, p in theirs.items():
        assert name in ours and ours[name].default == p.default and ours[name].kind == p.kind
    func = Field()
    y0 = torch.randn(3, dtype=F64)
    t = torch.linspace(0, 1, 3, dtype=F64)
    ys, stats = odeint_adjoint(func, y0, t, return_stats=True, adjoint_rtol=1e-6,
                               adjoint_options=dict(norm="seminorm"))
    assert stats.adjoint == gqlib.adjoint.DEFAULT_ADJOINT == "auto"
    ys.sum().backward()
    assert stats.backward["strategy"] == "checkpoint"  # a small field: P << 8e4 x state size
    assert stats.backward["n_steps"] == stats.forward["n_accepted"]
    ys, stats = odeint_adjoint(func, y0, t, return_stats=True, adjoint="gq",
                               adjoint_options=dict(norm="seminorm"))
    assert stats.adjoint == "gq"
    ys.sum().backward()
    assert stats.backward["n_nodes"] > 0


# -- errors ----------------------------------------------------------------------------------------

def _err(exc, match, **kw):
    args = dict(func=Field(), y0=torch.ones(3, dtype=F64), t=torch.tensor([0.0, 1.0], dtype=F64))
    args.update(kw)
    with pytest.raises(exc, match=match):
        odeint(args.pop("func"), args.pop("y0"), args.pop("t"), **args)


def test_func_output_errors():
    _err(ValueError, r"returned shape \(2,\); expected `y0`'s shape \(3,\)", func=lambda t, y: y[:2])
    _err(TypeError, "returned dtype torch.float32; expected `y0`'s dtype torch.float64",
         func=lambda t, y: y.float())
    _err(TypeError, "must return a torch.Tensor", func=lambda t, y: 1.0)
    _err(TypeError, "must return a tuple of 2 tensors", func=lambda t, y: y[0],
         y0=(torch.ones(2, dtype=F64), torch.ones(1, dtype=F64)))
    _err(ValueError, r"`func\(t, y\)`\[1\] returned shape", func=lambda t, y: (y[0], y[0]),
         y0=(torch.ones(2, dtype=F64), torch.ones(1, dtype=F64)))
    _err(TypeError, "`func` must be callable", func=3)


def test_input_errors():
    _err(TypeError, "`y0` must be a torch.Tensor or a tuple", y0=np.ones(3))
    _err(TypeError, r"`y0\[1\]` must be a torch.Tensor", y0=(torch.ones(1), 2.0))
    _err(TypeError, "`y0` must be a floating point tensor", y0=torch.ones(3, dtype=torch.int64))
    _err(TypeError, "`t` must be a 1-D torch.Tensor", t=[0.0, 1.0])
    _err(TypeError, "`t` must be a floating point tensor", t=torch.tensor([0, 1]))
    _err(ValueError, "`t` must be one-dimensional", t=torch.zeros(2, 2, dtype=F64))
    _err(ValueError, r"strictly monotonic; t\[2\] = 0.5 is not after t\[1\] = 0.5",
         t=torch.tensor([0.0, 0.5, 0.5], dtype=F64))
    _err(ValueError, "strictly monotonic", t=torch.tensor([0.0, 1.0, 0.5], dtype=F64))
    _err(ValueError, "`rtol` cannot require gradient",
         rtol=torch.tensor([1e-6, 1e-6, 1e-6], requires_grad=True))
    _err(ValueError, "does not broadcast", atol=torch.ones(4) * 1e-9)


def test_method_errors():
    _err(ValueError, r"`method` must be one of \[.*'dopri5'.*\], got 'rk45'", method="rk45")
    for name in ("explicit_adams", "implicit_adams", "fixed_adams", "scipy_solver"):
        _err(ValueError, "not supported by gqlib.torch, which has explicit Runge-Kutta methods only",
             method=name)
    _err(TypeError, "`event_fn` must be callable", event_fn=3)
    _err(ValueError, r"`adjoint` must be None .* got 'adams'", adjoint="adams")


def test_adjoint_on_plain_callable_needs_adjoint_params():
    w = torch.tensor(0.5, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match="pass them as `adjoint_params`"):
        odeint(lambda t, y: -w * y, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
               adjoint="gq")
    with pytest.raises(ValueError, match="pass them as `adjoint_params`"):
        odeint_adjoint(lambda t, y: -w * y, torch.ones(2, dtype=F64),
                       torch.tensor([0.0, 1.0], dtype=F64))
    with pytest.raises(TypeError, match=r"`adjoint_params\[0\]` must be a torch.Tensor"):
        odeint(lambda t, y: -w * y, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
               adjoint="gq", adjoint_params=[0.5])


def test_solve_failures_carry_the_time():
    with pytest.raises(gqlib.errors.TooManySteps, match=r"t = "):
        odeint(Field(), torch.ones(3, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
               options=dict(max_num_steps=3))
    with pytest.raises(gqlib.errors.GQLibError):
        odeint(lambda t, y: y * y, torch.ones(1, dtype=F64), torch.tensor([0.0, 2.0], dtype=F64))


def test_double_backward_through_an_adjoint_raises():
    func = Field()
    y0 = torch.randn(3, dtype=F64, requires_grad=True)
    ys = odeint(func, y0, torch.tensor([0.0, 1.0], dtype=F64), adjoint="gq")
    with pytest.raises(NotImplementedError, match="double backward"):
        torch.autograd.grad(ys.sum(), y0, create_graph=True)


def test_in_place_edit_of_the_output_is_caught():
    func = Field()
    y0 = torch.randn(3, dtype=F64, requires_grad=True)
    ys = odeint(func, y0, torch.tensor([0.0, 1.0], dtype=F64), adjoint="gq")
    ys.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        ys.sum().backward()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_state_stays_on_the_device():
    func = Field().cuda()
    y0 = torch.randn(4, 3, dtype=F64, device="cuda", requires_grad=True)
    t = torch.linspace(0, 1, 3, dtype=F64, device="cuda")
    for adjoint in (None, "gq", "backsolve", "interpolated"):
        ys = odeint(func, y0, t, adjoint=adjoint)
        assert ys.device == y0.device
        (g,) = torch.autograd.grad(ys.sum(), y0)
        assert g.device == y0.device
