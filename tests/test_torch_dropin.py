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
    for mod, fn in ((torchdiffeq, torchdiffeq.odeint_adjoint),
                    (None, lambda *a, **k: odeint(*a, adjoint="checkpoint", **k))):
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
