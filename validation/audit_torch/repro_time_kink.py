"""A field with a jump in t (torch.where(t < t_k, ...)) and no jump_t: how far are the
gradients from the ODE's? Truth: torchdiffeq dopri5 direct backprop at rtol = atol = 1e-12
with jump_t = [t_k] (the solver stops there, so no step straddles the jump).

Run: PYTHONPATH=. python validation/audit_torch/repro_time_kink.py
"""

import warnings

import torch
import torchdiffeq

from gqlib.torch import odeint

F64 = torch.float64


def setup(tk):
    a = torch.tensor(1.3, dtype=F64, requires_grad=True)
    b = torch.tensor(0.9, dtype=F64, requires_grad=True)
    W = torch.tensor([[0.2, -0.8], [0.9, 0.1]], dtype=F64, requires_grad=True)

    def f(t, y):
        return torch.where(t < tk, -a * y + torch.tanh(y @ W.T), b * torch.cos(3 * y) - y @ W)
    y0 = torch.tensor([0.7, -0.2], dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=F64)
    return f, (y0, a, b, W), y0, t


def grads(lib, tk, **kw):
    f, ins, y0, t = setup(tk)
    if "adjoint" in kw:
        kw["adjoint_params"] = ins[1:]
    ys = lib(f, y0, t, **kw)
    gs = torch.autograd.grad((ys ** 2).sum() + ys[-1, 0], ins)
    return torch.cat([g.reshape(-1) for g in gs])


if __name__ == "__main__":
    for tk in (0.5, 0.5123456789):
        ref = grads(torchdiffeq.odeint, tk, rtol=1e-12, atol=1e-12,
                    options=dict(jump_t=torch.tensor([tk], dtype=F64)))
        for rtol in (1e-5, 1e-6, 1e-7, 1e-8):
            for mode in (None, "checkpoint", "interpolated", "gq", "backsolve", "collocation",
                         "auto"):
                kw = dict(rtol=rtol, atol=rtol)
                if mode is not None:
                    kw["adjoint"] = mode
                with warnings.catch_warnings(record=True) as ws:
                    warnings.simplefilter("always")
                    g = grads(odeint, tk, **kw)
                e = float((g - ref).norm() / ref.norm())
                flag = "FINDING" if e > 100 * rtol and not ws else ""
                print(f"t_k {tk} rtol {rtol:.0e} {str(mode):13s} rel err {e:.2e} "
                      f"({e / rtol:7.1f} rtol) {len(ws)} warnings {flag}", flush=True)
            g = grads(torchdiffeq.odeint, tk, rtol=rtol, atol=rtol)
            e = float((g - ref).norm() / ref.norm())
            print(f"t_k {tk} rtol {rtol:.0e} torchdiffeq   rel err {e:.2e} ({e / rtol:7.1f} rtol)")
