"""Sines: a second-order neural ODE fitted to ``x(t) = A sin t + B cos t`` on ``[0, 2 pi]``.

Data: ``A, B ~ U(-1, 1)`` per series (seeded by the run), 15 training and 5 validation series,
observed at 10 or 50 times: regular (``linspace``) or irregular (sorted uniform times with
``t_0 = 0``, one grid shared by all series of a run, so the batch solves together). Model:
``dx/dt = v``, ``dv/dt = MLP([x, v])`` (softplus, ``2 -> W -> W -> 1``); the initial velocity
is the finite difference of the first two observations (the paper's code is not specific here;
this keeps the model free of the true ``A``). Loss and metric: MSE on ``x`` over the observed
times, training and validation series. Full batch, Adam lr 1e-3, dopri5, rtol = atol = 1e-3,
C = 0.1.
"""

from __future__ import annotations

NAME = "sines"
TITLE = "Sines (second-order NODE on A sin t + B cos t)"
METRIC = "val MSE"
HIGHER_IS_BETTER = False
RTOL = ATOL = 1e-3
GTOL = 0.1
LR = 1e-3
CONFIGS = {
    "tiny": dict(widths=[5], epochs=2, seeds=1, variants=["regular_10"]),
    "quick": dict(widths=[5, 200], epochs=10, seeds=2, variants=["regular_10", "irregular_10"]),
    "full": dict(widths=[5, 20, 200, 1000, 2000], epochs=250, seeds=5,
                 variants=["regular_10", "irregular_10", "regular_50", "irregular_50"]),
}


def tasks(cfg):
    return [f"{NAME}_{v}" for v in cfg["variants"]]


def data(variant, seed):
    import math

    import torch

    kind, n = variant.split("_")
    n = int(n)
    gen = torch.Generator().manual_seed(3000 + seed)
    if kind == "regular":
        t = torch.linspace(0, 2 * math.pi, n)
    else:
        t = torch.cat([torch.zeros(1), torch.sort(torch.rand(n - 1, generator=gen))[0]
                       * 2 * math.pi])
    ab = 2 * torch.rand(20, 2, generator=gen) - 1
    x = ab[:, :1] * torch.sin(t) + ab[:, 1:] * torch.cos(t)      # (20, n)
    return t, x[:15].T, x[15:].T                                   # (n, series)


def run_one(task, method, width, seed, cfg, progress=None):
    import torch

    from .common import mlp, train

    t, x_tr, x_va = data(task[len(NAME) + 1:], seed)
    torch.manual_seed(seed)
    net = mlp(2, width, 1)

    def field(_t, z):
        return torch.cat([z[:, 1:], net(z)], 1)

    def start(x):
        v0 = (x[1] - x[0]) / (t[1] - t[0])
        return torch.stack([x[0], v0], 1)

    params = list(net.parameters())

    def forward(solve, func, _batch, params):
        return solve(func, start(x_tr), t, params)[:, :, 0], x_tr

    def loss_fn(pred, tgt):
        return ((pred - tgt) ** 2).mean()

    def metric(model):
        import torchdiffeq

        with torch.no_grad():
            return float(loss_fn(torchdiffeq.odeint(model, start(x_va), t, rtol=RTOL,
                                                    atol=ATOL)[:, :, 0], x_va))

    return train(name=method, step_data=lambda: [None], model=field, params=params,
                 forward=forward, loss_fn=loss_fn, epochs=cfg["epochs"], lr=LR, metric_fn=metric,
                 rtol=RTOL, atol=ATOL, gtol=GTOL, progress=progress)
