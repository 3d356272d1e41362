"""g1d: the paper's 1-D crossing-trajectories task (Norcliffe & Deisenroth 2023, after Dupont et al.).

Data: ``x(0) = -1 -> x(1) = +1`` and ``x(0) = +1 -> x(1) = -1``, full batch. Model: the state
``x`` with 3 zero-augmented dimensions, ``dz/dt = MLP(z)``, softplus, ``4 -> W -> W -> 4``, no
time input. Loss and metric: MSE of ``z_0(1)`` against the target. Adam, dopri5, rtol = atol =
1e-3, C = 0.1 (``gtol``). Full: lr 1e-4, 200 epochs, widths 5 ... 3000, 10 seeds (the settings of
the paper's notebook).
"""

from __future__ import annotations

NAME = "g1d"
TITLE = "g1d (1-D crossing trajectories, augmented NODE)"
METRIC = "final MSE"
HIGHER_IS_BETTER = False
RTOL = ATOL = 1e-3
GTOL = 0.1
CONFIGS = {
    "tiny": dict(widths=[5], epochs=2, seeds=1, lr=1e-4),
    "quick": dict(widths=[5, 100, 500], epochs=15, seeds=2, lr=1e-4),
    "full": dict(widths=[5, 20, 100, 500, 1000, 1500, 2000, 2500, 3000], epochs=200, seeds=10,
                 lr=1e-4),
}
AUG = 3


def tasks(cfg):
    return [NAME]


def run_one(task, method, width, seed, cfg, progress=None):
    import torch

    from .common import mlp, train

    torch.manual_seed(seed)
    net = mlp(1 + AUG, width, 1 + AUG)

    def field(t, z):
        return net(z)

    x0 = torch.tensor([[-1.0], [1.0]])
    y0 = torch.cat([x0, torch.zeros(2, AUG)], 1)
    target = -x0
    t = torch.tensor([0.0, 1.0])
    params = list(net.parameters())

    def forward(solve, func, batch, params):
        return solve(func, y0, t, params)[-1, :, :1], target

    def loss_fn(pred, tgt):
        return ((pred - tgt) ** 2).mean()

    def metric(model):
        import torchdiffeq

        with torch.no_grad():
            z1 = torchdiffeq.odeint(model, y0, t, rtol=RTOL, atol=ATOL)[-1, :, :1]
        return float(loss_fn(z1, target))

    return train(name=method, step_data=lambda: [None], model=field, params=params,
                 forward=forward, loss_fn=loss_fn, epochs=cfg["epochs"], lr=cfg["lr"],
                 metric_fn=metric, rtol=RTOL, atol=ATOL, gtol=GTOL, progress=progress)
