"""A field that is not a function of (t, y) alone (dropout in training mode, noise): every adjoint
that evaluates it again would return a wrong gradient, silently. The checkpoint adjoint checks
that each recomputed step ends where the forward's did (to round-off) and raises
NondeterministicField where it does not; gqlib.torch replays torch's generator states in the
steps it recomputes (dropout: direct backprop's gradient) and raises for the continuous adjoints
when func drew from torch's generators in the forward pass. Steps the forward kept are its own
calls: their gradient is direct backprop's, dropout included."""

import numpy as np
import pytest
from adjoint_fields import LinearField

import gqlib
from gqlib.adjoint import CheckpointAdjoint, gradient
from gqlib.adjoint._checkpoint import RECOMPUTE_LIMIT
from gqlib.errors import GQLibError, NondeterministicField


class NoisyLinear(LinearField):
    """``y' = A y`` times a fresh random factor near 1 at every call."""

    def __init__(self, A, amplitude, seed=0):
        super().__init__(A)
        self.amplitude, self.rng = amplitude, np.random.default_rng(seed)

    def __call__(self, t, y):
        return (1.0 + self.amplitude * self.rng.standard_normal()) * super().__call__(t, y)


A = np.array([[-0.5, 1.0], [-1.0, -0.2]])
T = np.linspace(0.0, 2.0, 5)


@pytest.mark.parametrize("method", ["dopri5", "bosh3", "rk4"])
def test_checkpoint_raises_on_a_field_that_changed(method):
    opts = dict(step_size=0.05) if method == "rk4" else dict(rtol=1e-6, atol=1e-8)
    field = NoisyLinear(A, 1e-3)
    sol = gqlib.solve(field, np.array([1.0, 0.5]), T, method=method, checkpoints=True, **opts)
    with pytest.raises(NondeterministicField, match="recomputed the step") as info:
        gradient(field, sol, np.ones((len(T), 2)), adjoint=CheckpointAdjoint())
    err = info.value
    assert isinstance(err, GQLibError)
    assert T[0] <= err.t < T[-1] and 0 < err.h <= 2.0  # where, and the step
    assert "adjoint=None" in str(err)  # the remedy


def test_checkpoint_of_a_deterministic_field_passes_and_equals_the_exact_gradient():
    """The check does not fire on round-off, and the field without noise is exact."""
    field = LinearField(A)
    y0 = np.array([1.0, 0.5])
    sol = gqlib.solve(field, y0, T, rtol=1e-10, atol=1e-12, checkpoints=True)
    G = np.ones((len(T), 2))
    g = gradient(field, sol, G, adjoint=CheckpointAdjoint())
    from scipy.linalg import expm
    want = sum(expm(A.T * (t - T[0])) @ G[i] for i, t in enumerate(T))
    np.testing.assert_allclose(g.y0, want, rtol=1e-8)


@pytest.mark.parametrize("t0", [1e4, 1e8])
def test_far_from_t0_the_step_check_allows_for_the_spacing_of_t(t0):
    """Far from t = 0 the forward's h and the recomputed t1 - t0 differ by up to a spacing of t
    (Lorenz at t0 = 1e4 ended 5000 round-offs from the forward's state, a false raise, before the
    limit allowed for it); the check still sees noise there."""
    from adjoint_fields import LorenzField

    field, y0, G = LorenzField(), np.array([1.0, 1.0, 1.0]), np.ones((21, 3))
    t = t0 + np.linspace(0.0, 10.0, 21)
    sol = gqlib.solve(field, y0, t, rtol=1e-5, atol=1e-6, checkpoints=True)
    g = gradient(field, sol, G, adjoint=CheckpointAdjoint())
    assert np.all(np.isfinite(g.params))
    noisy = NoisyLinear(A, 1e-3)
    sol = gqlib.solve(noisy, np.array([1.0, 0.5]), t0 + T, rtol=1e-6, atol=1e-8,
                      checkpoints=True)
    with pytest.raises(NondeterministicField):
        gradient(noisy, sol, np.ones((len(T), 2)), adjoint=CheckpointAdjoint())


def test_noise_below_round_off_is_not_a_mismatch():
    """A factor of 1 + 1e-17 is lost in the product: the recomputed steps end where the forward's
    did, and nothing is raised; the limit is far above round-off and far below noise."""
    field = NoisyLinear(A, 1e-17)
    sol = gqlib.solve(field, np.array([1.0, 0.5]), T, rtol=1e-6, atol=1e-8, checkpoints=True)
    gradient(field, sol, np.ones((len(T), 2)), adjoint=CheckpointAdjoint())
    assert 100 <= RECOMPUTE_LIMIT <= 1e4


