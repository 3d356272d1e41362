"""gqlib.torch gradients: gradcheck, every adjoint against direct backprop, exact dL/dt,
torchdiffeq's adjoint, tuple and batched states, float32, tsit5."""

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchdiffeq = pytest.importorskip("torchdiffeq")

import gqlib  # noqa: E402
from gqlib.torch import odeint, odeint_adjoint  # noqa: E402

pytestmark = pytest.mark.torch
F64 = torch.float64
ADJ = ["gq", "backsolve", "interpolated", "collocation"]
TIGHT = dict(rtol=1e-10, atol=1e-12)


class Field(torch.nn.Module):
    """A small non-autonomous MLP field with a parameter that enters only through t."""

    def __init__(self, d=3, width=8, seed=0, dtype=F64):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1 = torch.nn.Linear(d, width).to(dtype)
        self.l2 = torch.nn.Linear(width, d).to(dtype)
        self.omega = torch.nn.Parameter(torch.tensor(2.0, dtype=dtype))
        with torch.no_grad():
            for p in (*self.l1.parameters(), *self.l2.parameters()):
                p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.6)

    def forward(self, t, y):
        return self.l2(torch.tanh(self.l1(y))) * (1.0 + 0.5 * torch.sin(self.omega * t)) - 0.1 * y


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def _grads(func, y0, t, weights, **kw):
    """dL/d(y0, t, params) for L = sum(weights * ys)."""
    ys = odeint(func, y0, t, **kw)
    if isinstance(ys, tuple):
        loss = sum((w * y).sum() for w, y in zip(weights, ys, strict=True))
        y0s = tuple(y0)
    else:
        loss = (weights * ys).sum()
        y0s = (y0,)
    params = tuple(func.parameters()) if isinstance(func, torch.nn.Module) else kw["adjoint_params"]
    return torch.autograd.grad(loss, (*y0s, t, *params))


