"""The core's stiffness check of the discrete adjoint (gqlib.adjoint._stiffness) in gqlib.jax's
checkpoint backward pass: the same growth, the same warning, the opt-in fallback."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
from adjoint_fields import VanDerPolField  # noqa: E402

import gqlib  # noqa: E402
import gqlib.jax as gj  # noqa: E402
from gqlib.adjoint import (  # noqa: E402
    STIFF_GROWTH_LIMIT,
    CheckpointAdjoint,
    InterpolatedAdjoint,
    gradient,
)
from gqlib.adjoint._stiffness import stability_polynomial  # noqa: E402
from gqlib.errors import GradientAccuracyWarning  # noqa: E402
from gqlib.interpolate import StepCheckpoints  # noqa: E402
from gqlib.jax._checkpoint import checkpoint_backward  # noqa: E402
from gqlib.jax._odeint import _Config, _run_forward  # noqa: E402
from gqlib.tableaux import get_method  # noqa: E402

VDP_DLDMU = 0.016168  # the continuous adjoints' and the reference's (docs/failures.md)


def discrete_pass(func, y0, t, args, g_of, method, step_size=None, rtol=1e-7, atol=1e-9):
    """The jax forward (checkpoints recorded) and the checkpoint backward pass, jitted:
    ``(forward, parameter gradient, backward stats)``; ``g_of(ys)`` gives the cotangent."""
    cfg = _Config(method, rtol, atol, step_size, None, 4096, "rms", None, 0.0, math.inf,
                  CheckpointAdjoint(), False)

    @jax.jit
    def run(y0, args):
        prob, rk, t_out, fw, _ = _run_forward(func, cfg, y0, t, args, (True, False))
        _, pbar, _, stats = checkpoint_backward(prob, rk, fw, t_out, g_of(fw.ys))
        return fw, pbar, stats
    out = run(y0, args)
    jax.effects_barrier()  # the warning's callback has run
    return out


def vdp(y, t, mu):
    return jnp.stack([y[1], mu * (1.0 - y[0] ** 2) * y[1] - y[0]])


def linear(y, t, lam):
    return -lam * y


def _sum_squares_after_0(ys):
    return (2.0 * ys).at[0].set(0.0)


def test_van_der_pol_warns_with_the_cores_growth():
    """Van der Pol mu = 50 on [0, 5], dopri5 at rtol 1e-7: the discrete dL/dmu is ~-5e18
    against 0.016168, and the pass says so; its growth is the core's on the same steps (the
    core's pass run on the jax forward's checkpoints), to round-off."""
    t = np.linspace(0.0, 5.0, 6)
    with pytest.warns(GradientAccuracyWarning,
                      match=r"dopri5 steps over t in \[.*stability boundary.*Remedies: "
                            r"adjoint='interpolated'"):
        fw, pbar, stats = discrete_pass(vdp, jnp.array([2.0, 0.0]), jnp.asarray(t), (50.0,),
                                        _sum_squares_after_0, "dopri5")
    growth = float(stats["stiff_growth"])
    assert growth > STIFF_GROWTH_LIMIT
    assert abs(float(pbar[0]) - VDP_DLDMU) > 1e6  # what the warning is about
    n = int(fw.n_acc)
    sol = gqlib.solve(VanDerPolField(50.0), np.array([2.0, 0.0]), t, rtol=1e-7, atol=1e-9,
                      checkpoints=True)
    sol.checkpoints = StepCheckpoints(
        np.concatenate([np.asarray(fw.ck_t0[:n]), [float(fw.ck_t1[n - 1])]]),
        np.concatenate([np.asarray(fw.ck_y[:n]), np.asarray(fw.ys[-1:])]))
    sol.y = np.asarray(fw.ys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GradientAccuracyWarning)
        core = gradient(VanDerPolField(50.0), sol, np.asarray(_sum_squares_after_0(fw.ys)),
                        grad_t=False, adjoint="checkpoint")
    assert growth == pytest.approx(core.stats["stiff_growth"], rel=1e-6)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_growth_is_exact_on_a_linear_field(dtype):
    """y' = -10 y, rk4, h lambda = 2.9 (past 2.785) for 60 steps: growth 59 log|R(-2.9)|
    (the last step has no following stage), as in the core (tests/test_adjoint_stiffness.py);
    float32 states to float32 round-off."""
    lam = jnp.asarray(10.0, dtype)
    with pytest.warns(GradientAccuracyWarning, match=r"rk4 steps over t in \[0\.0, .*\(steps "
                                                     r"0-58\).*e\^10\.1 "):
        fw, _, stats = discrete_pass(linear, jnp.ones(1, dtype), jnp.array([0.0, 60 * 0.29]),
                                     (lam,), jnp.ones_like, "rk4", step_size=0.29)
    assert int(fw.n_acc) == 60
    per_step = math.log(abs(np.polyval(stability_polynomial(get_method("rk4")), -2.9)))
    assert float(stats["stiff_growth"]) == pytest.approx(
        59 * per_step, rel=1e-12 if dtype == "float64" else 1e-5)


def test_inside_the_stability_interval():
    """h lambda = 2.0 (inside rk4's interval): growth 0, no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientAccuracyWarning)
        _, _, stats = discrete_pass(linear, jnp.ones(1), jnp.array([0.0, 2.4]), (10.0,),
                                    jnp.ones_like, "rk4", step_size=0.2)
    assert float(stats["stiff_growth"]) == 0.0


def test_no_estimate_without_a_stage_pair():
    """bosh3 has no stage pair (its only c = 1 stage is FSAL): no estimate (None), as in the
    core, and no warning on a stiff field."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientAccuracyWarning)
        _, _, stats = discrete_pass(linear, jnp.ones(1), jnp.array([0.0, 2.4]), (50.0,),
                                    jnp.ones_like, "bosh3", rtol=1e-3, atol=1e-6)
        assert stats["stiff_growth"] is None


def test_public_odeint_warns_under_jit_and_vmap_per_member():
    """Through gj.odeint's default strategy ("auto": checkpoint here, which in gqlib.jax warns
    rather than falls back), under jit(vmap(grad)): one warning, for the stiff member only; the
    non-stiff member's gradient is exact."""
    def loss(lam):
        ys = gj.odeint(linear, jnp.ones(1), jnp.array([0.0, 60 * 0.29]), lam, method="rk4",
                       step_size=0.29)
        return jnp.sum(ys[-1])
    grad = jax.jit(jax.vmap(jax.grad(loss)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = grad(jnp.array([10.0, 1.0]))
        jax.effects_barrier()
    stiff = [w for w in caught if issubclass(w.category, GradientAccuracyWarning)]
    assert len(stiff) == 1 and "e^10.1" in str(stiff[0].message)
    # the non-stiff member: d/dlam R(-0.29 lam)^60 at lam = 1 (the discrete derivative)
    poly = stability_polynomial(get_method("rk4"))
    R, dR = np.polyval(poly, -0.29), np.polyval(np.polyder(poly), -0.29)
    assert float(g[1]) == pytest.approx(60 * R ** 59 * dR * -0.29, rel=1e-12)


@pytest.mark.slow
def test_opt_in_fallback_gives_the_continuous_gradient():
    """CheckpointAdjoint(stiff_fallback=InterpolatedAdjoint()) on Van der Pol mu = 50: the
    interpolated adjoint's gradient from the dense output rebuilt from the checkpoints, no
    warning; under vmap with a non-stiff member (mu = 1), which keeps its discrete gradient.
    ~15 s (compiles both passes)."""
    t = jnp.linspace(0.0, 5.0, 6)

    def loss(mu, adjoint):
        ys = gj.odeint(vdp, jnp.array([2.0, 0.0]), t, mu, method="dopri5", rtol=1e-7,
                       atol=1e-9, adjoint=adjoint, max_steps=1000)
        return jnp.sum(ys[1:] ** 2)
    fallback = CheckpointAdjoint(stiff_fallback=InterpolatedAdjoint())
    with warnings.catch_warnings():
        warnings.simplefilter("error", GradientAccuracyWarning)
        g = jax.jit(jax.vmap(jax.grad(loss), in_axes=(0, None)), static_argnums=1)(
            jnp.array([50.0, 1.0]), fallback)
        jax.effects_barrier()
        plain = jax.grad(loss)(1.0, "checkpoint")
    assert float(g[0]) == pytest.approx(VDP_DLDMU, rel=1e-5)
    assert float(g[1]) == pytest.approx(float(plain), rel=1e-12)


def test_auto_resolves_to_checkpoint_without_the_fallback():
    """gqlib.jax's "auto" (resolved at trace time) runs its discrete candidate without the
    core's stiff fallback (it warns: the fallback would be compiled into every backward)."""
    from gqlib.adjoint import AutoAdjoint
    from gqlib.jax._odeint import _auto_choice
    assert AutoAdjoint().discrete.stiff_fallback == InterpolatedAdjoint()  # the core's
    chosen = _auto_choice(AutoAdjoint(), jnp.ones(2), jnp.ones(3), "dopri5")
    assert isinstance(chosen, CheckpointAdjoint) and chosen.stiff_fallback is None
