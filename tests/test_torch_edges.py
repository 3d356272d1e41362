"""gqlib.torch at the edges of what torchdiffeq's interface allows: tensors in `adjoint_params`
or read by `func` that are themselves computed from other tensors (non-leaf), every strategy
against direct backpropagation."""

import pytest

torch = pytest.importorskip("torch")

from gqlib.torch import odeint  # noqa: E402

pytestmark = pytest.mark.torch
F64 = torch.float64
T = dict(rtol=1e-9, atol=1e-10)
# every strategy, and the row-wise VJP stacks (rowwise=True) of those that take it
STRATEGIES = [("auto", None), ("checkpoint", None), ("checkpoint", {"keep_stages": 0}),
              ("gq", None), ("interpolated", None), ("backsolve", None),
              ("backsolve", {"norm": "seminorm"}), ("collocation", None),
              ("checkpoint", {"keep_stages": 0, "rowwise": True}), ("gq", {"rowwise": True})]
IDS = ["auto", "checkpoint", "checkpoint-recompute", "gq", "interpolated", "backsolve",
       "seminorm", "collocation", "checkpoint-rowwise", "gq-rowwise"]


def _derived_problem():
    """``k = exp(log_k)`` computed once outside ``func``, which reads ``k`` and ``A``."""
    log_k = torch.tensor(-0.3, dtype=F64, requires_grad=True)
    A = torch.tensor([[0.1, -0.4], [0.3, 0.2]], dtype=F64, requires_grad=True)
    k = log_k.exp()
    y0 = torch.tensor([[0.5, -0.2], [0.1, 0.3]], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)

    def func(t, y):
        return -k * torch.tanh(y @ A) + 0.1 * y
    return func, log_k, k, A, y0, t


def _direct_grads():
    func, log_k, _, A, y0, t = _derived_problem()
    ys = odeint(func, y0, t, **T)
    return torch.autograd.grad((ys ** 2).sum(), (log_k, A, y0))


@pytest.mark.parametrize(("adjoint", "options"), STRATEGIES, ids=IDS)
def test_func_reading_a_tensor_computed_from_a_listed_leaf(adjoint, options):
    """``adjoint_params=(log_k, A)`` and ``func`` reads ``k = exp(log_k)``, built outside it
    (torchdiffeq handles this). The parameter VJPs pass through ``k``'s node, which belongs to
    the caller's graph: freeing its saved tensors at the first VJP made the next one raise
    torch's "Trying to backward through the graph a second time" (gq, interpolated,
    backsolve, the row-wise stacks)."""
    ref = _direct_grads()
    func, log_k, _, A, y0, t = _derived_problem()
    ys = odeint(func, y0, t, adjoint=adjoint, adjoint_options=options,
                adjoint_params=(log_k, A), **T)
    got = torch.autograd.grad((ys ** 2).sum(), (log_k, A, y0))
    for g, r in zip(got, ref, strict=True):
        assert ((g - r).abs().max() / r.abs().max()).item() < 1e-6


@pytest.mark.parametrize(("adjoint", "options"), STRATEGIES, ids=IDS)
def test_a_listed_tensor_computed_from_another_listed_one_raises(adjoint, options):
    """``adjoint_params=(log_k, k, A)`` with ``k = exp(log_k)``: the VJP with respect to
    ``log_k`` already passes through ``k``, and autograd then adds ``k``'s gradient into
    ``log_k`` again; the default strategy returned twice direct backprop's dL/dlog_k
    (-0.2130 against -0.1065, silently; so does torchdiffeq's odeint_adjoint)."""
    func, log_k, k, A, y0, t = _derived_problem()
    with pytest.raises(ValueError, match=r"adjoint_params\[1\]` is computed from "
                                         r"`adjoint_params\[0\]"):
        odeint(func, y0, t, adjoint=adjoint, adjoint_options=options,
               adjoint_params=(log_k, k, A), **T)


def test_a_listed_tensor_computed_from_an_unlisted_one_keeps_its_gradient():
    """``adjoint_params=(k, A)`` with ``k = exp(log_k)`` and ``log_k`` not listed: ``k``'s
    gradient flows on into ``log_k`` through autograd, as in direct backprop (no error: nothing
    is counted twice)."""
    ref = _direct_grads()
    func, log_k, k, A, y0, t = _derived_problem()
    ys = odeint(func, y0, t, adjoint="gq", adjoint_params=(k, A), **T)
    got = torch.autograd.grad((ys ** 2).sum(), (log_k, A, y0))
    for g, r in zip(got, ref, strict=True):
        assert ((g - r).abs().max() / r.abs().max()).item() < 1e-6


