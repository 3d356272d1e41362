"""Neural-ODE showcase: the same model trained with gqlib's GQ adjoint and torchdiffeq's adjoint.

Task (torchdiffeq's classic spiral): data from dz/dt = A z^3 with A = [[-0.1, 2], [-2, -0.1]],
z(0) = (2, 0), t in [0, 25] (1000 points). The model dz/dt = MLP(z) (2 -> 256 -> 256 -> 2, tanh)
is fitted on random windows of 10 consecutive points (batch 20): loss = mean |z_model - z_data|.
Both runs start from the same weights, see the same batches and use Adam (lr 1e-3); only the
adjoint differs. Printed: time per iteration, forward/backward evaluations of the model (for gqlib
the backward counts the [z, a] stages and the quadrature nodes; for torchdiffeq every call of the
augmented dynamics), final losses, and the loss on the whole trajectory.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def main(iterations: int = 200) -> int:
    import torch
    from tqdm import tqdm

    try:
        import torchdiffeq
    except ImportError:
        torchdiffeq = None
    import gqlib.torch as gt

    torch.set_num_threads(1)
    dtype = torch.float64
    A = torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=dtype)
    t_all = torch.linspace(0.0, 25.0, 1000, dtype=dtype)
    z_all = gt.odeint(lambda t, z: (z ** 3) @ A.T, torch.tensor([[2.0, 0.0]], dtype=dtype), t_all,
                      rtol=1e-9, atol=1e-10)[:, 0]  # (1000, 2)

    class Field(torch.nn.Module):
        def __init__(self, width=256):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(2, width), torch.nn.Tanh(),
                                           torch.nn.Linear(width, width), torch.nn.Tanh(),
                                           torch.nn.Linear(width, 2))

        def forward(self, t, z):
            return self.net(z ** 3)

    def batches(seed):
        gen = np.random.default_rng(seed)
        for _ in range(iterations):
            s = gen.choice(1000 - 10, 20, replace=False)
            yield z_all[s], t_all[:10] - t_all[0], torch.stack([z_all[s + i] for i in range(10)])

    class Counted(torch.nn.Module):
        """torchdiffeq keeps no statistics: count the model's calls in the forward and backward."""

        def __init__(self, model):
            super().__init__()
            self.model, self.calls = model, 0

        def forward(self, t, z):
            self.calls += 1
            return self.model(t, z)

    def torchdiffeq_run(f, z0, t):
        counted = Counted(f)
        out = torchdiffeq.odeint_adjoint(counted, z0, t, rtol=1e-6, atol=1e-8)
        return out, counted

    runs = {"gqlib GQ adjoint": lambda f, z0, t: gt.odeint_adjoint(f, z0, t, rtol=1e-6, atol=1e-8,
                                                                  adjoint="gq",
                                                                  return_stats=True)}
    if torchdiffeq is not None:
        runs["torchdiffeq adjoint"] = torchdiffeq_run
    results = {}
    for name, solve in runs.items():
        torch.manual_seed(0)
        model = Field().to(dtype)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        fwd_t = bwd_t = 0.0
        nfe_f = nfe_b = 0
        bar = tqdm(batches(1), total=iterations, desc=f"{name:>20}", ncols=100)
        for z0, t, target in bar:
            opt.zero_grad()
            t0 = time.perf_counter()
            pred, stats = solve(model, z0, t)
            t1 = time.perf_counter()
            fwd_calls = stats.calls if isinstance(stats, torch.nn.Module) else 0
            loss = (pred - target).abs().mean()
            loss.backward()
            t2 = time.perf_counter()
            opt.step()
            fwd_t += t1 - t0
            bwd_t += t2 - t1
            if isinstance(stats, torch.nn.Module):  # torchdiffeq: calls before/after backward
                nfe_f += fwd_calls
                nfe_b += stats.calls - fwd_calls
            else:
                nfe_f += stats.forward["nfe"]
                nfe_b += stats.backward["nfe_f"] + stats.backward["nfe_vjp_params"]
            bar.set_postfix(loss=f"{loss.item():.4f}")
        with torch.no_grad():
            full = gt.odeint(model, z_all[:1], t_all, rtol=1e-7, atol=1e-9)[:, 0]
            full_loss = (full - z_all).abs().mean().item()
        results[name] = (fwd_t / iterations, bwd_t / iterations, loss.item(), full_loss,
                         nfe_f / iterations, nfe_b / iterations)
    print(f"\n{'':>20} {'fwd s/it':>9} {'bwd s/it':>9} {'last loss':>10} {'traj. loss':>11} "
          f"{'fwd NFE':>8} {'bwd evals':>9}")
    for name, (f, b, last, full, nf, nb) in results.items():
        extra = f"{nf:>8.0f} {nb:>9.0f}"
        print(f"{name:>20} {f:>9.3f} {b:>9.3f} {last:>10.4f} {full:>11.4f} {extra}")
    if len(results) == 2:
        (_, bg, *_), (_, bt, *_) = results.values()
        print(f"\nbackward: gqlib GQ is {bt / bg:.1f}x faster than torchdiffeq's adjoint "
              "(same model, same batches, same tolerances)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
