"""Probes: chaotic (Lorenz to t = 5) and dissipative (fast decay) dynamics at rtol = atol =
1e-6; float32 states and parameters against a float64 reference. Reference: torchdiffeq direct
backprop, dopri5, rtol = atol = 1e-10, float64.

Run: PYTHONPATH=. python validation/audit_torch/probe_dynamics.py
"""

import torch

from validation.audit_torch._harness import run_case

F64 = torch.float64


class Lorenz(torch.nn.Module):
    def __init__(self, dtype=F64):
        super().__init__()
        self.p = torch.nn.Parameter(torch.tensor([10.0, 28.0, 8.0 / 3.0], dtype=dtype))

    def forward(self, t, y):
        s, r, b = self.p
        x, yy, z = y[..., 0], y[..., 1], y[..., 2]
        return torch.stack([s * (yy - x), x * (r - z) - yy, x * yy - b * z], -1)


class Decay(torch.nn.Module):
    """Fast decay towards a moving, parameter-dependent target: y' = -k (y - tanh(W y) -
    c sin t), k = 40 (non-stiff at these tolerances on [0, 2]: |lambda| h stays small)."""

    def __init__(self, dtype=F64):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.W = torch.nn.Parameter((0.5 * torch.randn(3, 3, generator=g, dtype=F64)).to(dtype))
        self.c = torch.nn.Parameter(torch.tensor([1.0, -0.5, 0.3], dtype=dtype))
        self.k = 40.0

    def forward(self, t, y):
        return -self.k * (y - torch.tanh(y @ self.W.T) - self.c * torch.sin(t))


class MLP(torch.nn.Module):
    def __init__(self, dtype=F64):
        super().__init__()
        g = torch.Generator().manual_seed(2)
        self.l1 = torch.nn.Linear(4, 32)
        self.l2 = torch.nn.Linear(32, 4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=F64))
        self.to(dtype)

    def forward(self, t, y):
        return self.l2(torch.tanh(self.l1(y))) * torch.cos(t) - 0.3 * y


def case(cls, y0v, tv, rtol, dtype=F64, tgrad=True, ref_dtype=F64, loss="sum"):
    def make(dt=dtype):
        f = cls(dt)
        y0 = torch.tensor(y0v, dtype=dt, requires_grad=True)
        t = torch.tensor(tv, dtype=dt, requires_grad=tgrad)
        w = torch.linspace(-1, 1, len(tv) * y0.numel(), dtype=dt).reshape(len(tv), *y0.shape)
        return dict(func=f, y0=y0, t=t, params=tuple(f.parameters()),
                    loss=lambda ys: (w * ys).sum(), kw=dict(rtol=rtol, atol=rtol))
    if dtype != ref_dtype:
        from validation.audit_torch._harness import reference

        def make32():
            c = make(dtype)
            c["ref"] = lambda: reference(make(ref_dtype))
            return c
        return make32
    return make


CASES = {
    "lorenz to t=5 rtol 1e-6": (case(Lorenz, [1.0, 1.0, 1.0], [0.0, 2.5, 5.0], 1e-6), None),
    "lorenz to t=5 rtol 1e-8": (case(Lorenz, [1.0, 1.0, 1.0], [0.0, 2.5, 5.0], 1e-8), None),
    "decay k=40 rtol 1e-6": (case(Decay, [[1.0, -2.0, 0.5]], [0.0, 0.1, 1.0, 2.0], 1e-6), None),
    "decay k=40 rtol 1e-6 decreasing": (case(Decay, [[1.0, -2.0, 0.5]], [2.0, 1.0, 0.0],
                                             1e-6), None),
    # float32: the solution itself carries round-off ~ eps32 * cond; 1e-3 is the fair bound
    "float32 mlp rtol 1e-5": (case(MLP, [[0.5, -0.2, 0.1, 0.9], [1.0, 0.0, -1.0, 0.3]],
                                   [0.0, 0.5, 1.5], 1e-5, dtype=torch.float32), 1e-3),
    "float32 lorenz t=1 rtol 1e-5": (case(Lorenz, [1.0, 1.0, 1.0], [0.0, 0.5, 1.0], 1e-5,
                                          dtype=torch.float32), 1e-3),
    "float32 decay rtol 1e-5": (case(Decay, [[1.0, -2.0, 0.5]], [0.0, 0.1, 1.0, 2.0], 1e-5,
                                     dtype=torch.float32), 1e-3),
}

if __name__ == "__main__":
    import sys
    sel = sys.argv[1:] or list(CASES)
    rows = []
    for name in sel:
        make, limit = CASES[name]
        rows += run_case(name, make, limit=limit)
    bad = [r for r in rows if r[-1] == "FINDING"]
    print(f"\n{len(rows)} runs, {len(bad)} findings")