def _problem(shape=(2, 3), n_t=5, t1=1.5, seed=1, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    y0 = torch.randn(shape, generator=g, dtype=dtype).requires_grad_(True)
    t = torch.linspace(0.0, t1, n_t, dtype=dtype).requires_grad_(True)
    w = torch.randn((n_t, *shape), generator=g, dtype=dtype)
    return y0, t, w


# -- gradcheck on small fixed-step problems ---------------------------------------------------------

def _functional(W, b, c):
    def f(t, y):
        return torch.tanh(y @ W.T + b) * (1.0 + c * t) - 0.2 * y
    return f


def _gc_inputs():
    g = torch.Generator().manual_seed(5)
    W = (0.7 * torch.randn(2, 2, generator=g, dtype=F64)).requires_grad_(True)
    b = (0.3 * torch.randn(2, generator=g, dtype=F64)).requires_grad_(True)
    c = torch.tensor(0.4, dtype=F64, requires_grad=True)
    y0 = torch.randn(3, 2, generator=g, dtype=F64).requires_grad_(True)
    t = torch.tensor([0.0, 0.35, 0.7], dtype=F64, requires_grad=True)
    return y0, t, W, b, c


@pytest.mark.parametrize("method", ["euler", "rk4", "dopri5"])
def test_gradcheck_direct_fixed_step(method):
    y0, t, W, b, c = _gc_inputs()

    def run(y0, W, b, c):
        return odeint(_functional(W, b, c), y0, t.detach(), method=method,
                      options=dict(step_size=0.1))

    assert torch.autograd.gradcheck(run, (y0, W, b, c))


def test_gradcheck_direct_times_rk4():
    # dL/dt_i is the exact g_i . f(t_i, y_i): equal to the discrete derivative up to O(h^4)
    y0, t, W, b, c = _gc_inputs()

    def run(t):
        return odeint(_functional(W, b, c), y0, t, method="rk4", options=dict(step_size=0.02))

    assert torch.autograd.gradcheck(run, (t,), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("adjoint", ADJ)
def test_gradcheck_adjoints_rk4(adjoint):
    # the adjoints differentiate the ODE, not the discretisation: small steps (not dividing the
    # intervals, so that perturbing t leaves the step count alone), then gradcheck
    y0, t, W, b, c = _gc_inputs()

    def run(y0, t, W, b, c):
        return odeint(_functional(W, b, c), y0, t, method="rk4", options=dict(step_size=0.04),
                      adjoint=adjoint, adjoint_params=(W, b, c), rtol=1e-10, atol=1e-12)

    assert torch.autograd.gradcheck(run, (y0, t, W, b, c), atol=1e-5, rtol=1e-4, fast_mode=True)


# -- every adjoint equals direct backpropagation ---------------------------------------------------

@pytest.mark.parametrize("adjoint", ADJ)
@pytest.mark.parametrize("method", ["dopri5", "tsit5"])
def test_adjoints_equal_direct_backprop(adjoint, method):
    func = Field()
    y0, t, w = _problem()
    ref = _grads(func, y0, t, w, method=method, **TIGHT)
    got = _grads(func, y0, t, w, method=method, adjoint=adjoint, **TIGHT)
    for name, a, b in zip(["y0", "t", "W1", "b1", "W2", "b2", "omega"], got, ref, strict=True):
        assert _rel(a, b) < 1e-6, (name, _rel(a, b))


@pytest.mark.parametrize("adjoint", ADJ)
def test_adjoints_equal_direct_backprop_decreasing_time(adjoint):
    func = Field(seed=2)
    y0, _, w = _problem(shape=(3,), n_t=4, seed=3)
    t = torch.tensor([1.0, 0.6, -0.1, -0.5], dtype=F64, requires_grad=True)
    ref = _grads(func, y0, t, w, **TIGHT)
    got = _grads(func, y0, t, w, adjoint=adjoint, **TIGHT)
    for a, b in zip(got, ref, strict=True):
        assert _rel(a, b) < 1e-6


@pytest.mark.parametrize("adjoint", ADJ)
def test_adjoints_with_fixed_step_agree_with_direct_at_the_step_error(adjoint):
    # in fixed-step mode rtol and atol set only the accuracy of GQ's quadrature
    func = Field()
    y0, t, w = _problem(n_t=3)
    kw = dict(method="rk4", options=dict(step_size=0.02), rtol=1e-8, atol=1e-10)
    ref = _grads(func, y0, t, w, **kw)
    got = _grads(func, y0, t, w, adjoint=adjoint, **kw)
    for a, b in zip(got, ref, strict=True):
        assert _rel(a, b) < 1e-6


def _linear_exact_t_grad(A, y0, t, c):
    from scipy.linalg import expm

    dt = np.zeros(len(t))
    for i in range(1, len(t)):
        v = A @ expm(A * (t[i] - t[0])) @ y0
        dt[i] = c[i] @ v
        dt[0] -= c[i] @ v
    return dt


@pytest.mark.parametrize("adjoint", [None, *ADJ])
def test_time_gradients_are_exact(adjoint):
    A = torch.tensor([[-0.3, 1.5], [-1.5, -0.3]], dtype=F64)
    y0 = torch.tensor([1.0, 0.5], dtype=F64)
    t = torch.tensor([0.2, 0.5, 1.1, 1.6], dtype=F64, requires_grad=True)
    c = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    ys = odeint(lambda s, y: A @ y, y0, t, adjoint=adjoint, adjoint_params=(), **TIGHT)
    (gt,) = torch.autograd.grad((c * ys).sum(), t)
    exact = _linear_exact_t_grad(A.numpy(), y0.numpy(), t.detach().numpy(), c.numpy())
    assert np.abs(gt.numpy() - exact).max() < 1e-8 * np.abs(exact).max()


@pytest.mark.parametrize("adjoint", ADJ)
def test_time_gradients_match_central_differences(adjoint):
    func = Field()
    y0, t, w = _problem(n_t=3)
    y0 = y0.detach()
    ys = odeint(func, y0, t, adjoint=adjoint, **TIGHT)
    (gt,) = torch.autograd.grad((w * ys).sum(), t)
    eps = 1e-5
    fd = []
    with torch.no_grad():
        for i in range(len(t)):
            e = torch.zeros_like(t)
            e[i] = eps
            lp = (w * odeint(func, y0, t.detach() + e, **TIGHT)).sum()
            lm = (w * odeint(func, y0, t.detach() - e, **TIGHT)).sum()
            fd.append((lp - lm) / (2 * eps))
    assert _rel(gt, torch.stack(fd)) < 1e-6


# -- against torchdiffeq ------------------------------------------------------------------------

@pytest.mark.parametrize("adjoint", ADJ)
def test_agrees_with_torchdiffeqs_adjoint(adjoint):
    func = Field(seed=4)
    y0, t, w = _problem(seed=6)
    got = _grads(func, y0, t, w, adjoint=adjoint, **TIGHT)
    ys = torchdiffeq.odeint_adjoint(func, y0, t, **TIGHT)
    ref = torch.autograd.grad((w * ys).sum(), (y0, t, *func.parameters()))
    for a, b in zip(got, ref, strict=True):
        assert _rel(a, b) < 1e-6


def test_odeint_adjoint_drop_in_for_torchdiffeq():
    func = Field(seed=7)
    y0, t, w = _problem(seed=8)
    ours = odeint_adjoint(func, y0, t, **TIGHT)
    theirs = torchdiffeq.odeint_adjoint(func, y0, t, **TIGHT)
    assert (ours - theirs).abs().max() < 1e-8
    g1 = torch.autograd.grad((w * ours).sum(), (y0, *func.parameters()))
    g2 = torch.autograd.grad((w * theirs).sum(), (y0, *func.parameters()))
    for a, b in zip(g1, g2, strict=True):
        assert _rel(a, b) < 1e-6


# -- states, parameters, dtypes ----------------------------------------------------------------------

def _osc(k, damp):
    def f(t, y):
        x, v = y
        return v, -k * x - damp * v * torch.cos(t)
    return f


@pytest.mark.parametrize("adjoint", ADJ)
def test_tuple_state_gradients(adjoint):
    k = torch.tensor(1.3, dtype=F64, requires_grad=True)
    damp = torch.tensor(0.2, dtype=F64, requires_grad=True)
    g = torch.Generator().manual_seed(9)
    x0 = torch.randn(2, generator=g, dtype=F64).requires_grad_(True)
    v0 = torch.randn(2, 2, generator=g, dtype=F64).sum(1).requires_grad_(True)
    t = torch.linspace(0, 2, 4, dtype=F64).requires_grad_(True)
    w = (torch.randn(4, 2, generator=g, dtype=F64), torch.randn(4, 2, generator=g, dtype=F64))
    kw = dict(adjoint_params=(k, damp), **TIGHT)
    ref = _grads(_osc(k, damp), (x0, v0), t, w, **kw)
    got = _grads(_osc(k, damp), (x0, v0), t, w, adjoint=adjoint, **kw)
    for a, b in zip(got, ref, strict=True):
        assert _rel(a, b) < 1e-6
    ys = torchdiffeq.odeint_adjoint(_osc(k, damp), (x0, v0), t, **kw)
    td = torch.autograd.grad(sum((wi * yi).sum() for wi, yi in zip(w, ys, strict=True)), (x0, v0, t, k, damp))
    for a, b in zip(got, td, strict=True):
        assert _rel(a, b) < 1e-6


@pytest.mark.parametrize("adjoint", ["gq", "backsolve"])
def test_batched_state_gradients(adjoint):
    func = Field(seed=10)
    y0, t, w = _problem(shape=(2, 2, 3), n_t=3, seed=11)
    ref = _grads(func, y0, t, w, **TIGHT)
    got = _grads(func, y0, t, w, adjoint=adjoint, **TIGHT)
    for a, b in zip(got, ref, strict=True):
        assert _rel(a, b) < 1e-6


@pytest.mark.parametrize("adjoint", [None, *ADJ])
def test_float32(adjoint):
    func64 = Field(seed=12)
    func32 = copy.deepcopy(func64).float()
    y0, t, w = _problem(n_t=3, seed=13)
    ref = _grads(func64, y0, t, w, **TIGHT)
    y32 = y0.detach().float().requires_grad_(True)
    t32 = t.detach().float().requires_grad_(True)
    got = _grads(func32, y32, t32, w.float(), rtol=1e-6, atol=1e-7, adjoint=adjoint)
    for a, b in zip(got, ref, strict=True):
        assert a.dtype == torch.float32
        assert _rel(a.double(), b) < 1e-4


@pytest.mark.parametrize("adjoint", ADJ)
def test_partial_requires_grad_and_unused_parameters(adjoint):
    used = torch.tensor(0.7, dtype=F64, requires_grad=True)
    unused = torch.ones(2, dtype=F64, requires_grad=True)
    frozen = torch.tensor(0.3, dtype=F64)  # filtered out: does not require grad
    y0 = torch.ones(2, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)

    def f(t, y):
        return -used * y + frozen

    ys = odeint(f, y0, t, adjoint=adjoint, adjoint_params=(used, unused, frozen), **TIGHT)
    g_used, g_unused = torch.autograd.grad(ys[-1].sum(), (used, unused))
    assert torch.equal(g_unused, torch.zeros(2, dtype=F64))
    # y = (1 - c) e^{-k t} + c, c = frozen / k: dy/dk at t = 1
    k, c0, e = 0.7, 0.3, np.exp(-0.7)
    exact = 2 * ((c0 / k**2) * e - (1 - c0 / k) * e - c0 / k**2)
    assert abs(g_used.item() - exact) < 1e-8
    # only y0 requires grad: the parameter-free field is used and nothing else is computed
    y0g = y0.clone().requires_grad_(True)
    ys = odeint(f, y0g, t, adjoint=adjoint, adjoint_params=(used,), **TIGHT)
    (gy,) = torch.autograd.grad(ys[-1].sum(), y0g)
    assert torch.allclose(gy, torch.full((2,), e, dtype=F64), rtol=1e-8)


@pytest.mark.parametrize("adjoint", ["auto", "checkpoint", "interpolated", "gq"])
def test_a_parameter_listed_twice_gets_its_gradient_once(adjoint):
    # `adjoint_params=(*m.parameters(), k)` with k among them: each listed tensor was an input
    # of the autograd Function, got the whole a^T df/dk, and k's gradient came out doubled
    k = torch.tensor(0.7, dtype=F64, requires_grad=True)
    y0 = torch.ones(2, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    strategy = gqlib.adjoint.DEFAULT_ADJOINT if adjoint == "auto" else adjoint
    ys = odeint(lambda s, y: -k * y, y0, t, adjoint=strategy, adjoint_params=(k, k), **TIGHT)
    (g,) = torch.autograd.grad(ys[-1].sum(), k)
    assert abs(g.item() + 2 * np.exp(-0.7)) < 1e-8  # d/dk 2 exp(-k)


def test_backward_twice_with_retain_graph():
    func = Field()
    y0, t, w = _problem(n_t=3)
    ys = odeint(func, y0, t, adjoint="gq", **TIGHT)
    loss = (w * ys).sum()
    g1 = torch.autograd.grad(loss, y0, retain_graph=True)[0]
    g2 = torch.autograd.grad(loss, y0)[0]
    assert torch.equal(g1, g2)


@pytest.mark.slow
@pytest.mark.parametrize("adjoint", ADJ)
@pytest.mark.parametrize("method", ["dopri8", "bosh3", "adaptive_heun", "fehlberg2"])
def test_adjoints_equal_direct_every_adaptive_method(adjoint, method):
    func = Field()
    y0, t, w = _problem(n_t=3)
    tol = TIGHT if method == "dopri8" else dict(rtol=1e-8, atol=1e-10)
    ref = _grads(func, y0, t, w, method=method, **tol)
    got = _grads(func, y0, t, w, method=method, adjoint=adjoint, **tol)
    for a, b in zip(got, ref, strict=True):
        assert _rel(a, b) < 1e-5


@pytest.mark.parametrize("adjoint", ["auto", "checkpoint", "interpolated"])
def test_a_closed_over_tensor_outside_adjoint_params_raises(adjoint):
    # an nn.Module reading a tensor that requires grad but is not one of its parameters got no
    # gradient for it from every adjoint (direct backprop gives one): 9 % of the gradient gone
    ext = torch.tensor([0.5, -1.0], dtype=F64, requires_grad=True)
    lin = torch.nn.Linear(2, 2).double()

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, t, y):
            return torch.tanh(self.lin(y)) * ext

    strategy = gqlib.adjoint.DEFAULT_ADJOINT if adjoint == "auto" else adjoint
    y0 = torch.ones(2, dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    with pytest.raises(ValueError, match=r"shape \(2,\) that requires grad but is not in "
                                         "`adjoint_params`"):
        odeint(Scaled(), y0, t, adjoint=strategy, **TIGHT)[-1].sum().backward()
    w = torch.tensor(0.3, dtype=F64, requires_grad=True)
    with pytest.raises(ValueError, match="not in `adjoint_params`"):  # a closure, one forgotten
        odeint(lambda s, y: -w * y * ext, y0, t, adjoint=strategy, adjoint_params=(w,),
               **TIGHT)[-1].sum().backward()
    # listed: the gradients of direct backprop; a module parameter left out of an explicit
    # adjoint_params is the caller's word (torchdiffeq's meaning) and gets none
    m = Scaled()
    grads = []
    for kw in (dict(adjoint=None), dict(adjoint=strategy, adjoint_params=(ext, lin.weight))):
        ys = odeint(m, y0, t, **kw, **TIGHT)
        grads.append(torch.autograd.grad(ys[-1].sum(), (ext, lin.weight)))
    for direct, adj in zip(*grads, strict=True):
        assert torch.allclose(adj, direct, rtol=1e-7, atol=1e-12)
    # a leaf func makes at each call (a Hamiltonian field differentiating its own H) is not one
    def hamiltonian(s, y):
        with torch.enable_grad():
            x = y.detach().requires_grad_(True)
            (dh,) = torch.autograd.grad((w * x**2).sum() / 2, x, create_graph=True)
        return torch.stack([dh[1], -dh[0]])

    ys = odeint(hamiltonian, y0, t, adjoint=strategy, adjoint_params=(w,), **TIGHT)
    ys[-1].sum().backward()  # no error; (detaching y cuts dL/dy0, as in direct mode)
    # a parameter that is not a leaf (computed outside func) ends the search there
    w2 = w * 2.0
    ys = odeint(lambda s, y: -w2 * y, y0, t, adjoint=strategy, adjoint_params=(w2,), **TIGHT)
    (g,) = torch.autograd.grad(ys[-1].sum(), w)
    assert abs(g.item() + 2 * 2 * np.exp(-0.6)) < 1e-8  # d/dw 2 exp(-2w)


def _van_der_pol_grad(adjoint, **kw):
    """dL/dmu, L = sum_{i>0} |y(t_i)|^2, Van der Pol mu = 50 on [0, 5], dopri5 rtol 1e-7."""
    mu = torch.tensor(50.0, dtype=torch.float64, requires_grad=True)

    def f(t, y):
        return torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])

    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, 5.0, 6, dtype=torch.float64)
    ys = odeint_adjoint(f, y0, t, rtol=1e-7, atol=1e-9, adjoint=adjoint, adjoint_params=(mu,),
                        **kw)
    (g,) = torch.autograd.grad((ys[1:] ** 2).sum(), mu)
    return float(g)