class _Controlled(torch.nn.Module):
    """``tanh(W y) * u`` with ``u`` a buffer: a control input the caller writes."""

    def __init__(self):
        super().__init__()
        self.W = torch.nn.Parameter(torch.tensor([[0.2, -0.5], [0.4, 0.1]], dtype=F64))
        self.register_buffer("u", torch.tensor([1.0, 2.0], dtype=F64))

    def forward(self, t, y):
        return torch.tanh(self.W @ y) * self.u


CONTINUOUS = [("gq", None), ("interpolated", None), ("backsolve", None),
              ("backsolve", {"norm": "seminorm"}), ("collocation", None)]


@pytest.mark.parametrize(("adjoint", "options"), CONTINUOUS,
                         ids=["gq", "interpolated", "backsolve", "seminorm", "collocation"])
def test_a_buffer_changed_between_the_passes_raises(adjoint, options):
    """Two solves with different controls written into one buffer, then one backward pass:
    direct backprop raises (torch's in-place check), the checkpoint adjoint raises
    NondeterministicField (its recomputed step ends elsewhere), and the continuous adjoints
    evaluated func with the second control for the first solve's gradient: dL/dW 1.12
    (relative) off, silently. They now compare func at the forward's last call with what it
    returned then."""
    from gqlib.errors import NondeterministicField

    m = _Controlled()
    y0, t = torch.tensor([0.3, 0.4], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    l1 = odeint(m, y0, t, adjoint=adjoint, adjoint_options=options, **T)[-1].sum()
    with torch.no_grad():
        m.u.copy_(torch.tensor([-1.0, 0.5], dtype=F64))
    l2 = odeint(m, y0, t, adjoint=adjoint, adjoint_options=options, **T)[-1].sum()
    with pytest.raises(NondeterministicField, match="changed since the forward pass"):
        (l1 + l2).backward()


def test_a_buffer_changed_after_the_backward_pass_passes_the_check():
    """The same two solves, each differentiated before the control changes: no error, and the
    gradients are direct backprop's."""
    m = _Controlled()
    y0, t = torch.tensor([0.3, 0.4], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    ref = 0
    for u in ([1.0, 2.0], [-1.0, 0.5]):
        with torch.no_grad():
            m.u.copy_(torch.tensor(u, dtype=F64))
        ref = ref + torch.autograd.grad(odeint(m, y0, t, **T)[-1].sum(), m.W)[0]
    with torch.no_grad():
        m.u.copy_(torch.tensor([1.0, 2.0], dtype=F64))
    l1 = odeint(m, y0, t, adjoint="gq", **T)[-1].sum()
    g1 = torch.autograd.grad(l1, m.W)[0]
    with torch.no_grad():
        m.u.copy_(torch.tensor([-1.0, 0.5], dtype=F64))
    g2 = torch.autograd.grad(odeint(m, y0, t, adjoint="gq", **T)[-1].sum(), m.W)[0]
    assert ((g1 + g2 - ref).abs().max() / ref.abs().max()).item() < 1e-6


@pytest.mark.parametrize(("adjoint", "options"), CONTINUOUS,
                         ids=["gq", "interpolated", "backsolve", "seminorm", "collocation"])
def test_model_eval_between_the_passes_raises(adjoint, options):
    """Forward in training mode, ``model.eval()`` before the backward pass: batch norm then
    normalises with its running statistics, another field. The continuous adjoints returned a
    first-layer weight gradient of -0.0346 where direct backprop gives -0.0606, silently."""
    from gqlib.errors import NondeterministicField

    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3), torch.nn.Tanh(),
                            torch.nn.Linear(3, 3)).double()
    ys = odeint(lambda t, y: m(y), torch.randn(5, 3, dtype=F64), torch.tensor([0.0, 0.5], dtype=F64),
                adjoint=adjoint, adjoint_options=options, adjoint_params=tuple(m.parameters()), **T)
    m.eval()
    with pytest.raises(NondeterministicField, match="changed since the forward pass"):
        ys[-1].sum().backward()


