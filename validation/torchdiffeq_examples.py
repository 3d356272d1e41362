"""torchdiffeq's event examples run on both libraries with only the import changed (issue 13).

torchdiffeq's ``examples/bouncing_ball.py`` and ``examples/learn_physics.py`` are not part of
gqlib; point ``--examples`` at a checkout's ``examples/`` folder::

    git clone https://github.com/rtqichen/torchdiffeq /tmp/torchdiffeq
    python validation/torchdiffeq_examples.py --examples /tmp/torchdiffeq/examples

Each example is loaded twice from its own source: as written (torchdiffeq) and with
``from torchdiffeq import`` replaced by ``from gqlib.torch import`` (nothing else changes). The
timed runs alternate between the libraries, one thread, so that both see the same machine
load. Reported:

- ``bouncing_ball``: the 10 bounce times of ``BouncingBallExample.get_collision_times(10)``
  and the gradient of the last one with respect to every parameter, with
  ``BouncingBallExample(adjoint=False)`` and ``(adjoint=True)`` (``odeint_adjoint`` inside
  ``odeint_event``; the script's own ``--adjoint`` flag is parsed but never used), and the
  median time of the forward + backward;
- ``learn_physics``: the training loop of the script's ``__main__`` (same data, seed, Adam and
  learning-rate schedule) for ``NeuralPhysics`` (events) and ``NeuralODE`` (``--no_events``):
  the loss per iteration and the median time per iteration (the first iteration left out);
  once the two trainings part (chaotic training amplifies tolerance-level differences), their
  models differ and so do their costs, so the forward + backward at the initial parameters is
  timed too (median of ``--repeats``, the libraries taking turns), with the dynamics' call
  count.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import types
from pathlib import Path

import torch

LIBS = ("torchdiffeq", "gqlib")


def load(examples: Path, lib: str) -> dict[str, types.ModuleType]:
    """Both examples as modules importing from ``lib`` (learn_physics gets this lib's ball)."""
    mods = {}
    for name in ("bouncing_ball", "learn_physics"):
        src = (examples / f"{name}.py").read_text()
        if lib == "gqlib":
            src = src.replace("from torchdiffeq import", "from gqlib.torch import")
        mod = types.ModuleType(f"{name}_{lib}")
        mod.__file__ = str(examples / f"{name}.py")
        sys.modules["bouncing_ball"] = mods.get("bouncing_ball", mod)
        exec(compile(src, mod.__file__, "exec"), mod.__dict__)
        mods[name] = mod
    sys.modules.pop("bouncing_ball", None)
    return mods


def ball(mod, adjoint: bool, nbounces: int):
    system = mod.BouncingBallExample(adjoint=adjoint)
    start = time.perf_counter()
    times = system.get_collision_times(nbounces)
    times[-1].backward()
    seconds = time.perf_counter() - start
    grads = {n: p.grad.item() for n, p in system.named_parameters() if p.grad is not None}
    return [t.item() for t in times], grads, seconds


def _learn_physics_setup(mods, no_events: bool):
    """learn_physics' data (the first 300 observations of 4 bounces) and its model, seeded."""
    lp = mods["learn_physics"]
    torch.manual_seed(0)
    with torch.no_grad():
        obs_times, gt, _, _ = mods["bouncing_ball"].BouncingBallExample().simulate(nbounces=4)
    model = lp.NeuralODE() if no_events else lp.NeuralPhysics()
    return lp, obs_times[:300], gt[:300], model


def training(mods, no_events: bool, iterations: int, lr: float = 0.1):
    """learn_physics' ``__main__`` loop; the losses, the seconds of each iteration and the
    first iteration's gradient (all parameters, flat)."""
    lp, obs_times, gt, model = _learn_physics_setup(mods, no_events)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses, seconds, grad0 = [], [], None
    for itr in range(iterations):
        start = time.perf_counter()
        opt.zero_grad()
        trajectory, _ = model.simulate(obs_times)
        loss = ((trajectory - gt) / (gt + 1e-3)).abs().mean()
        loss.backward()
        if grad0 is None:
            grad0 = torch.cat([p.grad.reshape(-1) for p in model.parameters()
                               if p.grad is not None])
        lp.set_learning_rate(opt, lp.learning_rate_schedule(itr, 0, lr, 1.0, iterations))
        opt.step()
        seconds.append(time.perf_counter() - start)
        losses.append(loss.item())
    return losses, seconds, grad0


def at_start(mods, no_events: bool):
    """One forward + backward of the first iteration (the initial parameters), as a function
    returning its seconds and the dynamics' calls (NFE, forward and backward)."""
    _, obs_times, gt, model = _learn_physics_setup(mods, no_events)
    field = model.odefunc if no_events else model.dynamics_fn
    calls = [0]
    field.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))

    def one():
        calls[0] = 0
        start = time.perf_counter()
        trajectory, _ = model.simulate(obs_times)
        ((trajectory - gt) / (gt + 1e-3)).abs().mean().backward()
        seconds = time.perf_counter() - start
        model.zero_grad()
        return seconds, calls[0]
    return one


