"""Probes: degenerate and aliasing fields. func returning its input itself (f = y), a view of
it, a parameter tensor itself (f = p: the same object every call), an expanded (stride-0)
tensor, a field that ignores y, a field that ignores its parameters, the zero field; a
learnable initial state that func also reads (y0 is one of func's parameters); a
non-contiguous y0. Reference: torchdiffeq direct backprop, dopri5, rtol = atol = 1e-10.

Run: PYTHONPATH=. python validation/audit_torch/probe_degenerate.py
"""

import torch

from validation.audit_torch._harness import run_case

F64 = torch.float64


def closure_case(kind):
    def make():
        p = torch.tensor([0.3, -0.2, 0.5], dtype=F64, requires_grad=True)
        q = torch.tensor(0.7, dtype=F64, requires_grad=True)
        fields = {
            "f = y (the input itself)": lambda t, y: y,
            "f = y[:] (a view of the input)": lambda t, y: y[:],
            "f = p (a parameter itself)": lambda t, y: p,
            "f = q.expand(3) (stride 0)": lambda t, y: q.expand(3),
            "f = p * cos(t) (ignores y)": lambda t, y: p * torch.cos(t),
            "f = -y (ignores params)": lambda t, y: -y,
            "f = 0 * y (zero field)": lambda t, y: 0 * y,
            "f = q * y (aliasing-free ref)": lambda t, y: q * y,
        }
        f = fields[kind]
        y0 = torch.tensor([1.0, -0.5, 0.25], dtype=F64, requires_grad=True)
        t = torch.tensor([0.0, 0.5, 1.0], dtype=F64, requires_grad=True)
        w = torch.linspace(-1, 1, 9, dtype=F64).reshape(3, 3)
        return dict(func=f, y0=y0, t=t, params=(p, q), adjoint_params=(p, q),
                    loss=lambda ys: (w * ys).sum() + (ys[-1] ** 2).sum(),
                    kw=dict(adjoint_params=(p, q)))
    return make


class Anchor(torch.nn.Module):
    """A learnable initial state that the field also reads: f = -k (y - z0) + tanh(W y)."""

    def __init__(self):
        super().__init__()
        self.z0 = torch.nn.Parameter(torch.tensor([0.4, -0.3], dtype=F64))
        self.W = torch.nn.Parameter(torch.tensor([[0.2, -0.5], [0.7, 0.1]], dtype=F64))

    def forward(self, t, y):
        return -1.5 * (y - self.z0) + torch.tanh(y @ self.W.T)


def anchor_case():
    def make():
        m = Anchor()
        t = torch.tensor([0.0, 0.5, 2.0], dtype=F64)
        return dict(func=m, y0=m.z0, t=t, params=tuple(m.parameters()),
                    loss=lambda ys: (ys[1:] ** 2).sum() + ys[1:, 0].sum())
    return make


def noncontig_case():
    def make():
        W = torch.tensor([[0.2, -0.5, 0.1], [0.7, 0.1, -0.3], [0.0, 0.4, -0.6]], dtype=F64,
                         requires_grad=True)
        base = torch.tensor([[0.3, 1.0], [-0.5, 0.2], [0.8, -0.1]], dtype=F64,
                            requires_grad=True)
        y0 = base.T  # non-contiguous (2, 3) view
        t = torch.tensor([0.0, 0.6, 1.2], dtype=F64)
        w = torch.linspace(-1, 1, 18, dtype=F64).reshape(3, 2, 3)
        f = lambda t, y: torch.tanh(y @ W.T) - 0.1 * y  # noqa: E731
        return dict(func=f, y0=y0, t=t, params=(W, base), adjoint_params=(W,),
                    loss=lambda ys: (w * ys).sum(), kw=dict(adjoint_params=(W,)))
    return make


KINDS = ["f = y (the input itself)", "f = y[:] (a view of the input)",
         "f = p (a parameter itself)", "f = q.expand(3) (stride 0)",
         "f = p * cos(t) (ignores y)", "f = -y (ignores params)", "f = 0 * y (zero field)",
         "f = q * y (aliasing-free ref)"]

if __name__ == "__main__":
    rows = []
    for k in KINDS:
        rows += run_case(k, closure_case(k))
    rows += run_case("learnable y0 read by func", anchor_case())
    rows += run_case("non-contiguous y0 (a .T view)", noncontig_case())
    bad = [r for r in rows if r[-1] == "FINDING"]
    print(f"\n{len(rows)} runs, {len(bad)} findings")
