"""AutoAdjoint ("auto", the default): checkpoint, or interpolated where the parameters dominate.

The choice is a deterministic function of P, the state size, the output intervals and the
forward steps (gqlib/adjoint/_auto.py); the gradient is the chosen strategy's, bit for bit, and
the stats name it.
"""

import numpy as np
import pytest
import torch
from adjoint_fields import TanhField

import gqlib
import gqlib.torch as gt
from gqlib.adjoint import (
    DEFAULT_ADJOINT,
    AutoAdjoint,
    CheckpointAdjoint,
    InterpolatedAdjoint,
    as_strategy,
    gradient,
)


class SizedTanh(TanhField):
    """TanhField that says its parameter count (as gqlib.torch's fields do)."""

    @property
    def n_params(self):
        return self.W.size + self.b.size


def _problem(n_out=3, **solve_kw):
    rng = np.random.default_rng(3)
    D = 3
    field = SizedTanh(rng.standard_normal((D, D)) / 2, 0.1 * rng.standard_normal(D))
    t = np.linspace(0.0, 1.0, n_out)
    sol = gqlib.solve(field, rng.standard_normal(D), t, rtol=1e-7, atol=1e-9, **solve_kw)
    return field, sol, rng.standard_normal(sol.y.shape)


def test_default_is_auto():
    assert DEFAULT_ADJOINT == "auto" and as_strategy() == AutoAdjoint()


@pytest.mark.parametrize(("ratio", "record", "expected"), [
    (1.0, "dense", "interpolated"),        # P = 12 >= 1 x D = 3
    (10.0, "dense", "checkpoint"),         # P = 12 < 10 x 3
    (1.0, "checkpoints", "checkpoint"),    # no dense output recorded: only checkpoint can run
])
def test_choice_by_size_and_stats(ratio, record, expected):
    auto = AutoAdjoint(ratio=ratio)
    field, sol, G = _problem(**{("dense_output" if record == "dense" else "checkpoints"): True})
    assert auto.record_for(field.n_params, 3) == ("dense" if ratio == 1.0 else "checkpoints")
    g = gradient(field, sol, G, adjoint=auto)
    assert g.stats["strategy"] == expected
    ref = gradient(field, sol, G, adjoint=expected)
    np.testing.assert_array_equal(g.params, ref.params)
    np.testing.assert_array_equal(g.y0, ref.y0)


def test_more_output_intervals_than_steps_choose_checkpoint():
    field, sol, G = _problem(n_out=40, dense_output=True)
    assert len(sol.t) - 1 > len(sol.checkpoints) - 1
    assert gradient(field, sol, G, adjoint=AutoAdjoint(ratio=1.0)).stats["strategy"] == \
        "checkpoint"


def test_field_without_parameter_count_chooses_checkpoint():
    field, sol, G = _problem(dense_output=True)
    plain = TanhField(field.W, field.b)
    assert gradient(plain, sol, G, adjoint=AutoAdjoint(ratio=1.0)).stats["strategy"] == \
        "checkpoint"


def test_settings_are_validated():
    with pytest.raises(ValueError, match="`ratio` must be a positive number"):
        AutoAdjoint(ratio=0.0)
    with pytest.raises(TypeError, match="`continuous` must be an InterpolatedAdjoint"):
        AutoAdjoint(continuous=CheckpointAdjoint())
    with pytest.raises(TypeError, match="`discrete` must be a CheckpointAdjoint"):
        AutoAdjoint(discrete=InterpolatedAdjoint())
    assert as_strategy("auto", ratio=5.0) == AutoAdjoint(ratio=5.0)


def _torch_grads(adjoint, **kw):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 4)).double()
    y0 = torch.tensor([[-1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    ys, st = gt.odeint(lambda t, z: net(z), y0, t, rtol=1e-8, atol=1e-10, adjoint=adjoint,
                       adjoint_params=tuple(net.parameters()), return_stats=True, **kw)
    ys[-1].pow(2).sum().backward()
    return torch.cat([p.grad.reshape(-1) for p in net.parameters()]), st


@pytest.mark.parametrize(("adjoint", "kw", "expected"), [
    ("auto", {}, "checkpoint"),                                      # P = 292 < 8e4 x 8
    ("auto", {"adjoint_options": {"ratio": 10.0}}, "interpolated"),  # P >= 10 x 8
    (AutoAdjoint(ratio=10.0), {}, "interpolated"),
])
def test_torch_reports_the_choice_and_matches_direct(adjoint, kw, expected):
    g, st = _torch_grads(adjoint, **kw)
    assert st.adjoint == "auto" and st.backward["strategy"] == expected
    ref, _ = _torch_grads(None)
    assert float((g - ref).norm() / ref.norm()) < 1e-6


class _CallbackField(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(2, 2).double()
        self.calls = {"step": 0, "accept": 0, "reject": 0}

    def forward(self, t, y):
        return torch.tanh(self.lin(y))

    def callback_step_adjoint(self, t, y, dt):
        self.calls["step"] += 1

    def callback_accept_step_adjoint(self, t, y, dt):
        self.calls["accept"] += 1

    def callback_reject_step_adjoint(self, t, y, dt):
        self.calls["reject"] += 1


def test_auto_choosing_interpolated_calls_adaptive_backward_callbacks():
    # a fixed-step forward (rk4) and an adaptive backward (dopri5): auto's continuous choice
    # runs an adaptive backward solve, so the accept callbacks fire as with "interpolated"
    counts = {}
    for adjoint, extra in (("interpolated", {}), ("auto", {"ratio": 1e-6})):
        field = _CallbackField()
        y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
        out, stats = gt.odeint(field, y0, torch.linspace(0, 1, 3, dtype=torch.float64),
                               method="rk4", options={"step_size": 0.1}, adjoint=adjoint,
                               adjoint_method="dopri5", adjoint_options={"rtol": 1e-6, **extra},
                               return_stats=True)
        out.sum().backward()
        assert stats.backward["strategy"] == "interpolated"
        counts[adjoint] = field.calls
    assert counts["auto"]["accept"] > 0
    assert counts["auto"]["accept"] == counts["auto"]["step"] - counts["auto"]["reject"]


@pytest.mark.parametrize("adjoint_options", [{}, {"ratio": 1e-6}])
def test_auto_accepts_given_adjoint_options_with_another_method(adjoint_options):
    # adjoint_options given (even empty, or only auto's own `ratio`): no "pass adjoint_options"
    field = _CallbackField()
    y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
    out = gt.odeint(field, y0, torch.linspace(0, 1, 3, dtype=torch.float64), method="rk4",
                    options={"step_size": 0.1}, adjoint="auto", adjoint_method="dopri5",
                    adjoint_options=adjoint_options)
    out.sum().backward()
    assert y0.grad is not None and torch.isfinite(y0.grad).all()
