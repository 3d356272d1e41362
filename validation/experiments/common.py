"""What every experiment shares: the methods compared, call counting, the training loop.

A *method* is a name and a function ``solve(func, y0, t, params) -> ys`` that runs the forward
solve in the way the method differentiates it. ``func`` is a :class:`Counted` field, so forward and
backward NFE are the calls of the field during the solve and during ``loss.backward()`` (direct
backprop makes no calls in the backward pass: autograd replays the forward graph; it is reported
as the forward NFE, as torchdiffeq users count it).
"""

from __future__ import annotations

import math
import os
import platform
import time

DIRECT_NAMES = ("torchdiffeq direct", "gqlib direct")


def default_alias() -> str:
    from gqlib.adjoint import DEFAULT_ADJOINT

    return DEFAULT_ADJOINT


# methods run only when named: the default with rowwise=True (the field must ignore t and map
# each row of y on its own, as g1d's and sines' do)
OPT_IN = ["gqlib default rowwise"]


def method_names(include=None) -> list[str]:
    """Every method, in table order (``include``: keep only these, in this order)."""
    names = ["torchdiffeq direct", "torchdiffeq adjoint", "torchdiffeq seminorm",
             "gqlib direct", f"gqlib default ({default_alias()})", "gqlib checkpoint",
             "gqlib auto", "gqlib gq adaptive", "gqlib gq paper", "gqlib interpolated",
             "gqlib collocation"]
    if f"gqlib {default_alias()}" in names:  # the default's own row stands for it
        names.remove(f"gqlib {default_alias()}")
    if include:
        names = names + OPT_IN  # only where the experiment's field qualifies
        keep = [n for n in include if n in names]
        unknown = set(include) - set(names)
        if unknown:
            raise SystemExit(f"unknown methods {sorted(unknown)}; known: {names}")
        return keep
    return names


def make_solver(name: str, *, rtol: float, atol: float, gtol: float, method: str = "dopri5"):
    """``solve(func, y0, t, params)`` for the method ``name``; gtol is the paper's C."""
    import torchdiffeq

    import gqlib.torch as gt

    tol = dict(rtol=rtol, atol=atol, method=method)

    def tdq(adjoint, options=None):
        def solve(func, y0, t, params):
            if not adjoint:
                return torchdiffeq.odeint(func, y0, t, **tol)
            kw = {} if options is None else dict(adjoint_options=options)
            return torchdiffeq.odeint_adjoint(func, y0, t, adjoint_params=tuple(params), **tol,
                                              **kw)
        return solve

    def gq(adjoint, options=None):
        def solve(func, y0, t, params):
            kw = {} if options is None else dict(adjoint_options=options)
            if adjoint is None:
                return gt.odeint(func, y0, t, **tol)
            return gt.odeint(func, y0, t, adjoint=adjoint, adjoint_params=tuple(params), **tol,
                             **kw)
        return solve

    table = {
        "torchdiffeq direct": tdq(False),
        "torchdiffeq adjoint": tdq(True),
        "torchdiffeq seminorm": tdq(True, {"norm": "seminorm"}),
        "gqlib direct": gq(None),
        f"gqlib default ({default_alias()})": gq(default_alias()),
        "gqlib checkpoint": gq("checkpoint"),
        "gqlib auto": gq("auto"),
        "gqlib gq adaptive": gq("gq", {"nodes": "adaptive", "gtol": gtol}),
        "gqlib gq paper": gq("gq", {"nodes": "paper", "gtol": gtol}),
        "gqlib interpolated": gq("interpolated", {"gtol": gtol}),
        "gqlib collocation": gq("collocation"),
        "gqlib default rowwise": gq(default_alias(), {"rowwise": True}),
    }
    if name not in table:
        raise SystemExit(f"unknown method {name!r}; known: {list(table)}")
    return table[name]


class Counted:
    """``func(t, y)`` with a call counter ``n`` (t detached: no experiment differentiates t)."""

    def __init__(self, func):
        self.func, self.n = func, 0

    def __call__(self, t, y):
        self.n += 1
        return self.func(t.detach() if hasattr(t, "detach") else t, y)


def set_threads() -> None:
    import torch

    torch.set_num_threads(1)


def load() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict:
    import torch

    return dict(platform=platform.platform(), python=platform.python_version(),
                torch=torch.__version__, cpus=os.cpu_count(), threads=torch.get_num_threads(),
                processor=platform.processor() or platform.machine())


def train(*, name, step_data, model, params, forward, loss_fn, epochs, lr, metric_fn,
          rtol, atol, gtol, progress=None):
    """Adam on ``params`` for ``epochs`` passes over ``step_data()`` (an iterable of batches).

    ``forward(solve, func_counted, batch) -> (prediction, target)``; ``model`` is the field
    ``(t, y) -> dy``. Per epoch: wall time of forward + backward + optimiser step summed over
    batches, mean loss, mean forward and backward NFE per batch. ``metric_fn(model)`` after the last
    epoch (it may use any solver; it is not timed)."""
    import torch

    solve = make_solver(name, rtol=rtol, atol=atol, gtol=gtol)
    opt = torch.optim.Adam(params, lr=lr)
    func = Counted(model)
    hist = dict(epoch_time=[], epoch_loss=[], fwd_nfe=[], bwd_nfe=[])
    direct = name in DIRECT_NAMES
    for _ in range(epochs):
        sec, losses, nf, nb = 0.0, [], [], []
        for batch in step_data():
            opt.zero_grad()
            t0 = time.perf_counter()
            n0 = func.n
            pred, target = forward(solve, func, batch, params)
            n1 = func.n
            loss = loss_fn(pred, target)
            loss.backward()
            n2 = func.n
            opt.step()
            sec += time.perf_counter() - t0
            losses.append(float(loss.detach()))
            nf.append(n1 - n0)
            nb.append((n1 - n0) if direct else (n2 - n1))
        hist["epoch_time"].append(sec)
        hist["epoch_loss"].append(sum(losses) / len(losses))
        hist["fwd_nfe"].append(sum(nf) / len(nf))
        hist["bwd_nfe"].append(sum(nb) / len(nb))
        if progress is not None:
            progress()
        if not math.isfinite(hist["epoch_loss"][-1]):
            break
    hist["metric"] = float(metric_fn(model))
    return hist


def mlp(n_in: int, width: int, n_out: int):
    """``n_in -> W -> W -> n_out`` with softplus activations (the paper's fields)."""
    from torch import nn

    return nn.Sequential(nn.Linear(n_in, width), nn.Softplus(), nn.Linear(width, width),
                         nn.Softplus(), nn.Linear(width, n_out))
