"""rk38 vs rk4 (same stability polynomial), fixed h*lambda = 2.632 < 2.785 (inside): rk38's
estimate says growth e^28.7 and the default falls back to a 770x worse gradient."""
import numpy as np
from common import forced_linear, linear, reference, rel, run

from gqlib.adjoint import CheckpointAdjoint

field, y0, _ = forced_linear(100.0)
t = np.linspace(0, 2.0, 3)
ref = reference(field, y0, t)
for m in ("rk4", "rk38"):
    g, st, w, sol = run(field, y0, t, method=m, step_size=2.0 / 76)
    gc, stc, wc, _ = run(field, y0, t, adjoint=CheckpointAdjoint(), method=m, step_size=2.0 / 76)
    print(f"{m}: growth {st['stiff_growth']:.2f} default ({st['strategy']}) err {rel(g, ref):.1e}, checkpoint alone err {rel(gc, ref):.1e} warned {bool(wc)}")
# pure normal stiff linear (diag): no non-normality
field, y0, t = linear(np.diag([-1.0, -100.0]), [1.0, 1.0], np.linspace(0, 2.0, 3))
ref = reference(field, y0, t)
for m in ("rk4", "rk38"):
    g, st, w, sol = run(field, y0, t, method=m, step_size=2.0 / 76)
    print(f"diag {m}: growth {st['stiff_growth']:.2f} strategy {st['strategy']} err {rel(g, ref):.1e}")
