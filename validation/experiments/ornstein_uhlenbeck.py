"""The paper's Ornstein-Uhlenbeck task: a neural SDE trained through the Wong-Zakai ODE with the GQ
adjoint, then simulated with ``sdeint``; side by side with torchsde (Norcliffe & Deisenroth 2023).

Task. Data: the Stratonovich SDE ``dX = (mu t - theta X) dt + (sigma + phi t) o dW`` with
``mu = 0.2, theta = 0.1, sigma = 0.6, phi = 0.15`` on ``t in [0, 10]`` (101 output times), 40 starting
points ``x0 ~ U(-3, 3)`` and 45 paths from each (1800 paths), simulated with ``gqlib.sde.sdeint``
(reversible Heun, dt = 0.001). Model: drift and diffusion ``2 -> 50 -> 50 -> 1`` MLPs with softplus
activations on the input ``[x, t]``. Metric (the paper's): at each time ``t_1..t_100`` and for each
starting point fit a Gaussian (mean, variance over the 45 paths) to the data and to the model's
paths; average ``KL(data || model)`` over times and starting points. Training minimises it.

Methods, all with Adam (lr 1e-2), the same initial weights (the diffusion's output bias set to 1,
so that the first model is not almost deterministic), float32, one thread, 50 iterations:

- gqlib, Wong-Zakai ODE + GQ adjoint: ``KarhunenLoeveNoise`` with 10 cosines on [0, 10], one xi
  vector per path, drawn afresh each iteration; ``gqlib.torch.odeint(wong_zakai(drift, diffusion,
  noise), ..., adjoint=...)`` with dopri5 at rtol = atol = 1e-3 (the adapter finds the modules'
  parameters). Three backward settings: ``adjoint="collocation"`` with
  ``adjoint_options={"nodes": 1}`` (y from the forward dense output; per output interval one
  forward pass of the field at the Gauss node and two backward passes through it: 2nd-order
  collocation of the adjoint and the 1-node Gauss quadrature of the parameter integral), trained;
  ``adjoint="gq"`` with a cheap backward (``adjoint_method="euler"``,
  ``adjoint_options={"nodes": 1}``: one Euler step of [y, a] and one Gauss node per output
  interval), trained; and ``adjoint="gq"`` at its defaults (dopri5 backward, adaptive
  quadrature), timed only (its gradients agree with the cheap one's to the same 1e-3 of direct
  backprop).
- gqlib, Wong-Zakai ODE, direct backpropagation (``adjoint=None``).
- torchdiffeq's adjoint on the same Wong-Zakai ODE (timed only).
- torchsde reversible Heun, dt = 0.01, direct (``sdeint``) and adjoint (``sdeint_adjoint`` with
  ``adjoint_reversible_heun``), ``BrownianInterval`` noise.

After training every model is simulated with ``gqlib.sde.sdeint`` (Stratonovich, reversible Heun,
dt = 0.01) on torch tensors from fresh Brownian paths, and the metric is taken against the data
(mean over 3 samples). Also timed: the cost against the number of output times (101, 11, 2).

The parametric version fits ``drift = mu t - theta x``, ``diffusion = sigma + phi t`` (4 scalars,
from (0, 0, 1, 0)) through the Wong-Zakai ODE with the cheap GQ backward on 5 independent data
sets, 100 Adam iterations (lr 0.06, cosine decay), 450 model paths per starting point (fewer paths
bias the fitted variance upwards: the metric is convex in the model's sample variance), with 10
cosines (the paper's noise) and with 40.

Run (about 19 minutes on 2 shared cores; results in ``docs/ornstein_uhlenbeck.md``)::

    .venv/bin/python validation/experiments/ornstein_uhlenbeck.py                   # full run
    .venv/bin/python validation/experiments/ornstein_uhlenbeck.py --param-terms ""  # no param. fit
    .venv/bin/python validation/experiments/ornstein_uhlenbeck.py --spread 3        # run-to-run spread
    .venv/bin/python validation/experiments/ornstein_uhlenbeck.py --iterations 2 --quick   # smoke

The shared runner (``python -m validation.experiments --only ornstein_uhlenbeck``) uses
:func:`run_one` below instead: the width sweep of the issue-15 protocol (the same data, model,
metric and Wong-Zakai noise; every method of :mod:`validation.experiments.common` on the WZ ODE,
plus torchsde's reversible Heun direct and adjoint), fewer starting points in quick mode.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import sys
import time

import numpy as np

MU, THETA, SIGMA, PHI = 0.2, 0.1, 0.6, 0.15
T0, T1, N_TIMES = 0.0, 10.0, 101
N_X0, N_PER = 40, 45
N_KL = 10  # cosines in the Karhunen-Loeve noise
COLLOCATION = "gqlib WZ + GQ collocation (1 node)"
COLLOCATION_1 = "gqlib WZ + GQ collocation (1 node, 0 sweeps)"
RTOL = ATOL = 1e-3
SDE_DT = 0.01
DATA_DT = 0.001
LR = 1e-2


# ---------------------------------------------------------------------------------------------
# data and metric

def true_drift(t, x):
    return MU * t - THETA * x


def true_diffusion(t, x):
    return (SIGMA + PHI * t) + 0.0 * x


def starting_points(seed: int = 0, n_x0: int = N_X0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-3.0, 3.0, n_x0)


def simulate_truth(x0: np.ndarray, seed: int, n_per: int = N_PER, dt: float = DATA_DT) -> np.ndarray:
    """Paths of the true OU SDE, shape (N_TIMES, len(x0), n_per), by gqlib's reversible Heun."""
    from gqlib.sde import BrownianPath, sdeint

    y0 = np.repeat(x0, n_per)[:, None]
    path = BrownianPath(T0, T1, shape=y0.shape, seed=seed)
    ys = sdeint(true_drift, true_diffusion, y0, np.linspace(T0, T1, N_TIMES), path,
                method="reversible_heun", dt=dt)
    return ys.reshape(N_TIMES, len(x0), n_per)


