"""Finding (a hang): GQAdjoint/BacksolveAdjoint with checkpoints=False (the paper's O(D + P)
mode) on Lorenz to t = 5 at rtol = atol = 1e-6. The backward re-integration of y leaves the
attractor (reversed Lorenz is volume-expanding at e^{13.7 t}) and runs to |y| ~ 1e5 and beyond
with ever shorter steps; gqlib.torch's backward max_steps is torchdiffeq's 2**31 - 1, so the
backward pass does not end in any useful time (no error, no warning: the drift check runs only
at the next restart, an output time). A call cap in func stops it here and reports how far it
got. torchdiffeq's odeint_adjoint (which always re-integrates y) behaves the same on this
problem; gqlib's default (auto -> checkpoint) and checkpoints=True are fine.

Run: PYTHONPATH=. python validation/audit_torch/repro_checkpoints_false_hang.py
"""

import time

import torch
import torchdiffeq

from gqlib.torch import odeint

F64 = torch.float64
CAP = 150_000


class Cap(Exception):
    pass


class Lorenz(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.tensor([10.0, 28.0, 8.0 / 3.0], dtype=F64))
        self.calls, self.last = 0, None

    def forward(self, t, y):
        self.calls += 1
        self.last = (float(t), float(y.detach().abs().max()))
        if self.calls > CAP:
            raise Cap()
        s, r, b = self.p
        return torch.stack([s * (y[1] - y[0]), y[0] * (r - y[2]) - y[1], y[0] * y[1] - b * y[2]])


def attempt(label, call):
    f = Lorenz()
    y0 = torch.tensor([1.0, 1.0, 1.0], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 2.5, 5.0], dtype=F64)
    t0 = time.time()
    ys = call(f, y0, t)
    n_fwd = f.calls
    try:
        ys.sum().backward()
        print(f"{label:42s} finished: forward {n_fwd} calls, backward {f.calls - n_fwd} calls, "
              f"{time.time() - t0:.1f} s")
    except Cap:
        print(f"{label:42s} STOPPED at the cap: forward {n_fwd} calls, backward {CAP} calls in "
              f"{time.time() - t0:.0f} s, backward at t = {f.last[0]:.6f} (next restart at "
              f"t = 2.5), |y| = {f.last[1]:.3g} (forward max |y| < 50)")


if __name__ == "__main__":
    kw = dict(rtol=1e-6, atol=1e-6)
    attempt("gqlib default (odeint_adjoint: auto)", lambda f, y, t: odeint(f, y, t, adjoint="auto", **kw))
    attempt("gqlib gq (checkpoints=True, default)", lambda f, y, t: odeint(f, y, t, adjoint="gq", **kw))
    for m in ("gq", "backsolve"):
        attempt(f"gqlib {m} checkpoints=False",
                lambda f, y, t, m=m: odeint(f, y, t, adjoint=m,
                                            adjoint_options=dict(checkpoints=False), **kw))
    attempt("torchdiffeq odeint_adjoint", lambda f, y, t: torchdiffeq.odeint_adjoint(f, y, t, **kw))
