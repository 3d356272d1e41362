"""gqlib.torch as a drop-in for torchdiffeq: 0-dim tuple states, callbacks, perturb, jump_t, events."""

import math
import warnings

import pytest

torch = pytest.importorskip("torch")

from gqlib.torch import odeint  # noqa: E402

pytestmark = pytest.mark.torch
F64 = torch.float64
ADJOINTS = [None, "gq", "backsolve", "interpolated", "collocation", "checkpoint"]


# -- tuple states with 0-dim components ------------------------------------------------------------

def _scalar_pair(t, y):
    return -y[0], y[0] - y[1]


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_tuple_of_0dim_components_values_and_gradients(adjoint):
    """y0' = -y0, y1' = y0 - y1: y0(1) = a/e, y1(1) = (a + b)/e, so d(y0 + y1)/d(a, b) = (2/e, 1/e)."""
    a = torch.tensor(1.0, dtype=F64, requires_grad=True)
    b = torch.tensor(2.0, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
    kw = {} if adjoint is None else dict(adjoint=adjoint, adjoint_params=())
    ys = odeint(_scalar_pair, (a, b), t, rtol=1e-10, atol=1e-12, **kw)
    assert ys[0].shape == ys[1].shape == (3,)
    assert abs(ys[1][-1].item() - 3 / math.e) < 1e-8
    (ys[0][-1] + ys[1][-1]).backward()
    tol = 1e-3 if adjoint == "collocation" else 1e-7
    assert abs(a.grad.item() - 2 / math.e) < tol and abs(b.grad.item() - 1 / math.e) < tol


def test_tuple_of_0dim_components_norms_and_tolerances():
    y0 = (torch.tensor(1.0, dtype=F64), torch.zeros(2, dtype=F64))
    t = torch.tensor([0.0, 1.0], dtype=F64)

    def f(t, y):
        return -y[0], y[0] * torch.ones_like(y[1])

    seen = []

    def norm(y):
        seen.append(tuple(c.shape for c in y))
        return max(c.abs().max() for c in y)

    outs = [odeint(f, y0, t, rtol=(1e-9, 1e-8), atol=(1e-11, 1e-10)),
            odeint(f, y0, t, options=dict(norm=norm), rtol=1e-9, atol=1e-11),
            odeint(f, y0, t, method="rk4", options=dict(step_size=0.01))]
    assert seen and all(s == ((), (2,)) for s in seen)
    for ys in outs:
        assert abs(ys[0][-1].item() - math.exp(-1.0)) < 1e-7
        assert abs(ys[1][-1, 0].item() - (1 - math.exp(-1.0))) < 1e-7
    # the adjoint's user norm gets 0-dim components too
    adj_seen = []

    def adj_norm(x):
        adj_seen.append(tuple(c.shape for c in x))
        return max(c.abs().max() for c in x)

    a = torch.tensor(1.0, dtype=F64, requires_grad=True)
    ys = odeint(f, (a, torch.zeros(2, dtype=F64)), t, adjoint="backsolve", adjoint_params=(),
                adjoint_options=dict(norm=adj_norm))
    ys[1][-1].sum().backward()
    assert adj_seen and adj_seen[0][:5] == ((), (), (2,), (), (2,))
    assert abs(a.grad.item() - 2 * (1 - math.exp(-1.0))) < 1e-6


# -- callbacks ---------------------------------------------------------------------------------

class Logged(torch.nn.Module):
    """-k y with every torchdiffeq callback recording (name, t0, dt, y0's shapes)."""

    def __init__(self, names=("callback_step", "callback_accept_step", "callback_reject_step",
                              "callback_step_adjoint", "callback_accept_step_adjoint",
                              "callback_reject_step_adjoint")):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(1.5, dtype=F64))
        self.log = []
        for name in names:
            setattr(self, name, self._recorder(name))

    def _recorder(self, name):
        def cb(t0, y0, dt):
            shapes = tuple(c.shape for c in y0) if isinstance(y0, tuple) else y0.shape
            self.log.append((name, float(t0), float(dt), shapes))
        return cb

    def forward(self, t, y):
        if isinstance(y, tuple):
            return tuple(-self.k * c for c in y)
        return -self.k * y

    def count(self, name):
        return sum(1 for e in self.log if e[0] == name)

    def times(self, name):
        return [round(e[1], 12) for e in self.log if e[0] == name]


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_callbacks_fixed_step_ten_forward_ten_backward(adjoint):
    f = Logged(names=("callback_step", "callback_step_adjoint"))
    t = torch.tensor([0.0, 1.0], dtype=F64)
    ys = odeint(f, torch.ones(3, dtype=F64), t, method="rk4", options=dict(step_size=0.1),
                adjoint=adjoint)
    assert f.count("callback_step") == 10 and f.count("callback_step_adjoint") == 0
    assert f.times("callback_step") == [round(0.1 * k, 12) for k in range(10)]
    assert all(abs(e[2] - 0.1) < 1e-12 and e[3] == (3,) for e in f.log)
    ys[-1].sum().backward()
    n_back = 0 if adjoint is None else 10  # direct mode: autograd replays the forward graph
    assert f.count("callback_step_adjoint") == n_back and f.count("callback_step") == 10
    if n_back:
        assert f.times("callback_step_adjoint") == [round(1.0 - 0.1 * k, 12) for k in range(10)]
        assert all(abs(e[2] - 0.1) < 1e-12 for e in f.log)