def test_stiff_van_der_pol_default_is_the_odes_gradient():
    """Measured before the stiffness check: the default (checkpoint, = direct backprop) gave
    dL/dmu = -3.90 against the ODE's 0.016168 (collocation over dop853 at 1e-12; torchdiffeq's
    direct backprop 0.589). Now the default falls back to the interpolated adjoint; the
    checkpoint adjoint alone warns."""
    import warnings

    from gqlib.errors import GradientAccuracyWarning
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientAccuracyWarning)
        assert _van_der_pol_grad(None) == pytest.approx(0.0161680, rel=1e-5)
    with pytest.warns(GradientAccuracyWarning, match="stability boundary"):
        off = _van_der_pol_grad("checkpoint")
    assert abs(off - 0.016168) > 1.0


@pytest.mark.parametrize("p_drop", [0.0, 0.3])
def test_stiff_growth_is_measured_on_kept_stages_and_not_on_random_draws(p_drop):
    """A wide network at batch 4 keeps its stages (StageKeeper, whose first call captured a
    replay token before it saw the func draws nothing): the growth is measured, 0 on this
    non-stiff MLP (it read None, skipped as if random, before). Dropout: None (drawn values say
    nothing of the Jacobian), no warning, no fallback."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 512), torch.nn.Tanh(), torch.nn.Dropout(p_drop),
                              torch.nn.Linear(512, 512), torch.nn.Tanh(),
                              torch.nn.Linear(512, 4)).double()

    class F(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y)

    y0 = torch.randn(1, 4, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    ys, stats = odeint_adjoint(F(), y0, t, rtol=1e-5, atol=1e-7, return_stats=True)
    ys.square().sum().backward()
    assert stats.backward["strategy"] == "checkpoint" and stats.backward["stiff_fallback"] is None
    if p_drop == 0.0:
        assert stats.backward["n_kept_steps"] > 0 and stats.backward["stiff_growth"] == 0.0
    else:
        assert stats.backward["stiff_growth"] is None


def _van_der_pol_direct(adjoint, method="dopri5", options=None, rtol=1e-7):
    """The stiff growth of `_van_der_pol_grad`'s solve, direct mode (forward) or the checkpoint
    adjoint's (backward), and dL/dmu."""
    mu = torch.tensor(50.0, dtype=torch.float64, requires_grad=True)

    def f(t, y):
        return torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])

    y0 = torch.tensor([2.0, 0.0], dtype=torch.float64)
    t = torch.linspace(0.0, 5.0, 6, dtype=torch.float64)
    ys, stats = odeint(f, y0, t, rtol=rtol, atol=1e-9, method=method, options=options,
                       adjoint=adjoint, adjoint_params=None if adjoint is None else (mu,),
                       return_stats=True)
    (g,) = torch.autograd.grad((ys[1:] ** 2).sum(), mu)
    growth = stats.forward["stiff_growth"] if adjoint is None else stats.backward["stiff_growth"]
    return growth, float(g)


