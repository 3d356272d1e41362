"""Backward cost of the discrete checkpoint adjoint against torchdiffeq's direct backprop, in
thread CPU time (less sensitive to other load on the machine than wall time): the fused step
pullback (one autograd pass per recomputed step) and stage by stage (one VJP per stage).

    python validation/bench_checkpoint_cpu.py 1024 64
    python validation/bench_checkpoint_cpu.py 1024 4

MLP 16 -> W -> W -> 16 (tanh), t = linspace(0, 1, 11), dopri5 rtol 1e-6 atol 1e-8, float64, one
thread; medians of 3 after a warm-up; prints seconds and the ratio to torchdiffeq direct.
"""

import statistics
import sys
import time

import torch
import torchdiffeq

import gqlib.torch as gt
from gqlib.adjoint._field import CountedField


class MLP(torch.nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(16, width), torch.nn.Tanh(),
                                       torch.nn.Linear(width, width), torch.nn.Tanh(),
                                       torch.nn.Linear(width, 16)).double()

    def forward(self, t, y):
        return self.net(y)


def backward_cpu_seconds(model, z0, t, kind) -> float:
    for p in model.parameters():
        p.grad = None
    if kind == "tdq":
        ys = torchdiffeq.odeint(model, z0, t, rtol=1e-6, atol=1e-8)
    else:
        ys = gt.odeint(model, z0, t, rtol=1e-6, atol=1e-8, adjoint=kind)
    start = time.thread_time()
    (ys[1:] ** 2).mean().backward()
    return time.thread_time() - start


def main(width: int, batch: int, repeats: int = 3) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = MLP(width)
    z0 = torch.randn(batch, 16, dtype=torch.float64)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    fused = CountedField.has_pullback
    times: dict[str, list[float]] = {}
    for rep in range(repeats + 1):  # the first round is the warm-up
        for label, kind, pullback in (("torchdiffeq direct", "tdq", fused),
                                      ("gqlib direct", None, fused),
                                      ("checkpoint (fused step pullback)", "checkpoint", fused),
                                      ("checkpoint (stage by stage)", "checkpoint",
                                       property(lambda self: False))):
            CountedField.has_pullback = pullback
            try:
                seconds = backward_cpu_seconds(model, z0, t, kind)
            finally:
                CountedField.has_pullback = fused
            if rep:
                times.setdefault(label, []).append(seconds)
    base = statistics.median(times["torchdiffeq direct"])
    for label, values in times.items():
        med = statistics.median(values)
        print(f"W = {width}, batch {batch}: {label:34s} {med:.3f} s  {med / base:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1024,
         int(sys.argv[2]) if len(sys.argv) > 2 else 64)
