"""Is float32 Lorenz (t = 1, rtol = atol = 1e-5) 4e-3 off in gqlib's direct/checkpoint
gradients a gqlib defect or float32? Compare with gqlib float64 at the same tolerance and with
torchdiffeq's float32 direct backprop, all against torchdiffeq float64 at 1e-10.

Run: PYTHONPATH=. python validation/audit_torch/check_float32_lorenz.py
"""

import torch
import torchdiffeq

from gqlib.torch import odeint
from validation.audit_torch.probe_dynamics import Lorenz


def grads(lib, dtype, rtol, **kw):
    f = Lorenz(dtype)
    y0 = torch.tensor([1.0, 1.0, 1.0], dtype=dtype, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=dtype)
    w = torch.linspace(-1, 1, 9, dtype=dtype).reshape(3, 3)
    ys = lib(f, y0, t, rtol=rtol, atol=rtol, **kw)
    g = torch.autograd.grad((w * ys).sum(), (y0, f.p))
    return torch.cat([x.double().reshape(-1) for x in g])


ref = grads(torchdiffeq.odeint, torch.float64, 1e-10)


def rel(g):
    return float((g - ref).norm() / ref.norm())


print("gqlib f64 rtol 1e-5 direct       ", f"{rel(grads(odeint, torch.float64, 1e-5)):.2e}")
print("torchdiffeq f64 rtol 1e-5 direct ", f"{rel(grads(torchdiffeq.odeint, torch.float64, 1e-5)):.2e}")
print("gqlib f32 rtol 1e-5 direct       ", f"{rel(grads(odeint, torch.float32, 1e-5)):.2e}")
print("torchdiffeq f32 rtol 1e-5 direct ", f"{rel(grads(torchdiffeq.odeint, torch.float32, 1e-5)):.2e}")
for m in ("checkpoint", "interpolated", "gq"):
    print(f"gqlib f32 rtol 1e-5 {m:13s}", f"{rel(grads(odeint, torch.float32, 1e-5, adjoint=m)):.2e}")
    print(f"gqlib f64 rtol 1e-5 {m:13s}", f"{rel(grads(odeint, torch.float64, 1e-5, adjoint=m)):.2e}")
print("torchdiffeq f32 odeint_adjoint   ", f"{rel(grads(torchdiffeq.odeint_adjoint, torch.float32, 1e-5)):.2e}")

# the probe's metric (per-input, dL/dt included): the same case in float64 at rtol 1e-5
from validation.audit_torch._harness import run_case  # noqa: E402
from validation.audit_torch.probe_dynamics import case  # noqa: E402

for dt in (torch.float64, torch.float32):
    run_case(f"lorenz t=1 rtol 1e-5 {dt}", case(Lorenz, [1.0, 1.0, 1.0], [0.0, 0.5, 1.0], 1e-5,
                                                 dtype=dt), limit=1e-3)