def test_direct_mode_warns_on_stiff_van_der_pol():
    """Direct backprop gave dL/dmu = -3.90 against the ODE's 0.016168, silently: the forward's
    steps now carry the checkpoint adjoint's stiffness check (the same growth, e^26)."""
    import warnings

    from gqlib.adjoint import STIFF_GROWTH_LIMIT
    from gqlib.errors import GradientAccuracyWarning
    with pytest.warns(GradientAccuracyWarning, match="direct backpropagation") as rec:
        growth, g = _van_der_pol_direct(None)
    assert len([w for w in rec if w.category is GradientAccuracyWarning]) == 1
    assert rec[0].filename == __file__  # points at the odeint call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientAccuracyWarning)
        ref, g_ref = _van_der_pol_direct("checkpoint")
    assert growth > STIFF_GROWTH_LIMIT and growth == pytest.approx(ref, rel=1e-9)
    assert g == pytest.approx(g_ref, rel=1e-6) and abs(g - 0.016168) > 1.0


@pytest.mark.parametrize("method, options, rtol", [
    ("dopri5", dict(jump_t=[2.5], step_t=[1.3]), 1e-7),  # steps ending at a tstop: skipped
    ("dop853", None, 1e-7),
    ("fehlberg2", None, 1e-4),  # not FSAL: the next step's first stage
])
def test_direct_stiff_growth_is_the_checkpoint_adjoints(method, options, rtol):
    import warnings

    from gqlib.errors import GradientAccuracyWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientAccuracyWarning)
        growth, _ = _van_der_pol_direct(None, method, options, rtol)
        ref, _ = _van_der_pol_direct("checkpoint", method, options, rtol)
    assert growth > 1.0 and growth == pytest.approx(ref, rel=1e-9)