def test_callbacks_match_torchdiffeq_on_a_fixed_grid():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)  # outputs on the grid: the same steps
    logs = []
    for fn in (torchdiffeq.odeint_adjoint,
               lambda *a, **k: odeint(*a, adjoint="checkpoint", **k)):
        f = Logged(names=("callback_step", "callback_step_adjoint"))
        ys = fn(f, torch.ones(2, dtype=F64), t, method="euler", options=dict(step_size=0.25,
                                                                           perturb=True))
        ys[-1].sum().backward()
        logs.append([(e[0], round(e[1], 12), round(e[2], 12)) for e in f.log])
    assert logs[0] == logs[1]


def test_callbacks_adaptive_count_attempts_accepts_and_rejects():
    f = Logged()
    t = torch.tensor([0.0, 2.0], dtype=F64)
    ys, stats = odeint(f, (torch.ones(2, dtype=F64), torch.ones((), dtype=F64)), t,
                       rtol=1e-8, atol=1e-10, options=dict(first_step=1.0), adjoint="gq",
                       return_stats=True)
    fwd = stats.forward
    assert fwd["n_rejected"] > 0  # first_step = 1 is far too long: rejections happen
    assert f.count("callback_step") == fwd["n_steps"]
    assert f.count("callback_accept_step") == fwd["n_accepted"]
    assert f.count("callback_reject_step") == fwd["n_rejected"]
    assert {e[3] for e in f.log} == {((2,), ())}  # tuple states reach the callbacks as tuples
    # each attempt is announced before its outcome, with the same start
    steps = [e for e in f.log if e[0] == "callback_step"]
    outcomes = [e for e in f.log if e[0] in ("callback_accept_step", "callback_reject_step")]
    assert [e[1:3] for e in steps] == [e[1:3] for e in outcomes]
    (ys[0][-1].sum() + ys[1][-1]).backward()
    back = stats.backward
    assert f.count("callback_step_adjoint") == back["n_steps"] > 0
    assert f.count("callback_accept_step_adjoint") == back["n_accepted"]
    assert f.count("callback_reject_step_adjoint") == back["n_rejected"]
    assert all(e[1] <= 2.0 and e[2] > 0 for e in f.log)


def test_accept_reject_callbacks_warn_with_a_fixed_step_method():
    f = Logged(names=("callback_step", "callback_accept_step"))
    with pytest.warns(UserWarning, match="callback_accept_step` is never called"):
        odeint(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64), method="euler",
               options=dict(step_size=0.5))
    assert f.count("callback_step") == 2 and f.count("callback_accept_step") == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        odeint(f, torch.ones(1, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64))
    assert f.count("callback_accept_step") > 0


# -- perturb -----------------------------------------------------------------------------------

