"""``adjoint_options={"rowwise": True}``: the parameter VJPs of many field calls taken as one call on
their stacked rows (gqlib.adjoint._rows). The gradient must equal the unstacked one to round-off
for every strategy that stacks, and a field that reads t or couples rows must raise instead of
returning a wrong gradient."""

import pytest

torch = pytest.importorskip("torch")

import gqlib.adjoint._rows as rows  # noqa: E402
from gqlib.adjoint import RowwiseMismatch  # noqa: E402
from gqlib.torch import odeint_adjoint  # noqa: E402

F64 = torch.float64


class MLP(torch.nn.Module):
    def __init__(self, d=3, w=24, t_weight=0.0, couple=0.0):
        super().__init__()
        torch.manual_seed(0)
        self.l1, self.l2 = torch.nn.Linear(d, w), torch.nn.Linear(w, d)
        self.t_weight, self.couple = t_weight, couple

    def forward(self, t, y):
        out = self.l2(torch.tanh(self.l1(y))) + self.t_weight * t * self.l2.bias
        return out - self.couple * out.mean(dim=0, keepdim=True)


def grads(model, y0, t, adjoint, rowwise, **kw):
    model = model.double()
    model.zero_grad()
    y, stats = odeint_adjoint(model, y0, t, rtol=1e-8, atol=1e-10, adjoint=adjoint,
                              adjoint_options={"rowwise": rowwise, **kw}, return_stats=True)
    (y ** 2).sum().backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()]), stats.backward


@pytest.mark.parametrize("adjoint", ["checkpoint", "gq", "interpolated", "auto"])
@pytest.mark.parametrize("stack_rows", [512, 7])  # one stack per pass, or many
def test_stacked_gradient_equals_unstacked(adjoint, stack_rows, monkeypatch):
    monkeypatch.setattr(rows, "STACK_ROWS", stack_rows)
    model = MLP()
    y0 = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(1))
    t = torch.linspace(0, 1.5, 4, dtype=F64)
    plain, s0 = grads(model, y0, t, adjoint, False)
    stacked, s1 = grads(model, y0, t, adjoint, True)
    assert s0["n_row_stacks"] == 0 and s1["n_row_stacks"] >= (1 if stack_rows == 512 else 3)
    assert float((stacked - plain).abs().max()) <= 1e-12 * float(plain.abs().max())
    # one stacked call (and at most two checking calls of one row block) per stack replaces
    # the per-call parameter VJPs
    assert s1["n_row_stacks"] < s1["nfe_vjp_params"] <= 3 * s1["n_row_stacks"]
    if stack_rows == 512:
        assert s1["nfe_vjp_params"] < s0["nfe_vjp_params"]


@pytest.mark.parametrize("adjoint", ["checkpoint", "gq", "interpolated"])
@pytest.mark.parametrize("kind", ["reads t", "couples rows"])
def test_a_field_that_is_not_rowwise_raises(adjoint, kind):
    model = MLP(t_weight=0.3) if kind == "reads t" else MLP(couple=0.5)
    y0 = torch.randn(4, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    t = torch.linspace(0, 1, 3, dtype=F64)
    with pytest.raises(RowwiseMismatch, match="rowwise=True"):
        grads(model, y0, t, adjoint, True)
    grads(model, y0, t, adjoint, False)  # fine without the claim


def test_no_stacking_above_the_row_limit():
    model = MLP()
    y0 = torch.randn(rows.MAX_CALL_ROWS + 1, 3, dtype=F64)
    _, stats = grads(model, y0, torch.linspace(0, 1, 3, dtype=F64), "checkpoint", True)
    assert stats["n_row_stacks"] == 0


def test_rowwise_validation_at_the_door():
    model = MLP().double()
    t = torch.linspace(0, 1, 3, dtype=F64)
    with pytest.raises(TypeError, match="rowwise"):
        odeint_adjoint(model, torch.ones(2, 3, dtype=F64), t, adjoint_options={"rowwise": 1})
    with pytest.raises(ValueError, match="batch"):
        odeint_adjoint(model, torch.ones(3, dtype=F64), t, adjoint_options={"rowwise": True})
    with pytest.raises(ValueError, match="batch"):
        odeint_adjoint(lambda t, y: (y[0], y[1]), (torch.ones(2, 3, dtype=F64),) * 2, t,
                       adjoint_options={"rowwise": True}, adjoint_params=())
    from gqlib.torch import odeint
    with pytest.raises(ValueError, match="needs an adjoint"):
        odeint(model, torch.ones(2, 3, dtype=F64), t, adjoint_options={"rowwise": True})


class TimeInput(torch.nn.Module):
    """Reads t through its first layer, with a zero output layer (its values do not read t, its
    output layer's gradient does), or through a term below float32's value check."""

    def __init__(self, d=3, w=16, small_t=0.0):
        super().__init__()
        torch.manual_seed(0)
        self.l1, self.l2 = torch.nn.Linear(d + 1, w), torch.nn.Linear(w, d)
        self.w = torch.nn.Parameter(torch.ones(d))
        self.small_t = small_t
        if not small_t:
            torch.nn.init.zeros_(self.l2.weight)
            torch.nn.init.zeros_(self.l2.bias)

    def forward(self, t, y):
        tin = t * 0.0 if self.small_t else t
        z = torch.cat([y, tin.expand(*y.shape[:-1], 1)], dim=-1)
        return self.l2(torch.tanh(self.l1(z))) + self.small_t * t * self.w


@pytest.mark.parametrize("adjoint", ["checkpoint", "gq"])
@pytest.mark.parametrize("case", ["zero output layer", "float32 small t term"])
def test_a_parameter_jacobian_that_reads_t_raises(adjoint, case):
    # both were silently wrong before the parameter VJP check (30% and 146% on some
    # components): the value check cannot see them
    dtype = torch.float32 if case == "float32 small t term" else F64
    model = TimeInput(small_t=1e-4 if case == "float32 small t term" else 0.0).to(dtype)
    y0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(1)).to(dtype)
    t = torch.linspace(0, 1.5, 3).to(dtype)
    y = odeint_adjoint(model, y0, t, rtol=1e-6, atol=1e-8, adjoint=adjoint,
                       adjoint_options={"rowwise": True})
    with pytest.raises(RowwiseMismatch, match="parameter VJP"):
        (y ** 2).sum().backward()
