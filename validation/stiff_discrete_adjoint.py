"""Stiff Van der Pol (mu = 50, t in [0, 5], dopri5): dL/dmu from direct backprop (gqlib,
torchdiffeq), the default adjoint and the interpolated adjoint, against a tight reference
(collocation over dop853 at rtol = atol = 1e-12), L = sum_{i>0} |y(t_i)|^2.

At rtol 1e-7 the discrete derivatives (direct backprop, and the default's checkpoint adjoint)
are far off: the explicit steps overshoot their stability limit once the stiff component is
below atol (docs/failures.md, a known gap without a warning yet).

Run: python validation/stiff_discrete_adjoint.py
"""

from __future__ import annotations

import torch
import torchdiffeq

import gqlib.torch as gt


def main() -> None:
    torch.set_default_dtype(torch.float64)
    mu = torch.tensor(50.0, requires_grad=True)

    def f(t, y):
        return torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])

    y0, t = torch.tensor([2.0, 0.0]), torch.linspace(0.0, 5.0, 6)
    for rtol in (1e-5, 1e-7):
        tol = dict(rtol=rtol, atol=rtol / 100)
        runs = {
            "gqlib direct": lambda tol=tol: gt.odeint(f, y0, t, **tol),
            "torchdiffeq direct": lambda tol=tol: torchdiffeq.odeint(f, y0, t, **tol),
            "default": lambda tol=tol: gt.odeint_adjoint(f, y0, t, adjoint_params=(mu,), **tol),
            "interpolated": lambda tol=tol: gt.odeint(f, y0, t, adjoint="interpolated",
                                                      adjoint_params=(mu,), **tol),
            "reference": lambda: gt.odeint(f, y0, t, rtol=1e-12, atol=1e-12, method="dop853",
                                           adjoint="collocation", adjoint_params=(mu,)),
        }
        out = {}
        for name, run in runs.items():
            ys = run()
            (g,) = torch.autograd.grad((ys[1:] ** 2).sum(), mu)
            out[name] = float(g)
        print(f"rtol {rtol:g}: " + ", ".join(f"{k} {v:.6g}" for k, v in out.items()))


if __name__ == "__main__":
    main()