def _timed_field(dtype, log):
    class F(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(0.7, dtype=dtype))

        def forward(self, t, y):
            log.append(float(t))
            return -self.k * y
    return F()


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_perturb_forward_times_are_torchdiffeqs(dtype, method):
    torchdiffeq = pytest.importorskip("torchdiffeq")
    t = torch.tensor([0.0, 0.5, 1.0], dtype=dtype)
    for perturb in (False, True):
        ours, ref = [], []
        odeint(_timed_field(dtype, ours), torch.ones(2, dtype=dtype), t, method=method,
               options=dict(step_size=0.25, perturb=perturb))
        torchdiffeq.odeint(_timed_field(dtype, ref), torch.ones(2, dtype=dtype), t,
                           method=method, options=dict(step_size=0.25, perturb=perturb))
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref, strict=True):
            if min(abs(b - g) for g in (0.0, 0.25, 0.5, 0.75, 1.0)) < 1e-6:
                assert a == b  # at and one ulp beside a grid point: exactly torchdiffeq's
            else:  # inner stage times: torchdiffeq adds c * dt in float32, gqlib in float64
                assert abs(a - b) < 1e-6


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_perturb_never_evaluates_at_grid_points(dtype, adjoint):
    """euler, step_size=0.5 on [0, 1]: without perturb func sees 0 and 0.5 forward (and 1 and 0.5
    in a backward solve); with perturb it sees none of 0, 0.5, 1, forward or backward."""
    # float32 at the default rtol=1e-7 asks the GQ quadrature for ~1e5 VJPs: float32's tolerances
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == torch.float32 else {}
    grid = {0.0, 0.5, 1.0}
    t = torch.tensor([0.0, 1.0], dtype=dtype)
    grads = []
    for perturb in (False, True):
        calls = []
        f = _timed_field(dtype, calls)
        ys = odeint(f, torch.ones(2, dtype=dtype), t, method="euler", adjoint=adjoint,
                    options=dict(step_size=0.5, perturb=perturb), **tol)
        fwd_seen = set(calls)
        calls.clear()
        ys[-1].sum().backward()
        bwd_seen = set(calls)
        grads.append(f.k.grad.item())
        if perturb:
            assert not fwd_seen & grid and not bwd_seen & grid
        else:
            assert {0.0, 0.5} <= fwd_seen  # (dense output adds f at 1: interpolated, collocation)
            if adjoint == "backsolve":
                assert bwd_seen & grid == {0.5, 1.0}
    tol = 1e-12 if dtype == F64 else 1e-5
    assert abs(grads[0] - grads[1]) <= tol * abs(grads[0])


# -- jump_t ----------------------------------------------------------------------------------------

ADAPTIVE = ["dopri5", "dopri8", "tsit5", "bosh3", "adaptive_heun", "fehlberg2", "dop853"]
LOW_ORDER = ("adaptive_heun",)