@pytest.mark.parametrize("case", ["mlp", "no_grad", "frozen", "dropout"])
def test_direct_mode_stiffness_check_is_quiet(case):
    """A non-stiff MLP: growth 0; under no_grad, or with nothing requiring grad, nothing is
    recorded and nothing measured; a func drawing random numbers (dropout): None, as in the
    checkpoint adjoint."""
    import warnings

    from gqlib.errors import GradientAccuracyWarning
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(),
                              torch.nn.Dropout(0.3 if case == "dropout" else 0.0),
                              torch.nn.Linear(32, 4)).double().requires_grad_(case != "frozen")
    y0 = torch.randn(3, 4, dtype=torch.float64)
    t = torch.linspace(0.0, 2.0, 4, dtype=torch.float64)
    # fixed steps with dropout (error control would chase the draws)
    kw = dict(method="rk4", options=dict(step_size=0.1)) if case == "dropout" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientAccuracyWarning)
        with torch.set_grad_enabled(case != "no_grad"):
            ys, stats = odeint(lambda t, y: net(y), y0, t, rtol=1e-6, return_stats=True, **kw)
    assert ys.requires_grad == (case not in ("no_grad", "frozen"))
    assert stats.forward["stiff_growth"] == (0.0 if case == "mlp" else None)
    assert stats.forward["n_accepted"] > 3
