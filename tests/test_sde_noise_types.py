"""Noise structures as objects: aliases, capabilities, and a new structure added as one object."""

import doctest
import importlib

import numpy as np
import pytest

from gqlib.sde import (
    NOISE_TYPES,
    SDE_METHODS,
    BrownianPath,
    DiagonalNoiseType,
    GeneralNoiseType,
    NoiseType,
    PiecewiseLinearNoise,
    ScalarNoiseType,
    diffusion_correction,
    ito_to_stratonovich,
    sdeint,
    wong_zakai,
)
from gqlib.sde._noise_types import as_noise_type

S = np.array([[0.5, -0.2, 0.1], [0.0, 0.3, 0.4]])  # (d = 2, m = 3)


class AdditiveNoiseType(NoiseType):
    """A structure the library does not ship: general-shaped, state-independent diffusion.

    ``sigma`` does not depend on y, so the Ito/Stratonovich correction vanishes: no diffusion call.
    """

    name = "additive"

    def product(self, g, dw, xp=None):
        return GeneralNoiseType().product(g, dw, xp)

    def check_structure(self, ys, gs, ws, wname):
        GeneralNoiseType().check_structure(ys, gs, ws, wname)

    def correction_from_jacobian(self, xp, g, jac):
        return xp.zeros(g.shape[:-1], dtype=g.dtype)

    def correction_fd(self, xp, t, y64, g64, diffusion, *, commutative=False, batch_ndim=0):
        return xp.zeros_like(y64)


def _drift(t, y):
    return np.sin(t) - y


def _sigma(t, y):
    return np.broadcast_to(S, y.shape + (3,)).copy()


def test_aliases_and_instances():
    assert set(NOISE_TYPES) == {"diagonal", "scalar", "general"}
    assert as_noise_type("diagonal") is NOISE_TYPES["diagonal"]
    assert as_noise_type(ScalarNoiseType()) == NOISE_TYPES["scalar"]
    assert DiagonalNoiseType() != ScalarNoiseType() and hash(DiagonalNoiseType()) == hash(
        NOISE_TYPES["diagonal"])
    assert repr(GeneralNoiseType()) == "GeneralNoiseType()"
    with pytest.raises(ValueError, match="`noise_type` must be one of 'diagonal', 'scalar', "
                                         "'general' or a NoiseType instance; got 'additive'"):
        as_noise_type("additive")
    with pytest.raises(TypeError, match=r"got the class GeneralNoiseType \(call it"):
        as_noise_type(GeneralNoiseType)


def test_methods_declare_capabilities():
    assert SDE_METHODS["milstein"].requires == {"elementwise"}
    assert SDE_METHODS["milstein"].noise_types == {"diagonal", "scalar"}
    assert not SDE_METHODS["milstein"].supports(GeneralNoiseType())
    for name in ("euler_maruyama", "euler_heun", "midpoint", "reversible_heun"):
        assert SDE_METHODS[name].noise_types == set(NOISE_TYPES)
        assert SDE_METHODS[name].supports(AdditiveNoiseType())


def test_new_structure_is_one_object():
    """The additive structure runs through sdeint, wong_zakai and the conversion unchanged."""
    M = 8
    path = BrownianPath(0.0, 1.0, shape=(M, 3), seed=3)
    y0 = np.full((M, 2), 0.3)
    ts = np.linspace(0.0, 1.0, 3)
    add = AdditiveNoiseType()
    for name in ("midpoint", "reversible_heun"):
        a = sdeint(_drift, _sigma, y0, ts, path, method=name, dt=0.1, noise_type=add)
        b = sdeint(_drift, _sigma, y0, ts, path, method=name, dt=0.1, noise_type="general")
        np.testing.assert_array_equal(a, b)
    calls = []

    def sigma_counted(t, y):
        calls.append(t)
        return _sigma(t, y)

    mu_s = ito_to_stratonovich(_drift, sigma_counted, add)
    np.testing.assert_array_equal(mu_s(0.2, y0), _drift(0.2, y0))
    assert len(calls) == 1  # the field's own value; no differences for a constant diffusion
    np.testing.assert_allclose(diffusion_correction(0.2, y0, _sigma(0.2, y0), _sigma, "general"),
                               0.0, atol=1e-12)
    field = wong_zakai(_drift, _sigma, PiecewiseLinearNoise(path, 0.25), add)
    ref = wong_zakai(_drift, _sigma, PiecewiseLinearNoise(path, 0.25), "general")
    np.testing.assert_array_equal(field(0.3, y0), ref(0.3, y0))
    assert "additive" in repr(field)
    with pytest.raises(ValueError, match=r"`diffusion` returned shape \(8, 2\); general noise"):
        sdeint(_drift, lambda t, y: 0.1 * y, y0, ts, path, method="midpoint", dt=0.1,
               noise_type=add)


def test_capability_mismatch_names_both_sides():
    path = BrownianPath(0.0, 1.0, shape=(4, 3), seed=3)
    with pytest.raises(ValueError, match=r"method 'milstein' supports noise types diagonal, scalar "
                                         r"but `noise_type` is 'additive' \(AdditiveNoiseType\), "
                                         r"which lacks elementwise: .*; use one of euler_maruyama"):
        sdeint(_drift, _sigma, np.zeros((4, 2)), [0.0, 1.0], path, method="milstein", dt=0.1,
               sde_type="ito", noise_type=AdditiveNoiseType())


@pytest.mark.parametrize("module", ["_brownian", "_conversion", "_noise", "_noise_types", "_solvers",
                                    "_wong_zakai"])
def test_docstring_examples(module):
    mod = importlib.import_module(f"gqlib.sde.{module}")
    result = doctest.testmod(mod, extraglobs={"np": np}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
