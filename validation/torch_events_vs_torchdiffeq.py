"""Terminal events: gqlib.torch against torchdiffeq and the closed form (issue 13).

A ball thrown up from height h with speed v0 under gravity g hits the ground at
t_e = (v0 + sqrt(v0^2 + 2 g h)) / g, with dt_e/dh = 1 / s and dt_e/dg = (h / s - t_e) / g,
s = sqrt(v0^2 + 2 g h). Both libraries run ``odeint_event`` (dopri5, the same tolerances,
float64), plainly and through ``odeint_adjoint``; the table gives the event time's and the
gradients' errors against the closed form, NFE, and the median time of a forward + backward
(``--repeats`` runs after a warm-up, one thread).

    python validation/torch_events_vs_torchdiffeq.py [--rtol 1e-8 --atol 1e-10 --repeats 20]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torchdiffeq

import gqlib.torch as gt

F64 = torch.float64


class Ball(torch.nn.Module):
    def __init__(self, g):
        super().__init__()
        self.g = torch.nn.Parameter(torch.tensor(g, dtype=F64))
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return y[1], -self.g * torch.ones_like(y[1])


def run(lib: str, adjoint: bool, h0: float, g0: float, v0: float, rtol: float, atol: float):
    ball = Ball(g0)
    h = torch.tensor(h0, dtype=F64, requires_grad=True)
    v = torch.tensor(v0, dtype=F64)
    mod = gt if lib == "gqlib" else torchdiffeq
    iface = mod.odeint_adjoint if adjoint else mod.odeint
    kw = dict(adjoint_params=tuple(ball.parameters())) if adjoint else {}
    start = time.perf_counter()
    t_e, _ = mod.odeint_event(ball, (h, v), torch.tensor(0.0, dtype=F64), odeint_interface=iface,
                              event_fn=lambda t, y: y[0], rtol=rtol, atol=atol, **kw)
    nfe_fwd = ball.nfe
    t_e.backward()
    seconds = time.perf_counter() - start
    return t_e.item(), h.grad.item(), ball.g.grad.item(), nfe_fwd, ball.nfe - nfe_fwd, seconds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtol", type=float, default=1e-8)
    ap.add_argument("--atol", type=float, default=1e-10)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(1)
    h0, g0, v0 = 2.0, 9.81, 0.5
    s = math.sqrt(v0 ** 2 + 2 * g0 * h0)
    t_exact = (v0 + s) / g0
    dh, dg = 1 / s, (h0 / s - t_exact) / g0
    print(f"falling ball h={h0} g={g0} v0={v0}; dopri5 rtol={a.rtol} atol={a.atol}; "
          f"t_e = {t_exact:.12f}, dt_e/dh = {dh:.12f}, dt_e/dg = {dg:.12f}\n")
    print("| library | mode | t_e error | dt/dh error | dt/dg error | NFE fwd | NFE bwd | "
          "ms / iteration |")
    print("|---|---|---|---|---|---|---|---|")
    for lib in ("torchdiffeq", "gqlib"):
        for adjoint in (False, True):
            run(lib, adjoint, h0, g0, v0, a.rtol, a.atol)  # warm-up
            outs = [run(lib, adjoint, h0, g0, v0, a.rtol, a.atol) for _ in range(a.repeats)]
            te, gh, gg, nf, nb, _ = outs[0]
            ms = 1e3 * statistics.median(o[5] for o in outs)
            print(f"| {lib} | {'odeint_adjoint' if adjoint else 'odeint'} | "
                  f"{abs(te - t_exact):.1e} | {abs(gh - dh):.1e} | {abs(gg - dg):.1e} | {nf} | "
                  f"{nb} | {ms:.1f} |")


if __name__ == "__main__":
    main()