def _jump_cost(method, dtype, jump, adjoint):
    class F(torch.nn.Module):  # f jumps at t = 0.3 (0.3 is not a float32 number)
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(0.7, dtype=dtype))

        def forward(self, t, y):
            return torch.where(t < 0.3, -self.k * y, self.k * torch.cos(y))

    f = F()
    opts = dict(jump_t=torch.tensor([0.3], dtype=dtype)) if jump else {}
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-6, atol=1e-8)
    if method in LOW_ORDER:  # 2nd order, ~4x the evaluations of fehlberg2: a looser tolerance
        tol = dict(rtol=1e-4, atol=1e-6)
    ys, st = odeint(f, torch.ones(3, dtype=dtype), torch.tensor([0.0, 1.0], dtype=dtype),
                    method=method, options=opts, adjoint=adjoint, return_stats=True, **tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # float32 drift warnings of a re-integrated y
        ys[-1].sum().backward()
    b = st.backward
    return st.nfe, b["nfe_f"] + b["nfe_vjp_y"] + b["nfe_vjp_params"], f.k.grad.item()


@pytest.mark.parametrize("dtype", [F64, torch.float32])
@pytest.mark.parametrize("method", ADAPTIVE)
def test_jump_t_saves_evaluations_forward_and_backward(method, dtype):
    ref = 0.480935444  # dL/dk by direct backpropagation, dopri5 at rtol=1e-12 with jump_t
    for adjoint in ("gq", "backsolve"):
        nfe, nfe_b, _ = _jump_cost(method, dtype, False, adjoint)
        nfe_j, nfe_bj, grad_j = _jump_cost(method, dtype, True, adjoint)
        assert nfe_j < nfe and nfe_bj < nfe_b, (adjoint, (nfe, nfe_b), (nfe_j, nfe_bj))
        loose = dtype == torch.float32 or method in LOW_ORDER
        assert abs(grad_j - ref) < (1e-3 if loose else 1e-4) * ref


# -- events ----------------------------------------------------------------------------------------

def _ball(h0=2.0, g0=9.81, v0=0.5, dtype=F64):
    h = torch.tensor(h0, dtype=dtype, requires_grad=True)
    g = torch.tensor(g0, dtype=dtype, requires_grad=True)
    v = torch.tensor(v0, dtype=dtype)
    s = math.sqrt(v0 ** 2 + 2 * g0 * h0)
    t_e = (v0 + s) / g0  # h + v t - g t^2 / 2 = 0
    exact = dict(t=t_e, dh=1 / s, dg=(h0 / s - t_e) / g0)  # dt_e/dh, dt_e/dg
    return h, g, v, exact


@pytest.mark.parametrize("adjoint", ADJOINTS)
def test_odeint_event_falling_ball_time_and_gradients(adjoint):
    from gqlib.torch import odeint_event

    h, g, v, exact = _ball()

    def fall(t, y):
        return y[1], -g * torch.ones_like(y[1])

    kw = {} if adjoint is None else dict(adjoint=adjoint, adjoint_params=(g,))
    t_e, sol = odeint_event(fall, (h, v), torch.tensor(0.0, dtype=F64), event_fn=lambda t, y: y[0],
                            rtol=1e-10, atol=1e-12, **kw)
    assert abs(t_e.item() - exact["t"]) < 1e-9
    assert sol[0].shape == (2,) and abs(sol[0][-1].item()) < 1e-9 and sol[0][0].item() == 2.0
    t_e.backward()
    tol = 1e-5 if adjoint == "collocation" else 1e-8
    assert abs(h.grad.item() - exact["dh"]) < tol and abs(g.grad.item() - exact["dg"]) < tol


@pytest.mark.parametrize("adjoint", ADJOINTS[1:])
def test_odeint_event_backward_costs_the_fixed_time_backward_plus_one_f(adjoint):
    """The event time's gradient costs the strategy's backward pass on [t0, t_e] with t_e held
    fixed (the same cotangent on y(t_e)) plus one call of func (f(t_e, y_e) for the implicit
    function theorem) and one VJP of event_fn."""
    from gqlib.torch import odeint_event

    g = torch.tensor(9.81, dtype=F64, requires_grad=True)
    calls = [0]

    def fall(t, y):
        calls[0] += 1
        return y[1], -g * torch.ones_like(y[1])

    kw = dict(rtol=1e-8, atol=1e-10, adjoint=adjoint, adjoint_params=(g,))
    h = torch.tensor(2.0, dtype=F64, requires_grad=True)
    v = torch.tensor(0.5, dtype=F64)
    t_e, sol = odeint_event(fall, (h, v), torch.tensor(0.0, dtype=F64),
                            event_fn=lambda t, y: y[0], **kw)
    before = calls[0]
    t_e.backward()
    event_calls = calls[0] - before
    # dt_e/dy(t_e) = -(1, 0) / v(t_e): the cotangent the event hands the solve
    h_fixed = torch.tensor(2.0, dtype=F64, requires_grad=True)
    ys = odeint(fall, (h_fixed, v), torch.stack([torch.tensor(0.0, dtype=F64), t_e.detach()]),
                **kw)
    before = calls[0]
    (ys[0][-1] * (-1.0 / sol[1][-1].item())).backward()
    assert event_calls == calls[0] - before + 1
    assert abs(h.grad.item() - h_fixed.grad.item()) < 1e-12


def test_odeint_event_velocity_gradient_and_vector_events_and_reverse_time():
    from gqlib.torch import odeint_event

    h, g, v, exact = _ball()

    def fall(t, y):
        return torch.stack([y[1], -g]) if not isinstance(y, tuple) else (y[1], -g)

    # a tensor state, a vector event_fn: the first root of any component (y = 0 before t = 10)
    y0 = torch.stack([h, v])
    t_e, sol = odeint_event(fall, y0, torch.tensor(0.0, dtype=F64), rtol=1e-10, atol=1e-12,
                            event_fn=lambda t, y: torch.stack([y[0], 10.0 - t]))
    assert abs(t_e.item() - exact["t"]) < 1e-9 and sol.shape == (2, 2)
    # the impact speed |v(t_e)| = sqrt(v0^2 + 2 g h): its gradient flows through y(t_e) and t_e
    sol[-1, 1].backward()
    s = math.sqrt(0.25 + 2 * 9.81 * 2.0)
    assert abs(h.grad.item() + 9.81 / s) < 1e-7
    assert abs(g.grad.item() + 2.0 / s) < 1e-7
    # reverse time: from the impact back to the top of the flight, where v = 0 at t = v0 / g
    h2, g2, _, _ = _ball()
    t_top, _ = odeint_event(lambda t, y: (y[1], -g2 * torch.ones_like(y[1])),
                            (torch.zeros((), dtype=F64), torch.tensor(-s, dtype=F64)),
                            torch.tensor(exact["t"], dtype=F64), event_fn=lambda t, y: y[1] - 0.0,
                            reverse_time=True, rtol=1e-10, atol=1e-12)
    assert abs(t_top.item() - 0.5 / 9.81) < 1e-8


def test_odeint_with_event_fn_returns_the_event_time_and_two_rows():
    y0 = torch.tensor([1.0], dtype=torch.float32)
    t = torch.tensor([0.0, 1.0], dtype=torch.float32)
    t_e, sol = odeint(lambda t, y: -y, y0, t, event_fn=lambda t, y: y - 0.5, rtol=1e-6,
                      atol=1e-8)
    assert sol.shape == (2, 1) and t_e.dtype == torch.float32
    assert abs(t_e.item() - math.log(2.0)) < 1e-5 and abs(sol[-1].item() - 0.5) < 1e-5
    with pytest.raises(TypeError, match="`event_fn` must be callable"):
        odeint(lambda t, y: -y, y0, t, event_fn=3)
    # callbacks fire in the solve to the event time, not in the search before it
    f = Logged(names=("callback_step",))
    t_e, sol, stats = odeint(f, torch.ones(2, dtype=F64), torch.tensor([0.0, 1.0], dtype=F64),
                             event_fn=lambda t, y: y[0] - 0.5, return_stats=True)
    assert abs(t_e.item() - math.log(2.0) / 1.5) < 1e-8
    assert f.count("callback_step") == stats.forward["n_steps"] > 0
    assert max(e[1] for e in f.log) < t_e.item()


# -- torch.compile -------------------------------------------------------------------------------

@pytest.mark.slow  # compiling: 8 s alone, 23 s in `pytest -n 2` on 2 busy cores
def test_collocation_under_torch_compile_with_donated_buffers():
    """A compiled func's backward donates its buffers (torch's default), which refuses the
    retained graph collocation reuses across sweeps: gqlib replays a forward and backward pass
    per product instead, with the same gradient as the uncompiled func. (The replay logic
    without torch.compile: test_adjoint_collocation.py, in the default suite.)"""
    pytest.importorskip("torch._dynamo")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).to(F64)

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y)

    y0 = torch.randn(4, 2, dtype=F64)
    t = torch.linspace(0.0, 1.0, 3, dtype=F64)
    params = tuple(net.parameters())

    def grads(func, adjoint):
        for p in params:
            p.grad = None
        ys, stats = odeint(func, y0, t, rtol=1e-6, atol=1e-8, adjoint=adjoint,
                           adjoint_params=params, return_stats=True)
        ys.square().sum().backward()
        return torch.cat([p.grad.reshape(-1) for p in params]), stats.backward

    eager, eager_stats = grads(Field(), "collocation")
    compiled, stats = grads(torch.compile(Field()), "collocation")
    assert torch.allclose(compiled, eager, rtol=1e-12, atol=0)
    # the first panel's nodes were linearised before torch refused; every product since is a
    # fused forward + backward call
    nodes = stats["n_nodes"] // stats["n_panels"]
    assert stats["nfe_f"] - stats["nfe_vjp_y"] == nodes
    assert stats["nfe_vjp_y"] == eager_stats["nfe_vjp_y"]