class GeneratorReplay:
    """Replay tokens of a NumPy Generator: its bit generator's state before each call."""

    def __init__(self, rng):
        self.rng, self.wanted = rng, True

    def __call__(self):
        return dict(self.rng.bit_generator.state)

    def apply(self, token):
        self.rng.bit_generator.state = token


@pytest.mark.parametrize("method", ["dopri5", "rk4"])
def test_core_keeper_replays_the_draws_of_a_recomputed_step(method):
    """StageKeeper(replay=...) with no graph budget: the recomputed calls draw what the forward
    calls drew, every step ends where the forward's did, and the noise, large enough to raise
    without the replay, raises nothing."""
    from gqlib.adjoint import StageKeeper
    from gqlib.tableaux import get_method

    opts = dict(step_size=0.05) if method == "rk4" else dict(rtol=1e-6, atol=1e-8)
    y0, G = np.array([1.0, 0.5]), np.ones((len(T), 2))
    field = NoisyLinear(A, 1e-3)
    keeper = StageKeeper(field, get_method(method), 0, replay=GeneratorReplay(field.rng))
    sol = gqlib.solve(keeper, y0, T, method=method, checkpoints=True, observer=keeper.observe,
                      **opts)
    assert keeper.n_kept == 0 and keeper.n_tracked == len(sol.checkpoints) - 1
    g = gradient(field, sol, G, adjoint=CheckpointAdjoint(), kept=keeper)
    assert g.stats["n_kept_steps"] == 0 and np.all(np.isfinite(g.y0))
    sol = gqlib.solve(field, y0, T, method=method, checkpoints=True, **opts)
    with pytest.raises(NondeterministicField):
        gradient(field, sol, G, adjoint=CheckpointAdjoint())


def test_core_keeper_replays_dense_extra_stages():
    """dop853 interpolates its outputs with 3 extra stages, called right after the step holding
    the output is accepted: the keeper holds their tokens as that step's stages 13-15, and the
    step is replayed (was: recomputed unreplayed, NondeterministicField there). Without those
    tokens (dropped here) the step is still not replayed silently: it raises, at that step; and
    since the extra stages do not reach the step's end state, the interpolated output is checked
    too: their tokens rotated (the end state replayed right) raise there as well."""
    from gqlib.adjoint import StageKeeper
    from gqlib.tableaux import get_method

    Tout, G = np.array([0.0, 0.7, 2.0]), np.ones((3, 2))

    def solve():
        field = NoisyLinear(A, 1e-3)
        keeper = StageKeeper(field, get_method("dop853"), 0, replay=GeneratorReplay(field.rng))
        sol = gqlib.solve(keeper, np.array([1.0, 0.5]), Tout, method="dop853", rtol=1e-4,
                          atol=1e-4, checkpoints=True, observer=keeper.observe)
        return field, keeper, sol

    field, keeper, sol = solve()
    k = int(np.searchsorted(sol.checkpoints.t, Tout[1])) - 1  # the step holding t = 0.7
    assert [len(keeper._steps[j]) for j in (k - 1, k, k + 1)] == [13, 16, 13]
    g = gradient(field, sol, G, adjoint=CheckpointAdjoint(), kept=keeper)
    assert np.all(np.isfinite(g.y0))
    for spoil in ("drop", "rotate"):
        field, keeper, sol = solve()
        calls = keeper._steps[k]
        if spoil == "drop":
            del calls[13:]
        else:
            calls[13:] = [r._replace(token=calls[13 + (i + 1) % 3].token)
                          for i, r in enumerate(calls[13:])]
        with pytest.raises(NondeterministicField) as info:
            gradient(field, sol, G, adjoint=CheckpointAdjoint(), kept=keeper)
        assert info.value.t < Tout[1] < info.value.t + info.value.h


# -- torch: dropout ------------------------------------------------------------------------------
torch = pytest.importorskip("torch")
gt = pytest.importorskip("gqlib.torch")


class DropoutField(torch.nn.Module):
    def __init__(self, W=256):
        super().__init__()
        self.l1, self.l2, self.l3 = (torch.nn.Linear(3, W), torch.nn.Linear(W, W),
                                     torch.nn.Linear(W, 3))
        self.drop = torch.nn.Dropout(0.3)

    def forward(self, t, y):
        return self.l3(self.drop(torch.tanh(self.l2(torch.tanh(self.l1(y))))))


def _grads(field, y0, t, adjoint, seed=5, **kw):
    field.zero_grad()
    torch.manual_seed(seed)
    ys, stats = gt.odeint(field, y0, t, adjoint=adjoint, return_stats=True, **kw)
    stats.rng_after_forward = torch.get_rng_state()
    (ys ** 2).sum().backward()
    return torch.cat([p.grad.reshape(-1) for p in field.parameters()]), stats