# -- per-element tolerances -----------------------------------------------------------------------
def _per_element_grads(adjoint, **kw):
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    y0 = torch.randn(2, 3, dtype=F64, requires_grad=True)
    t = torch.linspace(0.0, 1.0, 4, dtype=F64)
    rtol = torch.tensor([1e-8, 1e-9, 1e-8], dtype=F64)  # per column of y
    extra = {} if adjoint is None else dict(adjoint=adjoint, adjoint_params=tuple(net.parameters()))
    ys = odeint(lambda t, y: net(y), y0, t, rtol=rtol, atol=1e-10, **extra, **kw)
    return torch.cat([g.reshape(-1) for g in
                      torch.autograd.grad((ys ** 2).sum(), (y0, *net.parameters()))])


@pytest.mark.parametrize("adjoint", ["auto", "checkpoint"])
def test_per_element_tolerances_with_the_discrete_adjoint(adjoint):
    """The discrete adjoint solves nothing backwards: per-element forward tolerances are fine
    (before: ValueError 'rtol must be a scalar for the adjoint'); auto picks it every time."""
    want = _per_element_grads(None)
    got = _per_element_grads(adjoint)
    assert float((got - want).norm() / want.norm()) < 1e-11


def test_per_element_tolerances_with_a_backward_solve_ask_for_adjoint_tolerances():
    with pytest.raises(ValueError, match="adjoint_rtol"):
        _per_element_grads("gq")
    want = _per_element_grads(None)
    got = _per_element_grads("gq", adjoint_rtol=1e-9, adjoint_atol=1e-10)
    assert float((got - want).norm() / want.norm()) < 1e-6
    with pytest.raises(ValueError, match="ratio"):
        _per_element_grads("auto", adjoint_options={"ratio": 10.0})


# -- sibling outputs of one autograd node (chunk, split, unbind) ------------------------------------
def _chunked():
    """``w1, w2 = theta.chunk(2)``: two tensors with one grad_fn (SplitBackward), told apart by
    their output number."""
    theta = torch.tensor([0.3, -0.2, 0.5, 0.1], dtype=F64, requires_grad=True)
    w1, w2 = theta.chunk(2)
    y0, t = torch.tensor([0.4, -0.3], dtype=F64), torch.tensor([0.0, 0.7], dtype=F64)
    return theta, w1, w2, y0, t


def test_an_unlisted_sibling_of_a_listed_tensor_raises():
    """``func`` reads ``w1`` and ``w2`` and only ``w2`` is listed: ``w1``'s part of theta's
    gradient is lost. The closure check stopped its search at w2's node, which is w1's too,
    so it never reached theta: dL/dtheta[:2] came back 0 where direct backprop gives -0.156,
    silently (review)."""
    theta, w1, w2, y0, t = _chunked()

    def func(t, y):
        return -w1.sum() * y + torch.tanh(w2 * y)
    ys = odeint(func, y0, t, adjoint="gq", adjoint_params=(w2,), **T)
    with pytest.raises(ValueError, match="not in `adjoint_params`"):
        ys.sum().backward()


def test_a_listed_tensor_computed_from_an_unlisted_sibling_of_another_listed_one():
    """``adjoint_params=(w2, 2 w1)``: ``2 w1`` is not computed from ``w2`` (they share only the
    chunk node, at different outputs), nothing is counted twice, and the gradient is direct
    backprop's; the derived-parameter check raised, and once it did not, the parameter VJPs
    ran u's node (it feeds the chunk node, w2's) and freed it at the first one (review)."""
    def problem():  # each pass its own caller's graph: direct backprop frees u's node
        theta, w1, w2, y0, t = _chunked()
        u = 2.0 * w1

        def func(t, y):
            return -u.sum() * y + torch.tanh(w2 * y)
        return func, theta, w2, u, y0, t
    func, theta, _, _, y0, t = problem()
    ref = torch.autograd.grad(odeint(func, y0, t, **T).sum(), theta)[0]
    func, theta, w2, u, y0, t = problem()
    ys = odeint(func, y0, t, adjoint="gq", adjoint_params=(w2, u), **T)
    got = torch.autograd.grad(ys.sum(), theta)[0]
    assert ((got - ref).abs().max() / ref.abs().max()).item() < 1e-6