@pytest.mark.parametrize("transform", ["vmap", "grad", "jacrev"])
@pytest.mark.parametrize("adjoint", [None, "gq"])
def test_torch_func_transforms_raise_a_clear_error(transform, adjoint):
    tf = pytest.importorskip("torch.func")
    t = torch.tensor([0.0, 1.0], dtype=F64)
    kw = {} if adjoint is None else dict(adjoint=adjoint, adjoint_params=())

    def last(y):
        return odeint(lambda t, y: -y, y, t, method="rk4", options=dict(step_size=0.5), **kw)[-1]

    fn = {"vmap": tf.vmap(last), "grad": tf.grad(lambda y: last(y).sum()),
          "jacrev": tf.jacrev(last)}[transform]
    with pytest.raises(NotImplementedError, match="torch.func transforms"):
        fn(torch.ones(3, 2, dtype=F64) if transform == "vmap" else torch.ones(2, dtype=F64))


@pytest.mark.parametrize("how", ["is_grads_batched", "jacobian"])
def test_a_batched_backward_through_an_adjoint_raises_a_clear_error(how):
    # it raised torch's "Batching rule not implemented for aten::is_nonzero" from the solver
    t = torch.tensor([0.0, 1.0], dtype=F64)
    y0 = torch.ones(2, dtype=F64, requires_grad=True)

    def last(y):
        return odeint(lambda t, y: -y, y, t, adjoint="checkpoint", adjoint_params=())[-1]

    with pytest.raises(NotImplementedError, match="batched backward pass"):
        if how == "jacobian":
            torch.autograd.functional.jacobian(last, y0, vectorize=True)
        else:
            torch.autograd.grad(last(y0), y0, torch.eye(2, dtype=F64), is_grads_batched=True)
    # one backward pass per row: the Jacobian exp(-1) I
    jac = torch.autograd.functional.jacobian(last, y0)
    assert torch.allclose(jac, math.exp(-1.0) * torch.eye(2, dtype=F64), rtol=1e-6)


