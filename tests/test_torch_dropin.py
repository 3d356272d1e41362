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
