"""Probe of the closure check: a tensor that requires grad, is not in adjoint_params, and is
read by func only on part of the time range (a Python branch on t, or a term that vanishes at
the end state). The check evaluates func twice at the forward's last call only, so a tensor
func does not read there is not seen: the adjoint gives it no gradient (a zero/None), where
direct backprop gives one.

Run: PYTHONPATH=. python validation/audit_torch/repro_closure_branch.py
"""

import torch

from gqlib.torch import odeint

F64 = torch.float64


class Field(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(0.7, dtype=F64))
        self.c = c  # a plain attribute, not a Parameter: outside func.parameters()

    def forward(self, t, y):
        if float(t) < 0.5:  # c is read only on the first half of [0, 1]
            return -self.a * y + self.c
        return -self.a * y


def run(mode):
    c = torch.tensor(0.4, dtype=F64, requires_grad=True)
    f = Field(c)
    y0 = torch.tensor([1.0, 2.0], dtype=F64)
    t = torch.tensor([0.0, 1.0], dtype=F64)
    ys = odeint(f, y0, t, adjoint=mode, rtol=1e-9, atol=1e-9)
    try:
        g = torch.autograd.grad(ys[-1].sum(), (f.a, c), allow_unused=True)
        dc = None if g[1] is None else f"{float(g[1]):.6f}"
        return f"dL/da = {float(g[0]):.6f}, dL/dc = {dc}"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {str(e)[:120]}"


if __name__ == "__main__":
    for mode in (None, "checkpoint", "interpolated", "gq", "backsolve", "collocation", "auto"):
        print(f"{str(mode):13s} {run(mode)}")