def alternating(fns: dict, repeats: int) -> dict:
    """Each function ``repeats + 1`` times, the libraries taking turns (the first run of each
    is a warm-up); the runs after it."""
    runs = {lib: [] for lib in fns}
    for _ in range(repeats + 1):
        for lib, fn in fns.items():
            runs[lib].append(fn())
    return {lib: r[1:] for lib, r in runs.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=Path, required=True,
                    help="torchdiffeq's examples/ folder (bouncing_ball.py, learn_physics.py)")
    ap.add_argument("--nbounces", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=20)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    mods = {lib: load(a.examples, lib) for lib in LIBS}

    print(f"## bouncing_ball: {a.nbounces} bounces, dopri5 rtol = atol = 1e-8 (the example's)\n")
    print("| mode | max abs diff of bounce times | max abs diff of d t_last / d params | "
          "ms torchdiffeq | ms gqlib |")
    print("|---|---|---|---|---|")
    for adjoint in (False, True):
        runs = alternating({lib: (lambda lib=lib, adj=adjoint: ball(mods[lib]["bouncing_ball"], adj,
                                                         a.nbounces)) for lib in LIBS}, a.repeats)
        (t_td, g_td, _), (t_gq, g_gq, _) = runs["torchdiffeq"][0], runs["gqlib"][0]
        dt = max(abs(x - y) for x, y in zip(t_td, t_gq, strict=True))
        dg = max(abs(g_td.get(k, 0.0) - g_gq.get(k, 0.0)) for k in g_td.keys() | g_gq.keys())
        ms = {lib: 1e3 * statistics.median(r[2] for r in runs[lib]) for lib in LIBS}
        print(f"| {'odeint_adjoint' if adjoint else 'odeint'} | {dt:.1e} | {dg:.1e} | "
              f"{ms['torchdiffeq']:.0f} | {ms['gqlib']:.0f} |")
        print(f"\n(last bounce at t = {t_gq[-1]:.10f}; gradients (gqlib): "
              + ", ".join(f"{k} {v:.6g}" for k, v in sorted(g_gq.items())) + ")\n")

    print(f"## learn_physics: {a.iterations} iterations of the script's training loop\n")
    print("| model | loss[0] | rel diff loss[0] | rel diff grad[0] | first iteration with "
          "losses 1e-3 apart | s/iter torchdiffeq | s/iter gqlib | s (NFE) at start "
          "torchdiffeq | s (NFE) at start gqlib |")
    print("|---|---|---|---|---|---|---|---|---|")
    for no_events in (False, True):
        start = alternating({lib: at_start(mods[lib], no_events) for lib in LIBS}, a.repeats)
        out = {lib: training(mods[lib], no_events, a.iterations) for lib in LIBS}
        (l_td, s_td, g_td), (l_gq, s_gq, g_gq) = out["torchdiffeq"], out["gqlib"]
        apart = [i for i, (x, y) in enumerate(zip(l_td, l_gq, strict=True))
                 if abs(x - y) > 1e-3 * abs(x)]
        dg = ((g_td - g_gq).abs().max() / g_td.abs().max()).item()
        print(f"| {'NeuralODE (--no_events)' if no_events else 'NeuralPhysics (events)'} | "
              f"{l_td[0]:.10g} | {abs(l_td[0] - l_gq[0]) / l_td[0]:.1e} | {dg:.1e} | "
              f"{apart[0] if apart else 'none'} | "
              f"{statistics.median(s_td[1:]):.3f} | {statistics.median(s_gq[1:]):.3f} | "
              + " | ".join(f"{statistics.median(r[0] for r in start[lib]):.3f} "
                           f"({start[lib][0][1]})" for lib in LIBS) + " |")


if __name__ == "__main__":
    main()
