"""The adaptive node rule's quadrature error on fast transitions (Van der Pol, mu = 5).

Quadrature error = ||g(rule) - g(nodes=64)|| / ||g(nodes=64)|| on the same backward solve (the
backward steps do not depend on the node rule), at three tolerances, for the adaptive rule (resolving
the backward state to a tenth of the tolerance, ``_quadrature.RESOLUTION``), with one extra node,
and the paper's rule; with the mean nodes per output interval.

    python validation/node_rule.py
"""

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from adjoint_fields import VanDerPolField  # noqa: E402

import gqlib  # noqa: E402
from gqlib.adjoint import GQAdjoint, gradient  # noqa: E402


def main():
    rows = []
    for mu in (1.0, 5.0):
        field, y0, t = VanDerPolField(mu), np.array([2.0, 0.0]), np.linspace(0.0, 10.0, 21)
        for rtol in (1e-5, 1e-6, 1e-7):
            sol = gqlib.solve(field, y0, t, rtol=rtol, atol=rtol / 100, checkpoints=True)
            gy = 2.0 * sol.y
            gy[0] = 0.0
            ref = gradient(field, sol, gy, adjoint=GQAdjoint(nodes=64), grad_t=False).params
            for label, strategy in (("adaptive (default)", GQAdjoint()),
                                    ("adaptive, extra_nodes=1", GQAdjoint(extra_nodes=1)),
                                    ("paper (C = 0.1)", GQAdjoint(nodes="paper"))):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    g = gradient(field, sol, gy, adjoint=strategy, grad_t=False)
                err = np.linalg.norm(g.params - ref) / np.linalg.norm(ref)
                per = g.stats["n_nodes"] / (len(t) - 1)
                rows.append((mu, rtol, label, err, err / rtol, per, len(caught)))
    lines = ["| mu | rtol | rule | quadrature error | / rtol | nodes per interval | warned |",
             "|---|---|---|---|---|---|---|"]
    for mu, rtol, label, err, ratio, per, warned in rows:
        lines.append(f"| {mu:g} | {rtol:.0e} | {label} | {err:.2e} | {ratio:.2f} | {per:.2f} | "
                     f"{'yes' if warned else 'no'} |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
