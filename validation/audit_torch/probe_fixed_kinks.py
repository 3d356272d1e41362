"""Probes: fixed-step methods (euler, midpoint, rk4 with step_size, perturb, grid_constructor),
fields with kinks (torch.where in t with and without jump_t, abs in y), in-place ops inside
func. Fixed steps: the discrete reference is torchdiffeq's direct backprop on the same grid
(step sizes that divide every output interval, so the grids coincide); checkpoint, auto and
direct must equal it to round-off (limit 1e-9). The continuous adjoints differentiate the ODE,
so they are compared with the ODE's gradient (torchdiffeq dopri5 at 1e-10) and must be no
further from it than 10 x direct backprop's error + 100 rtol, or warn.

Run: PYTHONPATH=. python validation/audit_torch/probe_fixed_kinks.py
"""

import torch

from validation.audit_torch._harness import MODES, reference, rel_errors, run_case

F64 = torch.float64


class Net(torch.nn.Module):
    def __init__(self, d=3, seed=0, inplace=False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.l1 = torch.nn.Linear(d, 8).double()
        self.l2 = torch.nn.Linear(8, d).double()
        self.om = torch.nn.Parameter(torch.tensor(1.7, dtype=F64))
        self.inplace = inplace
        with torch.no_grad():
            for p in (*self.l1.parameters(), *self.l2.parameters()):
                p.copy_(0.6 * torch.randn(p.shape, generator=g, dtype=F64))

    def forward(self, t, y):
        if self.inplace:
            h = self.l1(y)
            h.add_(0.3 * torch.sin(self.om * t))  # in place on a non-leaf (add saves nothing)
            out = self.l2(torch.tanh(h))
            out.sub_(0.2 * y)
            out[..., 0] += 0.1  # indexed in-place write
            return out
        h = torch.tanh(self.l1(y) + 0.3 * torch.sin(self.om * t))
        out = self.l2(h) - 0.2 * y
        return out + torch.nn.functional.pad(torch.full_like(out[..., :1], 0.1), (0, 2))


def base(tv, method=None, options=None, ref_kw=None, tgrad=False, inplace=False, **kw):
    def make():
        f = Net(inplace=inplace)
        g = torch.Generator().manual_seed(2)
        y0 = torch.randn(2, 3, generator=g, dtype=F64).requires_grad_(True)
        t = torch.tensor(tv, dtype=F64, requires_grad=tgrad)
        w = torch.randn((len(tv), 2, 3), generator=g, dtype=F64)
        k = dict(kw)
        if method:
            k["method"] = method
        if options:
            k["options"] = options
        return dict(func=f, y0=y0, t=t, params=tuple(f.parameters()),
                    loss=lambda ys: (w * ys).sum(), kw=k, ref_kw=ref_kw or {})
    return make


def fixed(name, make, disc_ref_kw):
    """Discrete modes vs torchdiffeq on the same grid; continuous ones vs the ODE."""
    case = make()
    disc = reference(dict(case, ref_kw=disc_ref_kw))
    ode = reference(dict(case, ref_kw={}))
    rows = []
    direct_err = None
    for mode in MODES:
        r = run_case(name, lambda: dict(make(), ref=lambda: disc), modes=[mode], limit=1e-9,
                     verbose=False)[0]
        c = make()
        from validation.audit_torch._harness import mode_grads
        try:
            gs = mode_grads(c, mode)
            e_ode = max(rel_errors(gs, ode))
        except Exception:  # noqa: BLE001
            e_ode = float("nan")
        if mode is None:
            direct_err = e_ode
        discrete = mode in (None, "checkpoint", "auto", "odeint_adjoint")
        if discrete:
            flag = r[-1]
        else:
            bad = e_ode > 10 * direct_err + 100 * 1e-7 and "GradientAccuracyWarning" not in r[4]
            flag = "FINDING" if bad else ("ok" if r[5] is None else "raised")
        print(f"{name:34s} {str(mode):15s} vs-grid {r[2]:9.2e} vs-ODE {e_ode:9.2e} {flag:8s} "
              f"{','.join(r[4]) or '-'} {r[5] or ''}", flush=True)
        rows.append((name, str(mode), r[2], e_ode, flag))
    return rows


def kink_case(jump):
    def make():
        a = torch.tensor(1.3, dtype=F64, requires_grad=True)
        b = torch.tensor(0.4, dtype=F64, requires_grad=True)

        def f(t, y):
            return torch.where(t < 0.5, -a * y, b * torch.cos(y))
        y0 = torch.tensor([0.7, -0.2], dtype=F64, requires_grad=True)
        t = torch.tensor([0.0, 0.3, 1.0], dtype=F64, requires_grad=True)
        opts = dict(jump_t=torch.tensor([0.5], dtype=F64)) if jump else None
        kw = dict(adjoint_params=(a, b))
        if opts:
            kw["options"] = opts
        return dict(func=f, y0=y0, t=t, params=(a, b), adjoint_params=(a, b),
                    loss=lambda ys: (ys ** 2).sum(), kw=kw,
                    ref_kw=dict(options=dict(jump_t=torch.tensor([0.5], dtype=F64))))
    return make


def abs_case():
    def make():
        p = torch.tensor(0.8, dtype=F64, requires_grad=True)

        def f(t, y):
            return -0.5 * torch.abs(y) + p * torch.cos(2 * t) - 0.3
        y0 = torch.tensor([0.4, 0.1, -0.3], dtype=F64, requires_grad=True)
        t = torch.tensor([0.0, 1.0, 2.5], dtype=F64, requires_grad=True)
        return dict(func=f, y0=y0, t=t, params=(p,), adjoint_params=(p,),
                    loss=lambda ys: (ys[1:] ** 2).sum(), kw=dict(adjoint_params=(p,)))
    return make


if __name__ == "__main__":
    rows = []
    rows += fixed("rk4 h=0.05", base([0.0, 0.5, 1.0], "rk4", dict(step_size=0.05)),
                  dict(method="rk4", options=dict(step_size=0.05)))
    rows += fixed("euler h=0.01", base([0.0, 0.5, 1.0], "euler", dict(step_size=0.01)),
                  dict(method="euler", options=dict(step_size=0.01)))
    rows += fixed("midpoint h=0.02 decreasing", base([1.0, 0.5, 0.0], "midpoint",
                                                     dict(step_size=0.02)),
                  dict(method="midpoint", options=dict(step_size=0.02)))
    rows += fixed("rk4 one step/interval", base([0.0, 0.1, 0.2, 0.3], "rk4"),
                  dict(method="rk4"))
    rows += fixed("rk4 perturb h=0.1", base([0.0, 0.5, 1.0], "rk4",
                                            dict(step_size=0.1, perturb=True)),
                  dict(method="rk4", options=dict(step_size=0.1, perturb=True)))
    gc = lambda f, y0, t: torch.linspace(float(t[0]), float(t[-1]), 21, dtype=F64)  # noqa: E731
    rows += fixed("rk4 grid_constructor 20", base([0.0, 0.5, 1.0], "rk4",
                                                  dict(grid_constructor=gc)),
                  dict(method="rk4", options=dict(grid_constructor=gc)))
    rows += fixed("rk4 h=0.05 in-place func", base([0.0, 0.5, 1.0], "rk4", dict(step_size=0.05),
                                                   inplace=True),
                  dict(method="rk4", options=dict(step_size=0.05)))
    # dopri5 run fixed-step (gqlib's extension; torchdiffeq ignores step_size): the ODE only
    rows += [(*r[:3], None, r[-1]) for r in run_case(
        "dopri5 with step_size 0.05", base([0.0, 0.5, 1.0], "dopri5", dict(step_size=0.05)),
        limit=1e-5)]
    for name, make in [("where(t<.5) kink, jump_t", kink_case(True)),
                       ("where(t<.5) kink, no jump_t", kink_case(False)),
                       ("abs(y) kink crossing 0", abs_case()),
                       ("in-place ops func dopri5", base([0.0, 0.5, 1.0], inplace=True,
                                                         tgrad=True))]:
        rows += [(*r[:3], None, r[-1]) for r in run_case(name, make)]
    bad = [r for r in rows if r[-1] == "FINDING"]
    print(f"\n{len(rows)} runs, {len(bad)} findings")
