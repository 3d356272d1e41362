"""Van der Pol mu = 1 on its limit cycle, one output interval [0, T], L = |y(T)|^2: dL/dmu
against the checkpoint adjoint of a dop853 solve at rtol 1e-13; and the forward error of y(10).

Run: PYTHONPATH=. python validation/audit_jax/vdp_checkpoint.py"""

import warnings

import numpy as np

import gqlib
from gqlib.adjoint import CheckpointAdjoint, GQAdjoint, InterpolatedAdjoint, gradient
from tests.adjoint_fields import VanDerPolField

Y0 = np.array([2.0, 0.0])


def grad_y(sol):
    gy = np.zeros((2, 2))
    gy[1] = 2 * sol.y[1]
    return gy


if __name__ == "__main__":
    field = VanDerPolField(1.0)
    for T in (5.0, 10.0):
        ref_sol = gqlib.solve(field, Y0, [0.0, T], rtol=1e-13, atol=1e-13, checkpoints=True,
                              method="dop853")
        ref = gradient(field, ref_sol, grad_y(ref_sol), adjoint=CheckpointAdjoint()).params
        for rtol in (1e-6, 1e-8):
            sol = gqlib.solve(field, Y0, [0.0, T], rtol=rtol, atol=rtol * 1e-2,
                              dense_output=True)
            for adj in (CheckpointAdjoint(), GQAdjoint(), InterpolatedAdjoint(),
                        GQAdjoint(extra_nodes=2)):
                with warnings.catch_warnings(record=True) as w:
                    warnings.simplefilter("always")
                    g = gradient(field, sol, grad_y(sol), adjoint=adj)
                err = np.max(np.abs(g.params - ref)) / np.max(np.abs(ref))
                print(f"T = {T:4.1f} rtol {rtol:.0e} {type(adj).__name__:19s} "
                      f"extra={getattr(adj, 'extra_nodes', '-')} err {err:.2e} "
                      f"({err / rtol:.0f} rtol) nodes={g.stats['n_nodes']} warnings={len(w)}")
    ref = gqlib.solve(field, Y0, [0.0, 10.0], rtol=1e-13, atol=1e-13, method="dop853").y[1]
    for rtol in (1e-6, 1e-8):
        y = gqlib.solve(field, Y0, [0.0, 10.0], rtol=rtol, atol=rtol * 1e-2).y[1]
        e = np.max(np.abs(y - ref)) / np.max(np.abs(ref))
        print(f"forward y(10) error at rtol {rtol:.0e}: {e:.2e} ({e / rtol:.0f} rtol)")
