"""Probes: odeint_event (the event time's gradient by the implicit function theorem) in every
mode, forward and reversed time, t0 requiring grad; a ball with drag falling to the ground.
Reference: torchdiffeq's odeint_event (odeint_interface=torchdiffeq.odeint) at
rtol = atol = 1e-10, float64; loss = t_event + final state terms.

Run: PYTHONPATH=. python validation/audit_torch/probe_events.py
"""

import warnings

import torch
import torchdiffeq

from gqlib.errors import GradientAccuracyWarning
from gqlib.torch import odeint, odeint_adjoint, odeint_event

F64 = torch.float64


class Ball(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor(9.81, dtype=F64))
        self.c = torch.nn.Parameter(torch.tensor(0.3, dtype=F64))

    def forward(self, t, y):
        return torch.stack([y[1], -self.g - self.c * y[1] * (1 + 0.2 * torch.sin(t))])


def event_fn(t, y):
    return y[0]


def grads(lib_event, interface, reverse=False, **kw):
    f = Ball()
    y0 = torch.tensor([10.0, 1.5], dtype=F64, requires_grad=True)
    t0 = torch.tensor(0.3, dtype=F64, requires_grad=True)
    if reverse:  # the same fall, run backwards in time from the landing state
        y0 = torch.tensor([0.0, -25.0], dtype=F64, requires_grad=True)
        ev = lambda t, y: y[0] - 10.0  # noqa: E731
    else:
        ev = event_fn
    t_e, sol = lib_event(f, y0, t0, event_fn=ev, reverse_time=reverse,
                         odeint_interface=interface, **kw)
    loss = t_e + 0.3 * sol[-1, 1] + 0.1 * sol[-1, 0] ** 2
    return torch.autograd.grad(loss, (y0, t0, f.g, f.c))


def rel(gs, ref):
    a = torch.cat([x.reshape(-1) for x in gs])
    b = torch.cat([x.reshape(-1) for x in ref])
    return float((a - b).norm() / b.norm())


if __name__ == "__main__":
    for reverse in (False, True):
        ref = grads(torchdiffeq.odeint_event, torchdiffeq.odeint, reverse, rtol=1e-10, atol=1e-10)
        for mode in (None, "checkpoint", "interpolated", "gq", "backsolve", "collocation", "auto",
                     "odeint_adjoint"):
            if mode == "odeint_adjoint":
                iface, kw = odeint_adjoint, {}
            else:
                iface, kw = odeint, dict(adjoint=mode)
            with warnings.catch_warnings(record=True) as ws:
                warnings.simplefilter("always")
                try:
                    e = rel(grads(odeint_event, iface, reverse, **kw), ref)
                    err = ""
                except Exception as ex:  # noqa: BLE001
                    e, err = float("nan"), f"{type(ex).__name__}: {str(ex)[:150]}"
            warned = any(issubclass(w.category, GradientAccuracyWarning) for w in ws)
            flag = "FINDING" if e > 1e-5 and not warned else ("raised" if err else "ok")
            print(f"event {'reversed' if reverse else 'forward '} {str(mode):15s} {e:9.2e} {flag} "
                  f"{'warned' if warned else ''} {err}", flush=True)
