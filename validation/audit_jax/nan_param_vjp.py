"""Repro: a parameter VJP that is NaN only in the backward pass (jnp.where's NaN-gradient trap)
while the adjoint a stays finite. Forward finite; dL/dp NaN.

Run: PYTHONPATH=. python validation/audit_jax/nan_param_vjp.py"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)
import gqlib.jax as gj  # noqa: E402
from gqlib.adjoint import BacksolveAdjoint  # noqa: E402


def f(y, t, p):
    # for t < 0.5, log(t - 0.5) is NaN: where() selects 0 in the forward, but the
    # cotangent of p is 0 * NaN = NaN there (a finite adjoint a, a NaN parameter VJP)
    return -y + jnp.where(t > 0.5, p * jnp.log(t - 0.5 + 1e-300), 0.0)


def loss(p, adjoint):
    ys = gj.odeint(f, jnp.ones(1), jnp.array([0.0, 1.0, 2.0]), p, adjoint=adjoint,
                   rtol=1e-8, atol=1e-10)
    return jnp.sum(ys[-1] ** 2)


if __name__ == "__main__":
    for adj in ["checkpoint", "gq", "backsolve", BacksolveAdjoint(seminorm=True),
                "interpolated", "collocation", None]:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for mode, fn in (("eager", jax.grad(loss)), ("jit", jax.jit(jax.grad(loss),
                                                                         static_argnums=1))):
                try:
                    g = fn(jnp.array(0.3), adj)
                    print(f"{str(adj):40s} {mode:5s} dL/dp = {np.asarray(g)}"
                          + ("   <== silent NaN" if not np.isfinite(g) else ""))
                except Exception as e:  # noqa: BLE001
                    print(f"{str(adj):40s} {mode:5s} raised {type(e).__name__}: "
                          f"{str(e).splitlines()[0][:150]}")
