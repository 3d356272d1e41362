"""gqlib for JAX: ``odeint`` with jax.experimental.ode's interface and gqlib's adjoints.

The step loops run as ``lax.while_loop`` in XLA; every decision (step sizes, accept/reject,
targets, quadrature nodes) is the core's, taken on the host through ``jax.pure_callback``.
"""

from ._odeint import odeint, reraise

__all__ = ["odeint", "reraise"]
