"""Probes of the autograd plumbing: gradients with respect to a subset of the inputs (only t,
only y0, only the parameters), backward twice (retain_graph) accumulating into .grad,
create_graph (double backward: an error for the adjoints; for direct mode a Hessian-vector
product equal to torchdiffeq's), output rows used twice, a t of float32 with a float64 state,
t of a single point, and an output that is modified after the call (in-place edit).
Reference: torchdiffeq direct backprop, dopri5, rtol = atol = 1e-10, float64.

Run: PYTHONPATH=. python validation/audit_torch/probe_autograd.py
"""

import warnings

import torch
import torchdiffeq

from gqlib.torch import odeint, odeint_adjoint

F64 = torch.float64
MODES = [None, "checkpoint", "interpolated", "gq", "backsolve", "collocation", "auto"]


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.l1 = torch.nn.Linear(3, 8).double()
        self.l2 = torch.nn.Linear(8, 3).double()
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(0.6 * torch.randn(p.shape, generator=g, dtype=F64))

    def forward(self, t, y):
        return self.l2(torch.tanh(self.l1(y) + torch.sin(t))) - 0.2 * y


def setup(tdtype=F64):
    f = Net()
    y0 = torch.tensor([[0.3, -0.5, 0.8], [1.0, 0.2, -0.1]], dtype=F64, requires_grad=True)
    t = torch.tensor([0.2, 0.7, 1.5], dtype=tdtype, requires_grad=True)
    w = torch.linspace(-1, 1, 18, dtype=F64).reshape(3, 2, 3)
    return f, y0, t, w


def loss(ys, w):
    return (w * ys).sum() + 0.5 * (ys[-1] * ys[1]).sum()  # row used twice, nonlinear


def ref_grads():
    f, y0, t, w = setup()
    ys = torchdiffeq.odeint(f, y0, t, rtol=1e-10, atol=1e-10)
    return torch.autograd.grad(loss(ys, w), (y0, t, *f.parameters()))


def rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300))


def run(mode, which):
    f, y0, t, w = setup()
    ins = {"t": (t,), "y0": (y0,), "params": tuple(f.parameters()),
           "all": (y0, t, *f.parameters())}[which]
    ys = odeint(f, y0, t, adjoint=mode)
    return torch.autograd.grad(loss(ys, w), ins)


def main():
    ref = ref_grads()
    refs = {"t": ref[1:2], "y0": ref[:1], "params": ref[2:], "all": ref}
    out = []
    for mode in MODES:
        for which in ("t", "y0", "params"):
            with warnings.catch_warnings(record=True) as ws:
                warnings.simplefilter("always")
                gs = run(mode, which)
            e = max(rel(g, r) for g, r in zip(gs, refs[which], strict=False))
            out.append((f"subset {which}", mode, e, len(ws)))
        # backward twice accumulating into .grad
        f, y0, t, w = setup()
        ys = odeint(f, y0, t, adjoint=mode)
        L = loss(ys, w)
        L.backward(retain_graph=True)
        L.backward()
        e = max(rel(x.grad, 2 * r) for x, r in zip((y0, t, *f.parameters()), ref, strict=False))
        out.append(("backward twice (.grad = 2x)", mode, e, 0))
        # create_graph
        f, y0, t, w = setup()
        ys = odeint(f, y0, t, adjoint=mode, rtol=1e-10, atol=1e-10)
        try:
            g, = torch.autograd.grad(loss(ys, w), f.l2.bias, create_graph=True)
            hv, = torch.autograd.grad(g.sum(), f.l1.weight)
            f2, y02, t2, w2 = setup()
            ys2 = torchdiffeq.odeint(f2, y02, t2, rtol=1e-10, atol=1e-10)
            g2, = torch.autograd.grad(loss(ys2, w2), f2.l2.bias, create_graph=True)
            hv2, = torch.autograd.grad(g2.sum(), f2.l1.weight)
            out.append(("double backward (Hv vs torchdiffeq)", mode, rel(hv, hv2), 0))
        except Exception as ex:  # noqa: BLE001
            out.append(("double backward (Hv vs torchdiffeq)", mode, float("nan"),
                        f"{type(ex).__name__}: {str(ex)[:90]}"))
        # float32 t with a float64 state
        f, y0, t, w = setup(torch.float32)
        try:
            ys = odeint(f, y0, t, adjoint=mode)
            gs = torch.autograd.grad(loss(ys, w), (y0, t, *f.parameters()))
            f3, y03, t3, w3 = setup(torch.float32)
            ys3 = torchdiffeq.odeint(f3, y03, t3, rtol=1e-10, atol=1e-10)
            r3 = torch.autograd.grad(loss(ys3, w3), (y03, t3, *f3.parameters()))
            e = max(rel(g, r) for g, r in zip(gs, r3, strict=False))
            out.append(("t float32, y float64", mode, e, f"dL/dt dtype {gs[1].dtype}"))
        except Exception as ex:  # noqa: BLE001
            out.append(("t float32, y float64", mode, float("nan"),
                        f"{type(ex).__name__}: {str(ex)[:90]}"))
        # single time point
        f, y0, t, w = setup()
        try:
            ys = odeint(f, y0, t[:1], adjoint=mode)
            gs = torch.autograd.grad((ys ** 2).sum(), (y0, t), allow_unused=True)
            ok = torch.allclose(gs[0], 2 * y0) and (gs[1] is None or float(gs[1].abs().sum()) == 0)
            out.append(("t of one point", mode, 0.0 if ok else 1.0, ""))
        except Exception as ex:  # noqa: BLE001
            out.append(("t of one point", mode, float("nan"),
                        f"{type(ex).__name__}: {str(ex)[:90]}"))
        # output edited in place after the call
        f, y0, t, w = setup()
        ys = odeint(f, y0, t, adjoint=mode)
        try:
            ys[1] *= 2.0
            gs = torch.autograd.grad(loss(ys, w), (y0,))
            out.append(("ys edited in place", mode, float("nan"), "no error (check value)"))
        except Exception as ex:  # noqa: BLE001
            out.append(("ys edited in place", mode, float("nan"), f"{type(ex).__name__}"))
    # odeint_adjoint default
    f, y0, t, w = setup()
    gs = torch.autograd.grad(loss(odeint_adjoint(f, y0, t), w), (y0, t, *f.parameters()))
    out.append(("odeint_adjoint all", "default", max(rel(g, r) for g, r in zip(gs, ref, strict=False)), 0))
    for name, mode, e, note in out:
        print(f"{name:38s} {str(mode):13s} {e:9.2e} {note}", flush=True)


if __name__ == "__main__":
    main()
