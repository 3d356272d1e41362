"""The forward error behind two probes past 100 rtol (core Lorenz to t = 5 at rtol 1e-6, and
fehlberg2 at rtol 1e-5): the solution itself is that far off, so direct backprop (checkpoint)
and every strategy are too; the gradient is no worse than the solve it differentiates.

Run: PYTHONPATH=. python validation/audit_jax/forward_error.py"""

import sys

import jax.numpy as jnp
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _ref import ref_odeint, rel  # noqa: E402
from probe_core import T5, TH, Y0, JaxField, forced, lorenz  # noqa: E402

import gqlib  # noqa: E402

for name, jf, th, y0, t, kw, h in (
        ("lorenz rtol 1e-6", lorenz, np.array([10.0, 28.0, 8.0 / 3.0]), [1.0, 1.0, 20.0],
         [0.0, 2.5, 5.0], dict(rtol=1e-6, atol=1e-8), 2e-4),
        ("lorenz rtol 1e-6 (ref h 1e-4)", lorenz, np.array([10.0, 28.0, 8.0 / 3.0]),
         [1.0, 1.0, 20.0], [0.0, 2.5, 5.0], dict(rtol=1e-6, atol=1e-8), 1e-4),
        ("fehlberg2 rtol 1e-5", forced, TH, Y0, T5, dict(rtol=1e-5, atol=1e-7,
                                                          method="fehlberg2"), 5e-4)):
    sol = gqlib.solve(JaxField(jf, th), np.asarray(y0, float), np.asarray(t, float), **kw)
    ref = ref_odeint(jf, jnp.asarray(y0, dtype=float), jnp.asarray(t, dtype=float),
                     jnp.asarray(th), h=h)
    print(f"{name:32s} forward y(t_N) relative error {rel(sol.y[-1], ref[-1]):.2e} "
          f"(all rows {rel(sol.y, ref):.2e})")