# -- the same steps as torchdiffeq ------------------------------------------------------------------

@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
@pytest.mark.parametrize("batch", [4, 64])
def test_same_steps_as_torchdiffeq(method, batch):
    """torchdiffeq's step-size rule (Shampine's error estimate for dopri5, no shrinking after an
    accepted step): the same steps, to the rounding of the error norms, on a random MLP field
    where gqlib's scipy rule took 80 evaluations against torchdiffeq's 74 (W = 1024, batch 4).
    They part only where torchdiffeq's last step overshoots the span's end (it interpolates
    back; gqlib lands on it)."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 128), torch.nn.Tanh(), torch.nn.Linear(128, 128),
                              torch.nn.Tanh(), torch.nn.Linear(128, 16)).double()
    calls = {"gq": [], "tdq": []}

    def field(key):
        def f(t, y):
            calls[key].append(float(t))
            return net(y)
        return f

    y0 = torch.randn(batch, 16, dtype=F64)
    t = torch.linspace(0, 1, 11, dtype=F64)
    with torch.no_grad():
        a = odeint(field("gq"), y0, t, rtol=1e-6, atol=1e-8, method=method)
        b = torchdiffeq.odeint(field("tdq"), y0, t, rtol=1e-6, atol=1e-8, method=method)
    gq, tdq = calls["gq"], calls["tdq"]
    same = 0
    while same < min(len(gq), len(tdq)) and gq[same] == pytest.approx(tdq[same], rel=1e-8):
        same += 1
    stages = 7 if method == "dopri5" else 4
    assert same == len(gq) == len(tdq) or max(tdq[same:same + stages]) > 1.0, (same, gq, tdq)
    assert abs(len(gq) - len(tdq)) < stages
    torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-3)  # at the global error, ~1e-4


@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("adjoint", [None, "checkpoint"])
def test_torch_compile_of_a_caller_breaks_the_graph_at_odeint(adjoint):
    """A training step compiled with torch.compile that calls odeint: the solve runs eagerly (a
    graph break at odeint; dynamo cannot trace the host-side step loop), with the eager
    gradient. It raised AttributeError ('numpy.ndarray' object has no attribute 'detach')."""
    pytest.importorskip("torch._dynamo")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).to(F64)
    y0 = torch.randn(2, 3, dtype=F64)
    t = torch.linspace(0.0, 1.0, 4, dtype=F64)
    params = tuple(net.parameters())

    def loss():
        ys = odeint(lambda t, y: net(y), y0, t, rtol=1e-7, atol=1e-9, adjoint=adjoint,
                    adjoint_params=params)
        return ys.square().sum()

    def grads(step):
        for p in params:
            p.grad = None
        step().backward()
        return torch.cat([p.grad.reshape(-1) for p in params])

    torch.testing.assert_close(grads(torch.compile(loss)), grads(loss), rtol=1e-12, atol=0)
