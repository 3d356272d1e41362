"""Probe: dL/dt at an output time where f jumps in t (torch.where(t < 0.5, A, B)).
There L(t_i) has a kink: its left and right derivatives differ (f(0.5-) = A branch, f(0.5+) = B
branch), and no gradient exists. Which one-sided derivative does gqlib return? Truth: both
one-sided differences (step 1e-5) of tight solves (gqlib.torch, no grad, rtol = atol = 1e-12:
it lands on the output times, where torchdiffeq steps past the last one into the other branch
and interpolates back). With and without jump_t = [0.5].

Run: PYTHONPATH=. python validation/audit_torch/probe_time_grad_at_jump.py
"""

import warnings

import torch

from gqlib.torch import odeint

F64 = torch.float64
TK = 0.5


def field(a, b):
    return lambda t, y: torch.where(t < TK, -a * y, b * torch.cos(y) + 1.0)


def loss(ys):
    return (ys[-1] ** 2).sum() + 0.5 * ys[-1].sum()


def L(tv):
    a = torch.tensor(1.3, dtype=F64)
    b = torch.tensor(0.4, dtype=F64)
    with torch.no_grad():
        ys = odeint(field(a, b), torch.tensor([0.7, -0.2], dtype=F64),
                    torch.tensor(tv, dtype=F64), rtol=1e-12, atol=1e-12,
                    options=dict(jump_t=torch.tensor([TK], dtype=F64)))
    return float(loss(ys))


def truth(tv, i):
    """The left and the right difference quotients of L in t_i."""
    eps = 1e-5  # smaller steps drown in the solves' noise near the jump (1e-7: 1.7e-3 off)
    out = []
    for side in (-1.0, 1.0):
        tp = list(tv)
        tp[i] += side * eps
        out.append((L(tp) - L(tv)) / (side * eps))
    return out


def gq_dt(tv, mode, jump):
    a = torch.tensor(1.3, dtype=F64, requires_grad=True)
    b = torch.tensor(0.4, dtype=F64, requires_grad=True)
    t = torch.tensor(tv, dtype=F64, requires_grad=True)
    kw = dict(rtol=1e-9, atol=1e-9)
    if jump:
        kw["options"] = dict(jump_t=torch.tensor([TK], dtype=F64))
    if mode is not None:
        kw.update(adjoint=mode, adjoint_params=(a, b))
    ys = odeint(field(a, b), torch.tensor([0.7, -0.2], dtype=F64), t, **kw)
    g, = torch.autograd.grad(loss(ys), t)
    return g


if __name__ == "__main__":
    for tv, i in (([0.0, TK], 1), ([TK, 1.0], 0), ([1.0, TK], 1), ([TK, 0.0], 0)):
        ref = truth(tv, i)
        for jump in (False, True):
            for mode in (None, "checkpoint", "interpolated", "gq", "backsolve", "collocation"):
                with warnings.catch_warnings(record=True) as ws:
                    warnings.simplefilter("always")
                    try:
                        v = float(gq_dt(tv, mode, jump)[i])
                        el, er = (abs(v - r) / abs(r) for r in ref)
                        side = "left" if el < 1e-4 else "right" if er < 1e-4 else "NEITHER"
                        print(f"t = {tv} dL/dt[{i}] jump_t={jump!s:5s} {str(mode):12s} {v: .8f} "
                              f"left {ref[0]: .8f} right {ref[1]: .8f}: the {side} one "
                              f"({min(el, er):.1e}) {len(ws)} warnings", flush=True)
                    except Exception as ex:  # noqa: BLE001
                        print(f"t = {tv} dL/dt[{i}] jump_t={jump!s:5s} {str(mode):12s} "
                              f"{type(ex).__name__}: {str(ex)[:100]}")
