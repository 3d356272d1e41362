"""Finding: a field with a kink in y (abs, ReLU) gives the discrete adjoint (direct, checkpoint,
the default auto / odeint_adjoint) and collocation gradients far beyond 100 rtol of the ODE's
gradient, with no GradientAccuracyWarning. The error-controlled backward solves (interpolated,
gq, backsolve) stay within a few rtol.

Truth: directional derivative by central differences of solutions at rtol = atol = 1e-12
(torchdiffeq dopri5), Richardson-extrapolated from steps 2e-4 and 1e-4 (the gap between the
two estimates is printed: the uncertainty of the truth). (torchdiffeq's own direct backprop is off too:
it is the same discrete derivative.)

Run: PYTHONPATH=. python validation/audit_torch/repro_relu_kink.py
"""

import warnings

import torch
import torchdiffeq

from gqlib.torch import odeint

F64 = torch.float64


def abs_problem():
    """y' = -0.5 |y| + p cos 2t - 0.3: y crosses 0 transversally; one parameter p."""
    p = torch.tensor([0.8], dtype=F64)

    def field(theta):
        return lambda t, y: -0.5 * torch.abs(y) + theta[0] * torch.cos(2 * t) - 0.3
    y0 = torch.tensor([0.4, 0.1, -0.3], dtype=F64)
    t = torch.tensor([0.0, 1.0, 2.5], dtype=F64)
    return p, field, y0, t, torch.tensor([1.0], dtype=F64)


def relu_problem():
    """A ReLU MLP field (2 -> 16 -> 2), batch 4; theta flattened; a random direction."""
    g = torch.Generator().manual_seed(0)
    sizes = [(16, 2), (16,), (2, 16), (2,)]
    theta = torch.cat([(0.5 * torch.randn(s, generator=g, dtype=F64)).reshape(-1)
                       for s in sizes])

    def field(th):
        parts, i = [], 0
        for s in sizes:
            n = torch.Size(s).numel()
            parts.append(th[i:i + n].reshape(s))
            i += n
        W1, b1, W2, b2 = parts
        return lambda t, y: torch.relu(y @ W1.T + b1) @ W2.T + b2 - 1.0 * y
    y0 = torch.randn(4, 2, generator=g, dtype=F64)
    t = torch.tensor([0.0, 1.0, 2.0], dtype=F64)
    v = torch.randn(theta.shape, generator=g, dtype=F64)
    return theta, field, y0, t, v / v.norm()


def loss(ys):
    return (ys[1:] ** 2).sum() + ys[1:].sum()


def truth(theta, field, y0, t, v):
    def L(th):
        with torch.no_grad():
            return float(loss(torchdiffeq.odeint(field(th), y0, t, rtol=1e-12, atol=1e-12)))
    def D(eps):
        return (L(theta + eps * v) - L(theta - eps * v)) / (2 * eps)
    d2, d1 = D(2e-4), D(1e-4)
    return [d1, (4 * d1 - d2) / 3]  # central difference at 1e-4 and its Richardson extrapolation


def directional(theta, field, y0, t, v, mode, rtol):
    th = theta.clone().requires_grad_(True)
    kw = {} if mode is None else dict(adjoint=mode, adjoint_params=(th,))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        g, = torch.autograd.grad(loss(odeint(field(th), y0, t, rtol=rtol, atol=rtol, **kw)), th)
    return float(g @ v), [x.category.__name__ for x in w]


if __name__ == "__main__":
    for name, make in [("abs", abs_problem), ("relu-mlp", relu_problem)]:
        args = make()
        ref = truth(*args)
        print(f"{name}: FD truth {ref[1]:.10f} (Richardson of eps 2e-4, 1e-4; eps 1e-4 alone: "
              f"{ref[0]:.10f}, {abs(ref[0] - ref[1]) / abs(ref[1]):.1e} apart)")
        for rtol in (1e-6, 1e-7, 1e-9):
            for mode in (None, "checkpoint", "auto", "interpolated", "gq", "backsolve",
                         "collocation"):
                d, ws = directional(*args, mode, rtol)
                err = abs(d - ref[1]) / abs(ref[1])
                flag = "FINDING" if err > 100 * rtol and not ws else ""
                print(f"  rtol {rtol:.0e} {str(mode):13s} {d:.10f} rel err {err:.2e} "
                      f"({err / rtol:8.1f} rtol) {','.join(ws) or '-'} {flag}", flush=True)
        for tol in (1e-6, 1e-7, 1e-9):
            for nm, lib in (("odeint", torchdiffeq.odeint),
                            ("odeint_adjoint", torchdiffeq.odeint_adjoint)):
                th = args[0].clone().requires_grad_(True)
                kw = dict(adjoint_params=(th,)) if nm == "odeint_adjoint" else {}
                g, = torch.autograd.grad(loss(lib(args[1](th), args[2], args[3], rtol=tol,
                                                  atol=tol, **kw)), th)
                d = float(g @ args[4])
                print(f"  torchdiffeq {nm:14s} rtol {tol:.0e}: {d:.10f} rel err "
                      f"{abs(d - ref[1]) / abs(ref[1]):.2e}")
