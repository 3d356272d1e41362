"""Probes: state shapes (tuple of mixed shapes, 0-dim, batch dims), time grids (decreasing,
two points, t0 != 0, t0 = 1e4, dL/dt), partial losses. Reference: torchdiffeq direct backprop,
dopri5, rtol = atol = 1e-10, float64. gqlib at its defaults (rtol 1e-7, atol 1e-9).

Run: PYTHONPATH=. python validation/audit_torch/probe_shapes_times.py
"""

import torch

from validation.audit_torch._harness import run_case

F64 = torch.float64
torch.manual_seed(0)


class Mix(torch.nn.Module):
    """A non-autonomous field on one flat vector, used through views of several shapes."""

    def __init__(self, d, width=8, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1 = torch.nn.Linear(d + 1, width).double()
        self.l2 = torch.nn.Linear(width, d).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=F64))

    def flat(self, t, z):
        tt = t.reshape(1).expand(z.shape[:-1] + (1,)) if z.ndim > 1 else t.reshape(1)
        return self.l2(torch.tanh(self.l1(torch.cat([z, torch.sin(tt)], -1)))) - 0.3 * z


class TupleField(Mix):
    shapes = [(2, 3), (4,), ()]

    def __init__(self):
        super().__init__(11)

    def forward(self, t, ys):
        z = torch.cat([y.reshape(-1) for y in ys])
        dz = self.flat(t, z)
        a, b, c = dz[:6], dz[6:10], dz[10]
        return a.reshape(2, 3), b, c


def case_tuple(tgrad=True, decreasing=False):
    def make():
        f = TupleField()
        g = torch.Generator().manual_seed(3)
        y0 = tuple(torch.randn(s, generator=g, dtype=F64).requires_grad_(True) for s in f.shapes)
        tv = [0.3, 0.8, 1.1, 1.9]
        t = torch.tensor(tv[::-1] if decreasing else tv, dtype=F64, requires_grad=tgrad)
        w = [torch.randn((4, *s), generator=g, dtype=F64) for s in f.shapes]
        return dict(func=f, y0=y0, t=t, params=tuple(f.parameters()),
                    loss=lambda ys: sum((wi * yi).sum() for wi, yi in zip(w, ys, strict=False)))
    return make


class Plain(Mix):
    def __init__(self, d):
        super().__init__(d)

    def forward(self, t, y):
        return self.flat(t, y)


def case_tensor(shape, tv, tgrad=True, loss="all"):
    d = shape[-1] if len(shape) else 1

    def make():
        f = Plain(d)
        g = torch.Generator().manual_seed(4)
        y0 = torch.randn(shape, generator=g, dtype=F64).requires_grad_(True)
        t = torch.tensor(tv, dtype=F64, requires_grad=tgrad)
        w = torch.randn((len(tv), *shape), generator=g, dtype=F64)
        if len(shape) == 0:
            func = ZeroDim(f)
        else:
            func = f
        if loss == "all":
            lf = lambda ys: (w * ys).sum()  # noqa: E731
        elif loss == "last":
            lf = lambda ys: (ys[-1] ** 2).sum()  # noqa: E731
        elif loss == "middle":
            lf = lambda ys: (w[1] * ys[1]).sum()  # noqa: E731
        elif loss == "first":  # only y(t0): dL/dparams = 0, dL/dt0 = 0
            lf = lambda ys: (w[0] * ys[0]).sum() + 0 * ys.sum()  # noqa: E731
        return dict(func=func, y0=y0, t=t, params=tuple(f.parameters()), loss=lf)
    return make


class ZeroDim(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, t, y):
        return self.inner(t, y.reshape(1)).reshape(())


CASES = {
    "tuple(2x3,4,0d) t-grad": case_tuple(),
    "tuple decreasing t": case_tuple(decreasing=True),
    "0-dim state": case_tensor((), [0.0, 0.5, 1.0]),
    "batch (2,3,4)": case_tensor((2, 3, 4), [0.0, 0.7, 1.5]),
    "t decreasing from 2": case_tensor((3,), [2.0, 1.3, 0.5, -0.2]),
    "two points t": case_tensor((3,), [0.2, 1.7]),
    "two points decreasing": case_tensor((3,), [1.7, 0.2]),
    "t0 = 1e4": case_tensor((3,), [1e4, 1e4 + 0.5, 1e4 + 1.2]),
    "t0 = -1e4 decreasing": case_tensor((3,), [-1e4, -1e4 - 0.5, -1e4 - 1.2]),
    "loss on last only": case_tensor((3,), [0.0, 0.4, 0.9, 1.5], loss="last"),
    "loss on middle only": case_tensor((3,), [0.0, 0.4, 0.9, 1.5], loss="middle"),
    "loss on t0 only": case_tensor((3,), [0.0, 0.4, 0.9, 1.5], loss="first"),
    "tiny interval 1e-9": case_tensor((3,), [0.5, 0.5 + 1e-9, 0.5 + 2e-9]),
    "long span 0..30": case_tensor((3,), [0.0, 10.0, 30.0]),
}

if __name__ == "__main__":
    import sys
    sel = sys.argv[1:] or list(CASES)
    rows = []
    for name in sel:
        rows += run_case(name, CASES[name])
    bad = [r for r in rows if r[-1] == "FINDING"]
    print(f"\n{len(rows)} runs, {len(bad)} findings")