FIXED = dict(method="rk4", options=dict(step_size=0.05))  # adaptive steps shrink under dropout


@pytest.fixture
def dropout_field():
    torch.manual_seed(0)
    return DropoutField(W=64).double()


@pytest.mark.parametrize("adjoint", ["gq", "interpolated", "backsolve", "collocation"])
def test_torch_dropout_raises_in_the_continuous_adjoints(dropout_field, adjoint):
    y0 = torch.randn(4, 3, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    with pytest.raises(NondeterministicField, match="random numbers"):
        _grads(dropout_field, y0, t, adjoint, **FIXED)


@pytest.mark.parametrize("W,batch", [(256, 4), (600, 1)])  # auto: checkpoint, interpolated
@pytest.mark.parametrize("adjoint,options", [("auto", None), ("checkpoint", {"keep_stages": 0})])
def test_torch_dropout_replayed_is_direct_backprop(W, batch, adjoint, options):
    """The checkpoint adjoint restores torch's generator before each recomputed call (as
    torch.utils.checkpoint does): the same masks, the gradient of direct backprop with the same
    seed (before: 1.0-15 % off, silently), and the caller's stream continues as after direct
    backprop. auto picks the checkpoint adjoint for such a func even where it would pick the
    interpolated one (W = 1024, batch 1)."""
    torch.manual_seed(0)
    field = DropoutField(W).double()
    y0 = torch.randn(batch, 3, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    want, _ = _grads(field, y0, t, None, **FIXED)
    got, stats = _grads(field, y0, t, adjoint, adjoint_options=options, **FIXED)
    assert stats.backward["strategy"] == "checkpoint"
    assert stats.backward["n_kept_steps"] < stats.backward["n_steps"]  # some steps replayed
    assert float((got - want).norm() / want.norm()) < 1e-12
    assert torch.equal(torch.get_rng_state(), stats.rng_after_forward)  # backward drew nothing


def _random_from_half(net):
    """Draws nothing at its first call, so no random state is captured: the draws from t = 0.5
    on make the recomputed steps differ."""
    return lambda t, y: net(y) * (1 + 0.1 * torch.rand(())) if t > 0.5 else net(y)


def _counting(net):
    """Not random, but not a function of (t, y) either: a call counter in the field."""
    calls = [0]

    def func(t, y):
        calls[0] += 1
        return net(y) * (1.0 + 1e-3 * (calls[0] % 3))
    return func


@pytest.mark.parametrize("make", [_random_from_half, _counting])
def test_torch_func_not_of_t_and_y_is_caught_by_the_step_check(make):
    net = torch.nn.Linear(3, 3).double()
    y0 = torch.randn(2, 3, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)
    ys = gt.odeint(make(net), y0, t, rtol=1e-6, atol=1e-8, adjoint="checkpoint",
                   adjoint_params=tuple(net.parameters()), adjoint_options={"keep_stages": 0})
    with pytest.raises(NondeterministicField, match="recomputed the step"):
        ys.sum().backward()


@pytest.mark.parametrize("adjoint", ["auto", "checkpoint", "gq", "interpolated"])
def test_torch_dropout_in_eval_mode_is_deterministic(dropout_field, adjoint):
    dropout_field.eval()
    y0 = torch.randn(4, 3, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    want, _ = _grads(dropout_field, y0, t, None, rtol=1e-9, atol=1e-11)
    got, _ = _grads(dropout_field, y0, t, adjoint, rtol=1e-9, atol=1e-11)
    assert float((got - want).norm() / want.norm()) < 1e-6


def test_torch_dropout_kept_steps_are_direct_backprop(dropout_field):
    """Where the forward keeps every step's graph, the backward recomputes nothing: the gradient
    is direct backprop's with the same dropout masks (the same seed)."""
    dropout_field = DropoutField(W=1024).double()
    y0 = torch.randn(1, 3, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    kw = dict(method="rk4", options=dict(step_size=0.1))
    want, _ = _grads(dropout_field, y0, t, None, **kw)
    got, stats = _grads(dropout_field, y0, t, "checkpoint", **kw)
    assert stats.forward["kept_steps"] == stats.backward["n_kept_steps"] > 0
    assert float((got - want).norm() / want.norm()) < 1e-12
    other, _ = _grads(dropout_field, y0, t, None, seed=6, **kw)  # other masks: another gradient
    assert float((other - want).norm() / want.norm()) > 1e-3


@pytest.mark.parametrize("adjoint,options", [("auto", None), ("checkpoint", {"keep_stages": 0})])
def test_torch_dropout_dop853_interpolated_outputs_are_direct_backprop(dropout_field, adjoint,
                                                                       options):
    """dop853 interpolates the outputs inside its steps with 3 extra stages: their draws are
    replayed too (was: NondeterministicField at the step holding t = 0.71, 8 % off)."""
    y0 = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 0.13, 0.5, 0.71, 1.0], dtype=torch.float64)
    kw = dict(method="dop853", rtol=1e-2, atol=1e-2)  # loose: dropout shrinks the steps
    want, _ = _grads(dropout_field, y0, t, None, **kw)
    got, stats = _grads(dropout_field, y0, t, adjoint, adjoint_options=options, **kw)
    assert stats.backward["strategy"] == "checkpoint"
    assert float((got - want).norm() / want.norm()) < 1e-12


@pytest.mark.parametrize("W,options", [(64, {"keep_stages": 0}), (512, None)])  # 512: kept
def test_torch_dropout_second_backward_replays_the_same_draws(W, options):
    """``backward(retain_graph=True)`` then a second backward pass: each replays the forward's
    draws (the tokens stay, as torch.utils.checkpoint keeps its saved RNG state; kept graphs
    are used once, then the steps are recomputed), and the gradients accumulate as direct
    backprop's do (was: the second raised NondeterministicField, 3.2e-4 off)."""
    torch.manual_seed(0)
    field = DropoutField(W).double()
    y0 = torch.randn(2, 3, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)

    def twice(adjoint):
        field.zero_grad()
        torch.manual_seed(5)
        ys, stats = gt.odeint(field, y0, t, adjoint=adjoint, adjoint_options=options,
                              method="rk4", options=dict(step_size=0.1), return_stats=True)
        if adjoint is not None:
            assert (stats.forward["kept_steps"] > 0) == (options is None)
        loss = (ys ** 2).sum()
        grads = []
        for retain in (True, False):
            loss.backward(retain_graph=retain)
            grads.append(torch.cat([p.grad.reshape(-1) for p in field.parameters()]))
        return grads

    want = twice(None)
    got = twice("checkpoint")
    assert float((want[1] - 2 * want[0]).norm() / want[1].norm()) < 1e-15
    for g, w in zip(got, want, strict=True):
        assert float((g - w).norm() / w.norm()) < 1e-12


@pytest.mark.parametrize("options", [{"keep_stages": 0}, None])
def test_torch_after_the_backward_pass_only_tokens_stay(dropout_field, options):
    """What stays with the autograd graph for a second backward pass is the replay tokens and
    the checkpoint states the solution holds anyway: no state of the keeper's own. It kept
    every step's first-stage state, a second copy of the checkpoints (13 MB at batch 1024 x 16,
    100 rk4 steps) for as long as the caller held the output (review)."""
    y0 = torch.randn(64, 3, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)
    ys = gt.odeint(dropout_field, y0, t, adjoint="checkpoint", adjoint_options=options, **FIXED)
    node = ys.grad_fn
    (ys ** 2).sum().backward()
    job = node.job
    ck = {x.untyped_storage().data_ptr() for x in job.sol.checkpoints.y}
    held = [r.y for st in job.keeper._steps.values() for r in st if r is not None and r.y is not None]
    assert len(job.keeper._steps) == 20 and held  # the tokens stay, each step's first state
    assert all(y.untyped_storage().data_ptr() in ck for y in held)


@pytest.mark.parametrize("adjoint", ["checkpoint", "auto"])
def test_torch_autocast_backward_evaluates_the_forwards_field(adjoint):
    """A forward pass under ``torch.autocast`` (bf16 on CPU) ran ``func`` in bf16 and the backward
    pass in float32: the checkpoint adjoint's recomputed step then missed the forward's by 1e-4
    and raised NondeterministicField (blaming randomness). The backward pass now runs under the
    forward's autocast region (torch.utils.checkpoint's rule): no error, direct backprop's
    gradient to bf16 round-off (measured 0.80 %; the interpolated adjoint, which needs no
    recompute, 0.80 % too)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))

    def f(t, y):
        return net(y).float()

    y0 = torch.randn(4, 3)
    t = torch.linspace(0.0, 1.0, 3)

    def grads(adj):
        y = y0.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ys = gt.odeint(f, y, t, method="rk4", options=dict(step_size=0.1), adjoint=adj,
                        adjoint_params=tuple(net.parameters()))
        return torch.cat([g.reshape(-1) for g in
                          torch.autograd.grad(ys.square().sum(), (y, *net.parameters()))])

    want = grads(None)
    got = grads(gqlib.adjoint.DEFAULT_ADJOINT if adjoint == "auto" else adjoint)
    assert float((got - want).norm() / want.norm()) < 0.02  # bf16: eps 2^-8 = 0.4 % per op
