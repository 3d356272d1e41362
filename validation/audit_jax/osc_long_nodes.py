"""Repro: the adaptive node rule on one long output interval of a lightly damped oscillator.

y' = A y, A = [[-0.02, 1], [-1, -0.02]] (16 periods over [0, 100]), L = |y(100)|^2,
theta = A. Reference: the exact dL/dA by jax autodiff through expm (float64).
Run: PYTHONPATH=. python validation/audit_jax/osc_long_nodes.py"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
import gqlib  # noqa: E402
from gqlib.adjoint import (  # noqa: E402
    CheckpointAdjoint,
    CollocationAdjoint,
    GQAdjoint,
    InterpolatedAdjoint,
    gradient,
)
from gqlib.errors import GradientAccuracyWarning  # noqa: E402
from tests.adjoint_fields import LinearField  # noqa: E402

A = np.array([[-0.02, 1.0], [-1.0, -0.02]])
Y0 = np.array([1.0, 0.0])


def exact(T):
    def loss(A):
        y = jax.scipy.linalg.expm(A * T) @ jnp.asarray(Y0)
        return jnp.sum(y ** 2)
    return np.asarray(jax.grad(loss)(jnp.asarray(A))).ravel()


if __name__ == "__main__":
    rtol = 1e-8
    for T in (10.0, 30.0, 100.0, 300.0):
        ref = exact(T)
        field = LinearField(A)
        sol = gqlib.solve(field, Y0, [0.0, T], rtol=rtol, atol=1e-10, dense_output=True)
        gy = np.zeros((2, 2))
        gy[1] = 2 * sol.y[1]
        for adj in (CheckpointAdjoint(), GQAdjoint(), InterpolatedAdjoint(),
                    GQAdjoint(extra_nodes=2), CollocationAdjoint()):
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                g = gradient(field, sol, gy, adjoint=adj)
            nw = sum(issubclass(x.category, GradientAccuracyWarning) for x in w)
            err = np.max(np.abs(g.params - ref)) / np.max(np.abs(ref))
            print(f"T = {T:5.0f} {type(adj).__name__:20s} extra={getattr(adj, 'extra_nodes', '-')}"
                  f" dL/dA rel err {err:.2e} ({err / rtol:.0f} rtol) nodes="
                  f"{g.stats['n_nodes']} panels={g.stats['n_panels']} warnings={nw}"
                  + ("  <== silent" if err > 100 * rtol and nw == 0 else ""))

    # the same oscillator over [0, 10]: one output interval or ten, three tolerances
    print()
    ref = exact(10.0)
    for rtol in (1e-6, 1e-8, 1e-10):
        for n_out in (2, 11):
            field = LinearField(A)
            t = np.linspace(0.0, 10.0, n_out)
            sol = gqlib.solve(field, Y0, t, rtol=rtol, atol=rtol * 1e-2, dense_output=True)
            gy = np.zeros((n_out, 2))
            gy[-1] = 2 * sol.y[-1]
            for adj in (CheckpointAdjoint(), GQAdjoint(), GQAdjoint(extra_nodes=2)):
                with warnings.catch_warnings(record=True) as w:
                    warnings.simplefilter("always")
                    g = gradient(field, sol, gy, adjoint=adj)
                nw = sum(issubclass(x.category, GradientAccuracyWarning) for x in w)
                err = np.max(np.abs(g.params - ref)) / np.max(np.abs(ref))
                print(f"rtol {rtol:.0e} outputs {n_out:2d} {type(adj).__name__:18s} "
                      f"extra={getattr(adj, 'extra_nodes', '-')} err {err:.2e} "
                      f"({err / rtol:.0f} rtol) nodes={g.stats['n_nodes']} warnings={nw}"
                      + ("  <== silent" if err > 100 * rtol and nw == 0 else ""))
