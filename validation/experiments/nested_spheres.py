"""Nested spheres (2-D concentric annuli; Dupont et al.'s task as the paper trains it).

Data: points uniform in area, class 0 for ``r < 0.4``, class 1 for ``0.7 < r < 0.9``; 1000 per
class for training and 50 per class for validation, drawn with the run's seed. Model: the 2-D
point with 3 zero-augmented dimensions, ``dz/dt = MLP([z, t])`` (softplus, ``6 -> W -> W ->
5``), then a linear decoder of ``z(1)`` to two logits. Cross-entropy, Adam lr 0.01, batch 200.
Metric: validation accuracy. dopri5, rtol = atol = 1e-3, C = 0.003.
"""

from __future__ import annotations

NAME = "nested_spheres"
TITLE = "Nested spheres (2-D annuli, augmented NODE classifier)"
METRIC = "val accuracy"
HIGHER_IS_BETTER = True
RTOL = ATOL = 1e-3
GTOL = 0.003
AUG = 3
CONFIGS = {
    "tiny": dict(widths=[5], epochs=1, seeds=1, n_train=200, batch=200),
    "quick": dict(widths=[5, 100], epochs=3, seeds=2, n_train=1000, batch=200),
    "full": dict(widths=[5, 20, 100, 500, 1000, 1500, 2000, 2500, 3000], epochs=100, seeds=10,
                 n_train=1000, batch=200),
}
LR = 0.01


def tasks(cfg):
    return [NAME]


def annuli(n_per_class, gen):
    import math

    import torch

    def ring(n, r0, r1):
        r = torch.sqrt(r0 ** 2 + (r1 ** 2 - r0 ** 2) * torch.rand(n, generator=gen))
        phi = 2 * math.pi * torch.rand(n, generator=gen)
        return torch.stack([r * torch.cos(phi), r * torch.sin(phi)], 1)

    x = torch.cat([ring(n_per_class, 0.0, 0.4), ring(n_per_class, 0.7, 0.9)])
    y = torch.cat([torch.zeros(n_per_class, dtype=torch.long),
                   torch.ones(n_per_class, dtype=torch.long)])
    return x, y


def run_one(task, method, width, seed, cfg, progress=None):
    import torch

    from .common import mlp, train

    gen = torch.Generator().manual_seed(1000 + seed)
    x_tr, y_tr = annuli(cfg["n_train"], gen)
    x_va, y_va = annuli(50, gen)
    torch.manual_seed(seed)
    net = mlp(2 + AUG + 1, width, 2 + AUG)
    decoder = torch.nn.Linear(2 + AUG, 2)

    def field(t, z):
        return net(torch.cat([z, t.expand(z.shape[0], 1)], 1))

    t = torch.tensor([0.0, 1.0])
    params = list(net.parameters()) + list(decoder.parameters())
    ode_params = list(net.parameters())
    gen_b = torch.Generator().manual_seed(2000 + seed)

    def batches():
        perm = torch.randperm(len(x_tr), generator=gen_b)
        return [perm[k:k + cfg["batch"]] for k in range(0, len(perm), cfg["batch"])]

    def lift(x):
        return torch.cat([x, torch.zeros(x.shape[0], AUG)], 1)

    def forward(solve, func, idx, _params):
        z1 = solve(func, lift(x_tr[idx]), t, ode_params)[-1]
        return decoder(z1), y_tr[idx]

    def metric(model):
        import torchdiffeq

        with torch.no_grad():
            z1 = torchdiffeq.odeint(model, lift(x_va), t, rtol=RTOL, atol=ATOL)[-1]
            return float((decoder(z1).argmax(1) == y_va).float().mean())

    return train(name=method, step_data=batches, model=field, params=params, forward=forward,
                 loss_fn=torch.nn.functional.cross_entropy, epochs=cfg["epochs"], lr=LR,
                 metric_fn=metric, rtol=RTOL, atol=ATOL, gtol=GTOL, progress=progress)