def gaussian_stats(paths):
    """Per-time, per-x0 mean and (unbiased) variance over the paths: two (N_TIMES, n_x0) arrays."""
    if isinstance(paths, np.ndarray):
        return paths.mean(-1), paths.var(-1, ddof=1)
    return paths.mean(-1), paths.var(-1, unbiased=True)


def kl_gauss(m_d, v_d, m_m, v_m):
    """KL(N(m_d, v_d) || N(m_m, v_m)), elementwise (NumPy or torch)."""
    lib = np if isinstance(m_d, np.ndarray) else __import__("torch")
    return 0.5 * (lib.log(v_m / v_d) + (v_d + (m_d - m_m) ** 2) / v_m - 1.0)


def kl_metric(data_stats, model_paths):
    """The paper's metric: KL(data || model) of per-time Gaussians, mean over t_1..t_100 and x0."""
    m_d, v_d = data_stats
    m_m, v_m = gaussian_stats(model_paths)
    return kl_gauss(m_d[1:], v_d[1:], m_m[1:], v_m[1:]).mean()


# ---------------------------------------------------------------------------------------------
# models

def build_models():
    import torch
    from torch import nn

    class MLP(nn.Module):
        """``(t, x) -> net([x, t])``: 2 -> 50 -> 50 -> 1, softplus."""

        def __init__(self, width: int = 50, bias: float = 0.0):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(2, width), nn.Softplus(), nn.Linear(width, width),
                                     nn.Softplus(), nn.Linear(width, 1))
            with torch.no_grad():
                self.net[-1].bias.fill_(bias)
            self.calls = 0

        def forward(self, t, x):
            self.calls += 1
            t = torch.as_tensor(t, dtype=x.dtype, device=x.device).detach()
            return self.net(torch.cat([x, t.expand(x.shape)], -1))

    class Drift(nn.Module):
        """``mu t - theta x``."""

        def __init__(self, mu=0.0, theta=0.5):
            super().__init__()
            self.mu = nn.Parameter(torch.tensor(mu))
            self.theta = nn.Parameter(torch.tensor(theta))

        def forward(self, t, x):
            return self.mu * t - self.theta * x

    class Diffusion(nn.Module):
        """``sigma + phi t``, one value per path."""

        def __init__(self, sigma=1.0, phi=0.0):
            super().__init__()
            self.sigma = nn.Parameter(torch.tensor(sigma))
            self.phi = nn.Parameter(torch.tensor(phi))

        def forward(self, t, x):
            return (self.sigma + self.phi * t).expand(x.shape)

    return MLP, Drift, Diffusion


# ---------------------------------------------------------------------------------------------
# one training iteration per method: (drift, diffusion, it) -> (paths (N_TIMES, P, 1), info)

