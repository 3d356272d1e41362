"""Does the checkpoint adjoint recompute every forward step to the bit? Deterministic linear
fields y' = A y (eigenvalues -1 ... -lambda, tests/adjoint_trust.py) with every adaptive method
of order >= 5 and a fixed-step rk38, rtol 1e-3 ... 1e-8: counts the solves whose backward
pass raised NondeterministicField (a false alarm on a deterministic field).

Before the checkpoints kept the stepper's step sizes, 17 of the 108 raised (dop853, dopri8:
t1 - t0 differs from the stepper's h by a float spacing of t, and 12 stiff stages amplified that
past RECOMPUTE_LIMIT).

Run: python validation/recompute_parity.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from adjoint_trust import PROBLEMS, loss_grad  # noqa: E402

import gqlib  # noqa: E402
from gqlib.adjoint import gradient  # noqa: E402
from gqlib.errors import NondeterministicField  # noqa: E402


def main() -> None:
    warnings.simplefilter("ignore")
    raised = total = 0
    for name in ("linear_lam200", "linear_lam40", "linear_lam200_11out"):
        for method in ("dop853", "dopri5", "tsit5", "dopri8", "bosh3", "rk38"):
            for rtol in (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8):
                field, y0, t = PROBLEMS[name]()
                opts = dict(step_size=0.01) if method == "rk38" else dict(rtol=rtol,
                                                                         atol=rtol / 100)
                sol = gqlib.solve(field, y0, t, method=method, checkpoints=True, **opts)
                total += 1
                try:
                    gradient(field, sol, loss_grad(sol), adjoint="checkpoint", grad_t=False)
                except NondeterministicField as err:
                    raised += 1
                    print(f"{name} {method} rtol {rtol:g}: {str(err)[:120]}")
    print(f"NondeterministicField on a deterministic field: {raised} of {total} solves")


if __name__ == "__main__":
    main()
