"""Probes: adjoint settings. backsolve with seminorm and a callable adjoint norm; a backward
method other than the forward's; gq with an int node count and with checkpoints=False (the
paper's O(D + P) mode) on dissipative and chaotic fields; keep_stages 0 and large; rowwise=True
on a row-wise MLP; per-element rtol with the discrete adjoint; dopri8/tsit5/bosh3/
adaptive_heun/fehlberg2 with dL/dt and decreasing time. Reference: torchdiffeq direct backprop,
dopri5, rtol = atol = 1e-10, float64.

Run: PYTHONPATH=. python validation/audit_torch/probe_options.py
"""

import torch

from validation.audit_torch._harness import run_case
from validation.audit_torch.probe_dynamics import Decay, Lorenz

F64 = torch.float64


class RowMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.l1 = torch.nn.Linear(3, 16).double()
        self.l2 = torch.nn.Linear(16, 3).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=F64))

    def forward(self, t, y):
        return self.l2(torch.tanh(self.l1(y))) - 0.3 * y


def mk(cls, y0v, tv, kw, tgrad=True, ref_kw=None):
    def make():
        f = cls() if cls is RowMLP else cls(F64)
        y0 = torch.tensor(y0v, dtype=F64, requires_grad=True)
        t = torch.tensor(tv, dtype=F64, requires_grad=tgrad)
        w = torch.linspace(-1, 1, len(tv) * y0.numel(), dtype=F64).reshape(len(tv), *y0.shape)
        return dict(func=f, y0=y0, t=t, params=tuple(f.parameters()),
                    loss=lambda ys: (w * ys).sum() + 0.1 * (ys[-1] ** 2).sum(), kw=dict(kw),
                    ref_kw=ref_kw or {})
    return make


Y3 = [[0.5, -0.2, 0.1], [1.0, 0.0, -1.0]]
T = [0.0, 0.5, 1.5]
ALL = [None, "checkpoint", "interpolated", "gq", "backsolve", "collocation", "auto",
       "odeint_adjoint"]
CASES = [
    ("backsolve seminorm", mk(RowMLP, Y3, T, dict(adjoint_options=dict(norm="seminorm"))),
     ["backsolve", "gq", "interpolated"]),
    ("callable adjoint norm (max abs)",
     mk(RowMLP, Y3, T, dict(adjoint_options=dict(norm=lambda x: max(v.abs().max() for v in x)))),
     ["backsolve", "gq", "interpolated"]),
    ("adjoint_method bosh3", mk(RowMLP, Y3, T, dict(adjoint_method="bosh3",
                                                    adjoint_options={})),
     ["backsolve", "gq", "interpolated"]),
    ("adjoint_rtol 1e-9 fwd 1e-7", mk(RowMLP, Y3, T, dict(adjoint_rtol=1e-9, adjoint_atol=1e-9)),
     ["backsolve", "gq", "interpolated"]),
    ("gq nodes=2", mk(RowMLP, Y3, T, dict(adjoint_options=dict(nodes=2))), ["gq"]),
    ("gq nodes=paper", mk(RowMLP, Y3, T, dict(adjoint_options=dict(nodes="paper"))), ["gq"]),
    ("gq checkpoints=False mlp", mk(RowMLP, Y3, T, dict(adjoint_options=dict(checkpoints=False))),
     ["gq", "backsolve"]),
    ("gq checkpoints=False decay k=40",
     mk(Decay, [[1.0, -2.0, 0.5]], [0.0, 0.1, 1.0, 2.0],
        dict(rtol=1e-6, atol=1e-6, adjoint_options=dict(checkpoints=False))), ["gq", "backsolve"]),
    ("gq checkpoints=False lorenz t=2",
     mk(Lorenz, [1.0, 1.0, 1.0], [0.0, 1.0, 2.0],
        dict(rtol=1e-6, atol=1e-6, adjoint_options=dict(checkpoints=False))), ["gq", "backsolve"]),
    ("keep_stages=0", mk(RowMLP, Y3, T, dict(adjoint_options=dict(keep_stages=0))),
     ["checkpoint", "auto"]),
    ("keep_stages=1e9", mk(RowMLP, Y3, T, dict(adjoint_options=dict(keep_stages=10 ** 9))),
     ["checkpoint", "auto"]),
    ("rowwise=True (t-free MLP)", mk(RowMLP, Y3, T, dict(adjoint_options=dict(rowwise=True)),
                                     tgrad=False),
     ["checkpoint", "gq", "interpolated", "auto", "odeint_adjoint"]),
    ("per-element rtol", mk(RowMLP, Y3, T, dict(rtol=torch.tensor([1e-7, 1e-8, 1e-6],
                                                                  dtype=F64))),
     [None, "checkpoint", "auto", "odeint_adjoint"]),
]
for m in ("dopri8", "tsit5", "bosh3", "adaptive_heun", "fehlberg2"):
    CASES.append((f"{m} decreasing t", mk(RowMLP, Y3, [1.5, 0.7, -0.2], dict(method=m)), ALL))

if __name__ == "__main__":
    rows = []
    for name, make, modes in CASES:
        rows += run_case(name, make, modes=modes)
    bad = [r for r in rows if r[-1] == "FINDING"]
    print(f"\n{len(rows)} runs, {len(bad)} findings")
