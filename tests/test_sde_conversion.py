"""Ito <-> Stratonovich drift conversion."""

import numpy as np
import pytest

from gqlib.sde import (
    BrownianPath,
    diffusion_correction,
    ito_to_stratonovich,
    sdeint,
    stratonovich_to_ito,
)

A = np.array([[0.0, -0.7], [0.7, 0.1]])
B = np.array([[0.4, 0.2], [0.0, -0.3]])  # A B != B A: non-commutative general noise


def test_gbm_known_answer():
    mu, s = 0.5, 0.4
    y = np.array([2.0, -1.0, 0.3])
    mu_s = ito_to_stratonovich(lambda t, y: mu * y, lambda t, y: s * y)
    np.testing.assert_allclose(mu_s(0.0, y), (mu - 0.5 * s**2) * y, rtol=1e-9)
    mu_i = stratonovich_to_ito(lambda t, y: mu * y, lambda t, y: s * y)
    np.testing.assert_allclose(mu_i(0.0, y), (mu + 0.5 * s**2) * y, rtol=1e-9)
    exact = ito_to_stratonovich(lambda t, y: mu * y, lambda t, y: s * y,
                                diffusion_jacobian=lambda t, y: s + 0.0 * y)
    np.testing.assert_allclose(exact(0.0, y), (mu - 0.5 * s**2) * y, rtol=1e-15)


def test_general_noncommutative_known_answer():
    """sigma(x) = [A x, B x]: c = (A^2 + B^2) x."""
    def sigma(t, y):
        return np.stack([y @ A.T, y @ B.T], axis=-1)  # (..., d, m=2)
    def jac(t, y):
        return np.broadcast_to(np.stack([A, B], axis=1), y.shape[:-1] + (2, 2, 2))
    y = np.array([[1.0, 2.0], [-0.5, 0.3], [3.0, -1.0]])
    expect = y @ (A @ A + B @ B).T
    c_fd = diffusion_correction(0.0, y, sigma(0.0, y), sigma, "general")
    c_jac = diffusion_correction(0.0, y, sigma(0.0, y), sigma, "general", jac)
    np.testing.assert_allclose(c_fd, expect, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(c_jac, expect, rtol=1e-14, atol=1e-14)


def test_scalar_noise_known_answer():
    S = np.array([[0.3, 0.1], [-0.2, 0.5]])
    def sigma(t, y):
        return y @ S.T
    y = np.array([[1.0, -2.0], [0.5, 0.25]])
    expect = y @ (S @ S).T
    np.testing.assert_allclose(diffusion_correction(0.0, y, sigma(0.0, y), sigma, "scalar"), expect,
                               rtol=1e-9)
    def jac(t, y):
        return np.broadcast_to(S, y.shape[:-1] + (2, 2))
    np.testing.assert_allclose(diffusion_correction(0.0, y, sigma(0.0, y), sigma, "scalar", jac),
                               expect, rtol=1e-14)


def test_diagonal_modes_agree():
    """Element-by-element, batch-grouped, commutative-grouped and Jacobian give g_i d_i g_i."""

    def g(t, y):  # each row couples its two elements: diagonal, not commutative
        s = y.sum(-1, keepdims=True)
        return np.concatenate([np.sin(s), np.cos(s) * y[..., 1:]], -1)

    def g_diag_jac(t, y):
        s = y.sum(-1, keepdims=True)
        return np.concatenate([np.cos(s), -np.sin(s) * y[..., 1:] + np.cos(s)], -1)

    y = np.array([[0.3, -0.4], [1.2, 0.7], [-2.0, 0.1]])
    expect = g(0, y) * g_diag_jac(0, y)
    full = diffusion_correction(0.0, y, g(0, y), g, "diagonal")
    batched = diffusion_correction(0.0, y, g(0, y), g, "diagonal", batch_ndim=1)
    jac = diffusion_correction(0.0, y, g(0, y), g, "diagonal", g_diag_jac)
    np.testing.assert_allclose(full, expect, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(batched, expect, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(jac, expect, rtol=1e-15)
    # commutative=True is only right for commutative diffusions; for sin(y) it is exact.
    comm = diffusion_correction(0.0, y, np.sin(y), lambda t, y: np.sin(y), "diagonal",
                                commutative=True)
    np.testing.assert_allclose(comm, np.sin(y) * np.cos(y), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("noise_type", ["diagonal", "scalar", "general"])
def test_round_trip(noise_type):
    rng = np.random.default_rng(0)
    y = rng.standard_normal((4, 3))
    def mu(t, y):
        return np.sin(t) * y - y**3
    if noise_type == "general":
        def sigma(t, y):
            return np.tanh(y)[..., None] * np.array([1.0, -0.5]) + 0.1 * y[..., :1, None]
    else:
        def sigma(t, y):
            return np.tanh(y) * (1 + t) + 0.2 * y[..., ::-1] ** 2
    there = ito_to_stratonovich(mu, sigma, noise_type)
    back = stratonovich_to_ito(there, sigma, noise_type)
    np.testing.assert_allclose(back(0.3, y), mu(0.3, y), rtol=1e-13, atol=1e-14)
    assert not np.allclose(there(0.3, y), mu(0.3, y))


def test_conversion_matches_solvers():
    """An Ito SDE by Milstein equals its converted Stratonovich form by midpoint (same path)."""
    M = 400
    path = BrownianPath(0.0, 1.0, shape=(M,), seed=31)
    def mu(t, y):
        return -y
    def sigma(t, y):
        return np.sin(y) + 0.5
    y0 = np.full(M, 0.8)
    ito = sdeint(mu, sigma, y0, [0.0, 1.0], path, method="milstein", dt=2**-10, sde_type="ito")
    mu_s = ito_to_stratonovich(mu, sigma, commutative=True)
    strat = sdeint(mu_s, sigma, y0, [0.0, 1.0], path, method="midpoint", dt=2**-10)
    unconverted = sdeint(mu, sigma, y0, [0.0, 1.0], path, method="midpoint", dt=2**-10)
    gap = np.sqrt(np.mean((ito - strat) ** 2))
    assert gap < 5e-3
    assert np.sqrt(np.mean((ito - unconverted) ** 2)) > 20 * gap


def test_torch_float32_states():
    torch = pytest.importorskip("torch")
    mu_s = ito_to_stratonovich(lambda t, y: 0.5 * y, lambda t, y: 0.4 * torch.sin(y))
    y = torch.tensor([0.3, -1.0], dtype=torch.float32)
    out = mu_s(0.0, y)
    assert out.dtype == torch.float32
    yn = y.double().numpy()
    np.testing.assert_allclose(out.numpy(), 0.5 * yn - 0.08 * np.sin(yn) * np.cos(yn), rtol=1e-6)


def test_validation():
    with pytest.raises(ValueError, match="`noise_type` must be one of"):
        ito_to_stratonovich(lambda t, y: y, lambda t, y: y, "additive")
    with pytest.raises(TypeError, match="`drift` must be callable"):
        ito_to_stratonovich(1.0, lambda t, y: y)
    with pytest.raises(TypeError, match="`diffusion_jacobian` must be callable"):
        stratonovich_to_ito(lambda t, y: y, lambda t, y: y, diffusion_jacobian=2)
    with pytest.raises(ValueError, match="`batch_ndim`"):
        stratonovich_to_ito(lambda t, y: y, lambda t, y: y, batch_ndim=-1)
