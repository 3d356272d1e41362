"""One rank of tests/test_torch_ddp.py: a neural ODE trained under DistributedDataParallel.

Run by the test as ``python tests/ddp_worker.py RANK WORLD_SIZE PORT OUT`` (gloo, CPU, float64).
Each rank takes its slice of a fixed batch, runs ``STEPS`` SGD steps of a model whose forward is
``gqlib.torch.odeint_adjoint`` (rk4, fixed step), once with DDP around the model and once with DDP
around the vector field only, then (DDP around the model) with ``adjoint="gq"`` (fixed node count)
and ``adjoint="collocation"``, and saves for each run the gradient after each backward pass, the parameters after the last step and how often each parameter's
post-accumulate-grad hook fired (the autograd path DDP's reducer relies on) to ``OUT``.
The test module imports the model and data from here for its one-process reference.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from gqlib.torch import odeint, odeint_adjoint

F64 = torch.float64
BATCH, DIM, HIDDEN, STEPS, LR = 8, 2, 16, 3, 0.5
# run name: (what DDP wraps, adjoint strategy (None: odeint_adjoint's default), adjoint_options)
RUNS = {"model": ("model", None, None), "field": ("field", None, None),
        "gq": ("model", "gq", dict(step_size=0.1, nodes=3)),
        "collocation": ("model", "collocation", None)}
T = torch.linspace(0.0, 1.0, 11, dtype=F64)  # an output at every step: one GQ panel per step
SOLVER = dict(method="rk4", options=dict(step_size=0.1))


class Field(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(DIM, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, DIM))

    def forward(self, t, y):
        return self.net(y)


class NeuralODE(nn.Module):
    def __init__(self, adjoint=None, adjoint_options=None):
        super().__init__()
        self.field = Field()
        self.adjoint, self.adjoint_options = adjoint, adjoint_options

    def forward(self, y0):
        if self.adjoint is None:
            return odeint_adjoint(self.field, y0, T, **SOLVER)
        return odeint(self.field, y0, T, adjoint=self.adjoint,
                      adjoint_options=self.adjoint_options, **SOLVER)


def make_model(run: str = "model") -> NeuralODE:
    torch.manual_seed(0)
    return NeuralODE(*RUNS[run][1:]).to(F64)


def make_data(world_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    n = BATCH * world_size
    return torch.randn(n, DIM, generator=g, dtype=F64), torch.randn(n, DIM, generator=g, dtype=F64)


def loss_fn(ys: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((ys[-1] - target) ** 2).mean() + (ys[len(T) // 2] ** 2).mean()


def train(model: nn.Module, params, y0, target) -> tuple[list, list]:
    """STEPS SGD steps; the gradients after each backward pass and the final parameters."""
    opt = torch.optim.SGD(params, lr=LR)
    grads = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss_fn(model(y0), target).backward()
        grads.append([p.grad.detach().clone() for p in params])
        opt.step()
    return grads, [p.detach().clone() for p in params]


def main(rank: int, world_size: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world_size)
    try:
        y0, target = make_data(world_size)
        part = slice(rank * BATCH, (rank + 1) * BATCH)
        results = {}
        for run, (wrap, _, _) in RUNS.items():
            model = make_model(run)
            params = list(model.parameters())
            hooks = [0] * len(params)
            for i, p in enumerate(params):
                p.register_post_accumulate_grad_hook(
                    lambda _p, i=i, h=hooks: h.__setitem__(i, h[i] + 1))
            if wrap == "model":  # the usual pattern: DDP around the module that calls odeint
                model = DDP(model)
            else:  # DDP around the vector field handed to odeint_adjoint
                model.field = DDP(model.field)
            grads, final = train(model, params, y0[part], target[part])
            results[run] = dict(grads=grads, params=final, hooks=hooks)
        torch.save(results, out)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