def make_methods(x0_t, ts, seed_offset=0, n_kl=N_KL):
    import torch

    import gqlib.torch as gt
    from gqlib.sde import KarhunenLoeveNoise, wong_zakai

    P = x0_t.shape[0]

    def kl_noise(it):
        return KarhunenLoeveNoise.sample(T0, T1, n_kl, (P, 1), seed=10_000 + seed_offset + it)

    def gq(adjoint_method=None, adjoint_options=None, adjoint="gq"):
        kw = {} if adjoint_options is None else dict(adjoint_options=adjoint_options)
        if adjoint_method is not None:
            kw["adjoint_method"] = adjoint_method

        def run(drift, diffusion, it):
            field = wong_zakai(drift, diffusion, kl_noise(it))
            ys, stats = gt.odeint(field, x0_t, ts, rtol=RTOL, atol=ATOL, method="dopri5",
                                  adjoint=adjoint, return_stats=True, **kw)
            if adjoint == "collocation":  # forward passes of the field, each with 2 backward
                return ys, lambda: (stats.forward["nfe"], stats.backward["nfe_f"])
            return ys, lambda: (stats.forward["nfe"],
                                stats.backward["nfe_f"] + stats.backward["nfe_vjp_params"])
        return run

    def wz_direct(drift, diffusion, it):
        field = wong_zakai(drift, diffusion, kl_noise(it))
        ys, stats = gt.odeint(field, x0_t, ts, rtol=RTOL, atol=ATOL, method="dopri5",
                              return_stats=True)
        n = stats.forward["nfe"]
        return ys, lambda: (n, n)

    def tdq_adjoint(drift, diffusion, it):
        import torchdiffeq

        field = wong_zakai(drift, diffusion, kl_noise(it))
        params = tuple(drift.parameters()) + tuple(diffusion.parameters())
        ys = torchdiffeq.odeint_adjoint(lambda t, y: field(t.detach(), y), x0_t, ts, rtol=RTOL,
                                        atol=ATOL, method="dopri5", adjoint_params=params)
        n_fwd = field.nfe
        return ys, lambda: (n_fwd, field.nfe - n_fwd)

    def torchsde_run(adjoint):
        import torchsde

        class SDE(torch.nn.Module):
            noise_type, sde_type = "diagonal", "stratonovich"

            def __init__(self, drift, diffusion):
                super().__init__()
                self.drift, self.diffusion = drift, diffusion

            def f(self, t, y):
                return self.drift(t, y)

            def g(self, t, y):
                return self.diffusion(t, y)

        def run(drift, diffusion, it):
            sde = SDE(drift, diffusion)
            bm = torchsde.BrownianInterval(T0, T1, size=(P, 1), dtype=x0_t.dtype,
                                           levy_area_approximation="none", entropy=20_000 + seed_offset + it)
            c0 = drift.calls
            if adjoint:
                ys = torchsde.sdeint_adjoint(sde, x0_t, ts, bm=bm, method="reversible_heun",
                                             adjoint_method="adjoint_reversible_heun", dt=SDE_DT)
            else:
                ys = torchsde.sdeint(sde, x0_t, ts, bm=bm, method="reversible_heun", dt=SDE_DT)
            c1 = drift.calls
            # direct: autograd replays the forward graph
            return ys, lambda: (c1 - c0, (drift.calls - c1) if adjoint else c1 - c0)
        return run

    cheap = gq("euler", {"nodes": 1})
    methods = {
        COLLOCATION: gq(adjoint="collocation", adjoint_options={"nodes": 1}),
        COLLOCATION_1: gq(adjoint="collocation", adjoint_options={"nodes": 1, "sweeps": 0}),
        "gqlib WZ + GQ (dopri5 backward)": gq(),
        "gqlib WZ + GQ (cheap backward)": cheap,
        "gqlib WZ, direct backprop": wz_direct,
        "torchdiffeq adjoint, same WZ ODE": tdq_adjoint,
        "torchsde rev. Heun, direct": torchsde_run(False),
        "torchsde rev. Heun, adjoint": torchsde_run(True),
    }
    return methods


# ---------------------------------------------------------------------------------------------
# training and evaluation

