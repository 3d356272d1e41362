"""The adaptive node rule's shortfall through gqlib.jax (the same host rule): one output interval
[0, 10] of y' = A y, A = [[-0.02, 1], [-1, -0.02]], L = |y(10)|^2, reference: jax.grad
through expm. Run: PYTHONPATH=. python validation/audit_jax/osc_long_nodes_jax.py"""

import warnings

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)
import gqlib.jax as gj  # noqa: E402
from gqlib.adjoint import GQAdjoint  # noqa: E402

A = jnp.array([[-0.02, 1.0], [-1.0, -0.02]])
Y0 = jnp.array([1.0, 0.0])
ref = jax.grad(lambda A: jnp.sum((jax.scipy.linalg.expm(10.0 * A) @ Y0) ** 2))(A)
for rtol in (1e-6, 1e-8):
    for adj in ("checkpoint", "gq", "interpolated", GQAdjoint(extra_nodes=2)):
        def loss(A, rtol=rtol, adj=adj):
            ys = gj.odeint(lambda y, t, A: A @ y, Y0, jnp.array([0.0, 10.0]), A, rtol=rtol,
                           atol=rtol * 1e-2, adjoint=adj)
            return jnp.sum(ys[-1] ** 2)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            g = jax.jit(jax.grad(loss))(A)
        err = float(jnp.max(jnp.abs(g - ref)) / jnp.max(jnp.abs(ref)))
        name = adj if isinstance(adj, str) else "gq extra_nodes=2"
        print(f"rtol {rtol:.0e} {name:18s} err {err:.2e} ({err / rtol:.0f} rtol) "
              f"warnings={len(w)}" + ("  <== silent" if err > 100 * rtol and not w else ""))
