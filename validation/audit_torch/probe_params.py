"""Probes: how parameters reach func. Module with buffers, tied (shared) weights, unused
parameters, requires_grad=False parameters, closure tensors via adjoint_params, y0 and t
computed from parameters (an encoder; a learnable end time), a parameter used both in y0's
encoder and in func. Reference: torchdiffeq direct backprop, dopri5, rtol = atol = 1e-10.

Run: PYTHONPATH=. python validation/audit_torch/probe_params.py
"""

import torch

from validation.audit_torch._harness import run_case

F64 = torch.float64


def _init(m, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=F64))
    return m


class Buffers(torch.nn.Module):
    """A buffer (a fixed mask and scale), tied weights (l2.weight is l1.weight transposed
    via a shared Parameter), an unused parameter and a frozen one."""

    def __init__(self):
        super().__init__()
        self.W = torch.nn.Parameter(torch.empty(4, 4, dtype=F64))
        self.b = torch.nn.Parameter(torch.empty(4, dtype=F64))
        self.unused = torch.nn.Parameter(torch.ones(3, dtype=F64))
        self.frozen = torch.nn.Parameter(torch.empty(4, dtype=F64), requires_grad=False)
        self.register_buffer("mask", torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=F64))
        _init(self, 1)
        with torch.no_grad():
            self.frozen.copy_(torch.tensor([0.1, -0.2, 0.3, 0.05], dtype=F64))
        self.unused.requires_grad_(True)

    def forward(self, t, y):
        h = torch.tanh(y @ self.W.T + self.b) * self.mask
        return h @ self.W - 0.2 * y + self.frozen * torch.cos(t)  # W used twice (tied)


class Shared(torch.nn.Module):
    """The same Linear module registered twice (a tied module)."""

    def __init__(self):
        super().__init__()
        lin = _init(torch.nn.Linear(3, 3).double(), 2)
        self.a = lin
        self.b = lin

    def forward(self, t, y):
        return self.b(torch.tanh(self.a(y))) - 0.1 * y


def case_module(cls, shape=(2, 4)):
    def make():
        f = cls()
        g = torch.Generator().manual_seed(7)
        y0 = torch.randn(shape, generator=g, dtype=F64).requires_grad_(True)
        t = torch.tensor([0.0, 0.6, 1.4], dtype=F64, requires_grad=True)
        w = torch.randn((3, *shape), generator=g, dtype=F64)
        ps = tuple(p for p in f.parameters() if p.requires_grad)
        return dict(func=f, y0=y0, t=t, params=ps, loss=lambda ys: (w * ys).sum())
    return make


def case_closure():
    def make():
        g = torch.Generator().manual_seed(8)
        A = (0.5 * torch.randn(3, 3, generator=g, dtype=F64)).requires_grad_(True)
        log_k = torch.tensor(-0.5, dtype=F64, requires_grad=True)
        k = log_k.exp()  # computed outside func from a listed leaf

        def f(t, y):
            return torch.tanh(y @ A.T) - k * y * (1 + 0.3 * torch.sin(3 * t))
        y0 = torch.randn(3, generator=g, dtype=F64).requires_grad_(True)
        t = torch.tensor([0.0, 0.5, 2.0], dtype=F64, requires_grad=True)
        w = torch.randn(3, 3, generator=g, dtype=F64)
        return dict(func=f, y0=y0, t=t, params=(A, log_k), loss=lambda ys: (w * ys).sum(),
                    adjoint_params=(A, log_k))
    return make


class Enc(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = _init(torch.nn.Linear(2, 3).double(), 3)
        self.field = _init(torch.nn.Linear(3, 3).double(), 4)
        self.T = torch.nn.Parameter(torch.tensor(1.3, dtype=F64))

    def forward(self, t, y):
        return torch.tanh(self.field(y)) + 0.1 * self.enc.weight[:, 0] - 0.2 * y


def case_encoder(share=False):
    """y0 = enc(x) (non-leaf); t = T * [0, .5, 1] (non-leaf); with share, func reads enc's
    weight too, so enc gets gradient through y0 and through the adjoint's parameter VJP."""
    def make():
        m = Enc()
        x = torch.tensor([[0.3, -0.7], [1.0, 0.2]], dtype=F64)
        base = torch.tensor([0.0, 0.5, 1.0], dtype=F64)
        params = tuple(m.parameters())
        y0 = m.enc(x)  # non-leaf: its gradient flows on to enc's parameters
        t = m.T * base  # non-leaf: dL/dT through dL/dt
        if share:
            func = m
        else:
            field = m.field
            func = lambda tt, y: torch.tanh(field(y)) - 0.2 * y  # noqa: E731
        w = torch.linspace(-1, 1, 3 * 2 * 3, dtype=F64).reshape(3, 2, 3)
        return dict(func=func, y0=y0, t=t, params=params, loss=lambda ys: (w * ys).sum(),
                    adjoint_params=tuple(m.field.parameters()) if not share else None)
    return make


CASES = {
    "buffers+tied+unused+frozen": case_module(Buffers),
    "same Linear registered twice": case_module(Shared, shape=(2, 3)),
    "closure + derived k (adjoint_params)": case_closure(),
    "encoder y0, learnable T": case_encoder(False),
    "encoder shared with func": case_encoder(True),
}

if __name__ == "__main__":
    import sys
    sel = sys.argv[1:] or list(CASES)
    rows = []
    for name in sel:
        rows += run_case(name, CASES[name])
    bad = [r for r in rows if r[-1] == "FINDING"]
    print(f"\n{len(rows)} runs, {len(bad)} findings")