def train(run, drift, diffusion, data_stats, iterations, lr=LR, log=None):
    import torch

    params = list(drift.parameters()) + list(diffusion.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    times, losses, nfes = [], [], []
    for it in range(iterations):
        opt.zero_grad()
        t0 = time.perf_counter()
        ys, nfe = run(drift, diffusion, it)
        loss = kl_metric(data_stats, ys.reshape(ys.shape[0], -1, N_PER))
        loss.backward()
        times.append(time.perf_counter() - t0)
        nfes.append(nfe())
        opt.step()
        losses.append(loss.item())
        if log is not None:
            log(it, losses[-1], times[-1])
    return dict(times=times, losses=losses, nfe=nfes)


def simulate_model(drift, diffusion, x0, seed, dtype=None):
    """Transfer: the learned drift/diffusion in gqlib's ``sdeint`` (Stratonovich, reversible Heun,
    dt 0.01) on torch tensors; paths (N_TIMES, n_x0, N_PER) as NumPy."""
    import torch

    from gqlib.sde import BrownianPath, sdeint

    dtype = dtype or torch.float32
    y0 = torch.tensor(np.repeat(x0, N_PER)[:, None], dtype=dtype)
    path = BrownianPath(T0, T1, shape=tuple(y0.shape), seed=seed)
    with torch.no_grad():
        ys = sdeint(drift, diffusion, y0, torch.linspace(T0, T1, N_TIMES, dtype=torch.float64),
                    path, method="reversible_heun", dt=SDE_DT)
    return ys.double().numpy().reshape(N_TIMES, len(x0), N_PER)


def evaluate(drift, diffusion, x0, data_stats_np, seeds):
    kls = [float(kl_metric(data_stats_np, simulate_model(drift, diffusion, x0, s))) for s in seeds]
    return float(np.mean(kls)), float(np.std(kls))


def gradient_check(methods, names, MLP, x0_t, data_stats, seed=0):
    """Relative difference of each method's first gradient from direct backprop through the same
    noise (WZ methods) or the same Brownian sample (torchsde)."""
    import torch

    torch.manual_seed(seed)
    base_d, base_g = MLP(), MLP(bias=1.0)
    grads = {}
    for name in names:
        d, g = copy.deepcopy(base_d), copy.deepcopy(base_g)
        ys, _ = methods[name](d, g, 0)
        kl_metric(data_stats, ys.reshape(ys.shape[0], -1, N_PER)).backward()
        grads[name] = torch.cat([p.grad.flatten() for p in [*d.parameters(), *g.parameters()]])
    return grads


def timing_vs_outputs(init, x0_t, data_stats, counts, names, iterations, n_kl=N_KL):
    """Median seconds per iteration (forward + backward at the initial weights), NFE and the
    gradient's relative difference from direct backprop (same noise), with ``n`` evenly spaced
    output times on [0, 10] and the loss on those times only: an adjoint stops at every output
    time, direct backprop does not."""
    import torch

    out = {}
    for n in counts:
        step = (N_TIMES - 1) // (n - 1)
        ts = torch.linspace(T0, T1, N_TIMES, dtype=torch.float32)[::step]
        stats = tuple(s[::step] for s in data_stats)
        methods = make_methods(x0_t, ts, n_kl=n_kl)
        grads = {}
        for name in names:
            d, g = copy.deepcopy(init[0]), copy.deepcopy(init[1])
            params = [*d.parameters(), *g.parameters()]
            times = []
            for _ in range(iterations):
                for p in params:
                    p.grad = None
                t0 = time.perf_counter()
                ys, nfe = methods[name](d, g, 0)
                kl_metric(stats, ys.reshape(ys.shape[0], -1, N_PER)).backward()
                times.append(time.perf_counter() - t0)
            grads[name] = torch.cat([p.grad.flatten() for p in params])
            out[(n, name)] = [float(np.median(times)), nfe()]
        ref = grads[names[-1]]
        for name in names:
            out[(n, name)].append(float((grads[name] - ref).norm() / ref.norm()))
    return out


# ---------------------------------------------------------------------------------------------
# parametric fit

def fit_parametric(data_seed, x0, iterations, lr=0.06, cheap_backward=True, model_per_x0=450,
                   init=(0.0, 0.0, 1.0, 0.0), n_terms=N_KL):
    import torch

    import gqlib.torch as gt
    from gqlib.sde import KarhunenLoeveNoise, wong_zakai

    _, Drift, Diffusion = build_models()
    paths = simulate_truth(x0, seed=data_seed)
    stats = tuple(torch.tensor(s, dtype=torch.float32) for s in gaussian_stats(paths))
    x0_t = torch.tensor(np.repeat(x0, model_per_x0)[:, None], dtype=torch.float32)
    ts = torch.linspace(T0, T1, N_TIMES, dtype=torch.float32)
    drift, diffusion = Drift(*init[:2]), Diffusion(*init[2:])
    params = [*drift.parameters(), *diffusion.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)
    kw = dict(adjoint_method="euler", adjoint_options={"nodes": 1}) if cheap_backward else {}
    history = []
    for it in range(iterations):
        noise = KarhunenLoeveNoise.sample(T0, T1, n_terms, tuple(x0_t.shape),
                                          seed=(data_seed, 30_000 + it))
        opt.zero_grad()
        ys = gt.odeint(wong_zakai(drift, diffusion, noise), x0_t, ts, rtol=RTOL, atol=ATOL,
                       adjoint="gq", **kw)
        loss = kl_metric(stats, ys.reshape(N_TIMES, len(x0), model_per_x0))
        loss.backward()
        opt.step()
        sched.step()
        history.append([float(p.detach()) for p in params])
    return np.array(history), gaussian_stats(paths)


def parametric_modules(values):
    """``Drift(mu, theta), Diffusion(sigma, phi)`` modules (float32) from four numbers."""
    _, Drift, Diffusion = build_models()
    mu, theta, sigma, phi = (float(v) for v in values)
    return Drift(mu, theta), Diffusion(sigma, phi)


# ---------------------------------------------------------------------------------------------

def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, nproc = {os.cpu_count()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iterations", type=int, default=50, help="training iterations per method")
    ap.add_argument("--time-only", type=int, default=3,
                    help="iterations timed (not trained) for the methods in --timed")
    ap.add_argument("--timed", default="gqlib WZ + GQ (dopri5 backward);torchdiffeq adjoint, "
                    "same WZ ODE", help="';'-separated methods only timed, not trained")
    ap.add_argument("--eval-seeds", type=int, default=3, help="sdeint samples per evaluation")
    ap.add_argument("--param-seeds", type=int, default=5, help="data sets for the parametric fit")
    ap.add_argument("--param-iterations", type=int, default=100)
    ap.add_argument("--param-terms", default="10,40",
                    help="comma-separated numbers of cosines for the parametric fit")
    ap.add_argument("--spread", type=int, default=0,
                    help="instead of the benchmark: train the --methods this many more times with "
                    "other noise seeds and report the KL after transfer of each run")
    ap.add_argument("--methods", default=COLLOCATION, help="';'-separated methods for --spread")
    ap.add_argument("--cosines", type=int, default=N_KL,
                    help="Karhunen-Loeve terms of the Wong-Zakai noise in training")
    ap.add_argument("--only", default="",
                    help="';'-separated methods for the benchmark (default: all; the WZ direct "
                    "and torchsde adjoint rows are always run, the ratios need them)")
    ap.add_argument("--outputs", default="101,11,2",
                    help="comma-separated output-time counts for the cost table ('' for none)")
    ap.add_argument("--check-torchsde-adjoint", type=int, default=0, metavar="N",
                    help="instead of the benchmark: train N iterations with torchsde's adjoint, "
                    "then compare its gradient with torchsde direct's (float32 and float64) and "
                    "with a central difference along their difference")
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny budgets, no plots")
    ap.add_argument("--plots", default="docs", help="folder for the plots ('' for none)")
    ap.add_argument("--json", default="", help="write the raw results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.eval_seeds, args.param_seeds, args.param_iterations, args.plots = 1, 2, 3, ""

    import torch

    torch.set_num_threads(1)
    MLP, _, _ = build_models()
    print(f"machine: {machine()}; torch {torch.__version__}, 1 thread, float32")

    x0 = starting_points(0)
    t_start = time.perf_counter()
    data = simulate_truth(x0, seed=1)
    data_stats_np = gaussian_stats(data)
    data_stats = tuple(torch.tensor(s, dtype=torch.float32) for s in data_stats_np)
    x0_t = torch.tensor(np.repeat(x0, N_PER)[:, None], dtype=torch.float32)
    ts = torch.linspace(T0, T1, N_TIMES, dtype=torch.float32)
    print(f"data: {data.shape} in {time.perf_counter() - t_start:.1f} s")
    eval_seeds = [100 + k for k in range(args.eval_seeds)]
    truth_kl = np.mean([float(kl_metric(data_stats_np, simulate_truth(x0, seed=s, dt=SDE_DT)))
                        for s in eval_seeds])
    print(f"KL of a fresh sample of the true SDE against the data (the noise floor): {truth_kl:.4f}")

    if args.spread:
        return spread_study(args, MLP, x0, x0_t, ts, data_stats, data_stats_np, eval_seeds)
    if args.check_torchsde_adjoint:
        return torchsde_adjoint_check(args.check_torchsde_adjoint, MLP, x0_t, ts, data_stats_np)
    methods = make_methods(x0_t, ts, n_kl=args.cosines)
    if args.only:
        keep = {s.strip() for s in args.only.split(";") if s.strip()}
        keep |= {"gqlib WZ, direct backprop", "torchsde rev. Heun, adjoint"}
        unknown = keep - set(methods)
        if unknown:
            raise SystemExit(f"--only: unknown methods {sorted(unknown)}; known: {list(methods)}")
        methods = {k: v for k, v in methods.items() if k in keep}
    print(f"Wong-Zakai noise: {args.cosines} cosines")
    timed_only = {s.strip() for s in args.timed.split(";") if s.strip()}

    # gradient agreement at the initial weights
    grads = gradient_check(methods, list(methods), MLP, x0_t, data_stats)
    if "torchsde rev. Heun, direct" not in grads:  # the torchsde adjoint's reference
        grads.update(gradient_check(make_methods(x0_t, ts), ["torchsde rev. Heun, direct"], MLP,
                                    x0_t, data_stats))
    ref_wz = grads["gqlib WZ, direct backprop"]
    ref_sde = grads["torchsde rev. Heun, direct"]
    grad_diff = {}
    for name, gr in grads.items():
        ref = ref_sde if name.startswith("torchsde") else ref_wz
        grad_diff[name] = float((gr - ref).norm() / ref.norm())

    torch.manual_seed(0)
    init_d, init_g = MLP(), MLP(bias=1.0)
    init_kl = evaluate(init_d, init_g, x0, data_stats_np, eval_seeds)
    print(f"initial model: KL {init_kl[0]:.3f}")
    results = {}
    for name, run in methods.items():
        d, g = copy.deepcopy(init_d), copy.deepcopy(init_g)
        n = args.time_only if name in timed_only else args.iterations
        t_m = time.perf_counter()

        def log(it, loss, sec, name=name, n=n):
            if it == 0 or (it + 1) % 10 == 0 or it + 1 == n:
                print(f"  {name:34s} it {it + 1:4d}/{n}  loss {loss:8.4f}  {sec:6.3f} s", flush=True)
        res = train(run, d, g, data_stats, n, log=log)
        res["trained"] = name not in timed_only
        if res["trained"]:
            res["kl"] = evaluate(d, g, x0, data_stats_np, eval_seeds)
            res["model"] = (d, g)
        res["total_s"] = time.perf_counter() - t_m
        results[name] = res
        print(f"{name}: median {np.median(res['times']):.3f} s/it, total {res['total_s']:.0f} s"
              + (f", KL after transfer {res['kl'][0]:.4f}" if res["trained"] else ""), flush=True)

    # cost against the number of output times (initial weights, not trained)
    gq_names = [m for m in (COLLOCATION, "gqlib WZ + GQ (cheap backward)",
                            "gqlib WZ + GQ (dopri5 backward)", "gqlib WZ, direct backprop")
                if m in methods]
    counts = tuple(int(v) for v in args.outputs.split(",") if v.strip())
    by_outputs = timing_vs_outputs((init_d, init_g), x0_t, data_stats, counts, gq_names,
                                   args.time_only, args.cosines)

    # parametric: the same data sets for every noise size
    t_p = time.perf_counter()
    fits, param_kl = {}, {}
    for n_terms in [int(v) for v in args.param_terms.split(",") if v.strip()]:
        hists, kls = [], []
        for k in range(args.param_seeds):
            hist, stats_np = fit_parametric(200 + k, x0, args.param_iterations, n_terms=n_terms)
            hists.append(hist)
            kls.append(float(kl_metric(stats_np, simulate_model(*parametric_modules(hist[-1]), x0,
                                                                 300 + k))))
            print(f"parametric, {n_terms} cosines, data set {k}: mu, theta, sigma, phi = "
                  f"{', '.join(f'{v:.4f}' for v in hist[-1])}; KL after transfer {kls[-1]:.4f}",
                  flush=True)
        fits[n_terms], param_kl[n_terms] = np.array(hists), kls
    param_s = time.perf_counter() - t_p
    total_s = time.perf_counter() - t_start

    report(results, grad_diff, init_kl, truth_kl, fits, param_kl, param_s, total_s, args)
    if counts:
        report_outputs(by_outputs, gq_names, args.time_only)
    if args.plots:
        plots(results, fits, x0, data, eval_seeds, args.plots)
    if args.json:
        raw = {k: {kk: vv for kk, vv in v.items() if kk != "model"} for k, v in results.items()}
        with open(args.json, "w") as fh:
            json.dump(dict(results=raw, grad_diff=grad_diff, init_kl=init_kl, truth_kl=truth_kl,
                           fits={k: v.tolist() for k, v in fits.items()}, param_kl=param_kl,
                           by_outputs={f"{n}|{m}": v for (n, m), v in by_outputs.items()}),
                      fh)
    return 0


def torchsde_adjoint_check(iterations, MLP, x0_t, ts, data_stats_np) -> int:
    """Is torchsde's adjoint gradient the gradient of its own forward pass? After ``iterations``
    of training with it (float32, as in the benchmark), compare it with direct backprop through
    the same reversible Heun solve (same Brownian noise) in float32 and float64, and with a
    central difference of the loss along the two gradients' difference (float64)."""
    import torch

    torch.manual_seed(0)
    d, g = MLP(), MLP(bias=1.0)
    initial = (copy.deepcopy(d), copy.deepcopy(g), 0)
    stats32 = tuple(torch.tensor(s, dtype=torch.float32) for s in data_stats_np)
    adj, direct = "torchsde rev. Heun, adjoint", "torchsde rev. Heun, direct"
    train(make_methods(x0_t, ts)[adj], d, g, stats32, iterations)

    def setup(dtype):
        methods = make_methods(x0_t.to(dtype), ts.to(dtype))
        stats = tuple(torch.tensor(s, dtype=dtype) for s in data_stats_np)
        return methods, stats

    def grad(name, dtype, at=None):
        d0, g0, it = (d, g, iterations) if at is None else at
        methods, stats = setup(dtype)
        dd, gg = copy.deepcopy(d0).to(dtype), copy.deepcopy(g0).to(dtype)
        ys, _ = methods[name](dd, gg, it)
        kl_metric(stats, ys.reshape(ys.shape[0], -1, N_PER)).backward()
        return torch.cat([p.grad.flatten() for p in [*dd.parameters(), *gg.parameters()]]).double()

    print(f"\n## torchsde's adjoint gradient after {iterations} iterations of training with it\n")
    a, b = grad(adj, torch.float64, initial), grad(direct, torch.float64, initial)
    print(f"initial weights, float64: |g_adjoint - g_direct| / |g_direct| = "
          f"{float((a - b).norm() / b.norm()):.3g}")
    for dtype in (torch.float32, torch.float64):
        a, b = grad(adj, dtype), grad(direct, dtype)
        print(f"{dtype}: |g_adjoint - g_direct| / |g_direct| = {float((a - b).norm() / b.norm()):.3g}")
    v = (a - b) / (a - b).norm()
    methods, stats = setup(torch.float64)

    def loss_at(eps):
        dd, gg = copy.deepcopy(d).double(), copy.deepcopy(g).double()
        off = 0
        with torch.no_grad():
            for p in [*dd.parameters(), *gg.parameters()]:
                p += eps * v[off:off + p.numel()].reshape(p.shape)
                off += p.numel()
            ys, _ = methods[direct](dd, gg, iterations)
            return float(kl_metric(stats, ys.reshape(ys.shape[0], -1, N_PER)))

    eps = 1e-5
    fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
    print(f"float64, derivative along the unit difference v: central difference {fd:.6g}, "
          f"g_adjoint . v = {float(a @ v):.6g}, g_direct . v = {float(b @ v):.6g}")
    return 0


def spread_study(args, MLP, x0, x0_t, ts, data_stats, data_stats_np, eval_seeds) -> int:
    """Run-to-run spread: the same initial weights, other noise seeds (offsets 1000 r)."""
    import torch

    torch.manual_seed(0)
    init_d, init_g = MLP(), MLP(bias=1.0)
    names = [s.strip() for s in args.methods.split(";") if s.strip()]
    rows = {}
    for r in range(1, args.spread + 1):
        methods = make_methods(x0_t, ts, seed_offset=1000 * r, n_kl=args.cosines)
        for name in names:
            d, g = copy.deepcopy(init_d), copy.deepcopy(init_g)
            res = train(methods[name], d, g, data_stats, args.iterations)
            kl = evaluate(d, g, x0, data_stats_np, eval_seeds)[0]
            rows.setdefault(name, []).append((kl, float(np.mean(res["losses"][-5:])),
                                              float(np.median(res["times"]))))
            print(f"  run {r} {name}: KL after transfer {kl:.4f}, training loss (last 5) "
                  f"{rows[name][-1][1]:.4f}, {rows[name][-1][2]:.3f} s/it", flush=True)
    print(f"\n## Run-to-run spread: {args.spread} runs per method, {args.iterations} iterations, "
          "noise seed offsets 1000, 2000, ...\n")
    print("| method | KL after transfer, each run | mean +- std | s / iteration (median) |")
    print("|---|---|---|---|")
    for name, runs in rows.items():
        kls = np.array([k for k, _, _ in runs])
        std = kls.std(ddof=1) if len(kls) > 1 else float("nan")
        print(f"| {name} | {', '.join(f'{k:.4f}' for k in kls)} | {kls.mean():.4f} +- {std:.4f} | "
              f"{np.median([t for _, _, t in runs]):.3f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh)
    return 0


def report(results, grad_diff, init_kl, truth_kl, fits, param_kl, param_s, total_s, args):
    sde_adj = np.median(results["torchsde rev. Heun, adjoint"]["times"])
    wz_direct = np.median(results["gqlib WZ, direct backprop"]["times"])
    print(f"\n## Neural SDE, {args.iterations} training iterations per method "
          f"(methods marked * timed over {args.time_only} iterations, not trained)\n")
    print("| method | s / iteration (median) | vs torchsde adjoint | vs WZ direct | NFE fwd / bwd "
          "| grad. rel. diff. | training loss (last 5) | KL after transfer to sdeint |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        med = np.median(r["times"])
        nf = np.median([n[0] for n in r["nfe"]])
        nb = np.median([n[1] for n in r["nfe"]])
        star = "" if r["trained"] else " *"
        last = f"{np.mean(r['losses'][-5:]):.4f}" if r["trained"] else "-"
        kl = f"{r['kl'][0]:.4f} +- {r['kl'][1]:.4f}" if r["trained"] else "-"
        print(f"| {name}{star} | {med:.3f} | {sde_adj / med:.1f}x | {med / wz_direct:.1f}x | "
              f"{nf:.0f} / {nb:.0f} | {grad_diff[name]:.2e} | {last} | {kl} |")
    print(f"\nuntrained model: KL {init_kl[0]:.4f}; true SDE, fresh noise: KL {truth_kl:.4f} "
          "(the floor set by 45 paths per starting point)")
    if not fits:
        print(f"\ntotal wall time {total_s:.0f} s (no parametric fit: --param-terms '')")
        return
    truth = np.array([MU, THETA, SIGMA, PHI])
    some = next(iter(fits.values()))
    n_sets = some.shape[0]
    print(f"\n## Parametric fit: {n_sets} data sets, {some.shape[1]} iterations each, "
          f"{len(fits)} noise sizes ({param_s:.0f} s)\n")
    head = " | ".join(f"{n} cosines: mean +- std (z)" for n in fits)
    print(f"| parameter | truth | {head} |")
    print("|---|---|" + "---|" * len(fits))
    for i, nm in enumerate(("mu", "theta", "sigma", "phi")):
        cells = []
        for hist in fits.values():
            final = hist[:, -1, i]
            mean = final.mean()
            std = final.std(ddof=1) if n_sets > 1 else float("nan")
            z = (mean - truth[i]) / (std / math.sqrt(n_sets))
            cells.append(f"{mean:.4f} +- {std:.4f} ({z:+.1f})")
        print(f"| {nm} | {truth[i]} | {' | '.join(cells)} |")
    cells = [f"{np.mean(k):.4f} +- {np.std(k):.4f}" for k in param_kl.values()]
    print(f"| KL after transfer | {truth_kl:.4f} (true SDE) | {' | '.join(cells)} |")
    print("\nstd: spread of single fits over the data sets; z = (mean - truth) / (std / sqrt(n)).")
    print(f"\ntotal wall time {total_s:.0f} s")


def report_outputs(by_outputs, names, iterations):
    counts = sorted({n for n, _ in by_outputs}, reverse=True)
    print(f"\n## Seconds per iteration (NFE fwd / bwd; gradient's relative difference from "
          f"direct backprop) against the number of output times (initial weights, median of "
          f"{iterations})\n")
    print("| output times | " + " | ".join(names) + f" | {names[0]} / direct |")
    print("|---|" + "---|" * (len(names) + 1))
    for n in counts:
        cells = [f"{by_outputs[n, m][0]:.3f} ({by_outputs[n, m][1][0]} / {by_outputs[n, m][1][1]}; "
                 f"{by_outputs[n, m][2]:.0e})" for m in names]
        ratio = by_outputs[n, names[0]][0] / by_outputs[n, names[-1]][0]
        print(f"| {n} | " + " | ".join(cells) + f" | {ratio:.1f}x |")


def plots(results, fits, x0, data, eval_seeds, folder):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trained = {k: v for k, v in results.items() if v["trained"]}
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    for name, r in trained.items():
        ax[0].plot(np.arange(1, len(r["losses"]) + 1), r["losses"], label=name)
        ax[1].plot(np.cumsum(r["times"]), r["losses"], label=name)
    for a, xl in zip(ax, ("iteration", "training time (s, forward + backward)"), strict=True):
        a.set_yscale("log")
        a.set_xlabel(xl)
        a.set_ylabel("training loss: KL(data || model)")
    ax[1].set_xscale("log")
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "ou_training.png"), dpi=110)
    plt.close(fig)

    show = [COLLOCATION, "torchsde rev. Heun, adjoint"]
    show = [s for s in show if s in trained]
    groups = np.argsort(x0)[[2, 20, 37]]
    t = np.linspace(T0, T1, N_TIMES)
    fig, ax = plt.subplots(1, len(show) + 1, figsize=(5 * (len(show) + 1), 4), sharey=True)
    panels = [("data (true OU SDE)", data)] + [
        (f"{s}\n-> gqlib sdeint", simulate_model(*trained[s]["model"], x0, eval_seeds[0]))
        for s in show]
    for a, (title, paths) in zip(ax, panels, strict=True):
        for k, gi in enumerate(groups):
            col = f"C{k}"
            a.plot(t, paths[:, gi, :10], color=col, lw=0.4, alpha=0.5)
            m, s = paths[:, gi].mean(-1), paths[:, gi].std(-1)
            a.plot(t, m, color=col, lw=2)
            a.fill_between(t, m - 2 * s, m + 2 * s, color=col, alpha=0.12)
        a.set_title(title, fontsize=9)
        a.set_xlabel("t")
    ax[0].set_ylabel("X (10 paths, mean +- 2 std of 45)")
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "ou_paths.png"), dpi=110)
    plt.close(fig)

    if not fits:
        print(f"plots: {folder}/ou_training.png, ou_paths.png")
        return
    truth = [MU, THETA, SIGMA, PHI]
    fig, ax = plt.subplots(1, 4, figsize=(13, 3))
    for i, nm in enumerate(("mu", "theta", "sigma", "phi")):
        for c, (n_terms, hist) in enumerate(fits.items()):
            for k in range(hist.shape[0]):
                ax[i].plot(hist[k, :, i], lw=0.8, color=f"C{c}", alpha=0.7,
                           label=f"{n_terms} cosines" if k == 0 else None)
        ax[i].axhline(truth[i], color="k", ls="--", lw=1)
        ax[i].set_title(f"{nm} (truth {truth[i]})")
        ax[i].set_xlabel("iteration")
    ax[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(folder, "ou_parametric.png"), dpi=110)
    plt.close(fig)
    print(f"plots: {folder}/ou_training.png, ou_paths.png, ou_parametric.png")


# ---------------------------------------------------------------------------------------------
# the shared runner's protocol (validation.experiments.run): width sweep, seeds

NAME = "ornstein_uhlenbeck"
TITLE = "Ornstein-Uhlenbeck neural SDE (Wong-Zakai ODE training)"
METRIC = "KL after transfer"
HIGHER_IS_BETTER = False
TORCHSDE = ("torchsde rev. Heun, direct", "torchsde rev. Heun, adjoint")
CONFIGS = {
    "tiny": dict(widths=[5], epochs=1, seeds=1, n_x0=2, lr=1e-3),
    "quick": dict(widths=[5, 50], epochs=2, seeds=2, n_x0=4, lr=1e-3),
    "full": dict(widths=[5, 20, 50, 100], epochs=100, seeds=5, n_x0=N_X0, lr=1e-3),
}
_DATA = {}
NOISE_PAD = 2.0  # torchdiffeq's dopri5 steps past the last output time and interpolates back:
# (and below t0 backwards): the runner's Wong-Zakai noise covers [-2, 12] for every method (the standalone script's [0, 10])


def tasks(cfg):
    return [NAME]


def method_names(include=None):
    from .common import method_names as common

    names = [n for n in common() if n != "gqlib interpolated"] + list(TORCHSDE)
    if include:
        return [n for n in include if n in names]
    return names


def _data(n_x0):
    if n_x0 not in _DATA:
        x0 = starting_points(0, n_x0)
        _DATA[n_x0] = x0, gaussian_stats(simulate_truth(x0, seed=1))
    return _DATA[n_x0]


def run_one(task, method, width, seed, cfg, progress=None):
    """Train drift and diffusion MLPs of ``width`` for ``cfg["epochs"]`` full-batch iterations."""
    import torch

    from gqlib.sde import KarhunenLoeveNoise, wong_zakai

    from .common import DIRECT_NAMES, Counted, make_solver

    x0, stats_np = _data(cfg["n_x0"])
    data_stats = tuple(torch.tensor(v, dtype=torch.float32) for v in stats_np)
    x0_t = torch.tensor(np.repeat(x0, N_PER)[:, None], dtype=torch.float32)
    ts = torch.linspace(T0, T1, N_TIMES, dtype=torch.float32)
    MLP, _, _ = build_models()
    torch.manual_seed(seed)
    drift, diffusion = MLP(width), MLP(width, bias=1.0)
    params = list(drift.parameters()) + list(diffusion.parameters())
    if method in TORCHSDE:
        run = make_methods(x0_t, ts, seed_offset=1000 * seed)[method]
    else:
        solve = make_solver(method, rtol=RTOL, atol=ATOL, gtol=0.1)

        def run(drift, diffusion, it):
            noise = KarhunenLoeveNoise.sample(T0 - NOISE_PAD, T1 + NOISE_PAD, N_KL, tuple(x0_t.shape),
                                              seed=10_000 + 1000 * seed + it)
            func = Counted(wong_zakai(drift, diffusion, noise))
            ys = solve(func, x0_t, ts, params)
            n = func.n
            return ys, lambda: (n, n if method in DIRECT_NAMES else func.n - n)

    def log(it, loss, sec):
        if progress is not None:
            progress()

    res = train(run, drift, diffusion, data_stats, cfg["epochs"], lr=cfg["lr"], log=log)
    kl = float(kl_metric(stats_np, simulate_model(drift, diffusion, x0, 100 + seed)))
    return dict(epoch_time=res["times"], epoch_loss=res["losses"],
                fwd_nfe=[n[0] for n in res["nfe"]], bwd_nfe=[n[1] for n in res["nfe"]], metric=kl)


if __name__ == "__main__":
    sys.exit(main())
