"""Distributed training is torch's job: odeint_adjoint under DistributedDataParallel (issue 13).

Two processes (gloo, CPU, float64) each train a neural ODE on half of a batch for 3 SGD steps with
``odeint_adjoint`` (rk4, fixed step), with DDP around the model and, separately, around the vector
field only, and with the gq (fixed node count) and collocation adjoints; their gradients and
parameters must equal one process's on the whole batch. (Fixed steps and node counts: adaptive
ones would follow each rank's own error norms, and agree only to the tolerances.) The adjoint's parameter gradients leave a custom
``autograd.Function`` as ordinary input gradients, so they reach the parameters through autograd's
accumulation, where DDP's reducer hooks in: the all-reduce only happens if that path is taken.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

import ddp_worker as W  # noqa: E402

pytestmark = pytest.mark.torch
WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with gloo needed")
def test_ddp_two_ranks_equal_one_process_on_the_whole_batch(tmp_path):
    port = _free_port()
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(root), *filter(None, [os.environ.get("PYTHONPATH")])]), OMP_NUM_THREADS="1")
    outs = [tmp_path / f"rank{r}.pt" for r in range(WORLD)]
    procs = [subprocess.Popen([sys.executable, str(Path(W.__file__)), str(r), str(WORLD),
                               str(port), str(outs[r])], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for r in range(WORLD)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r, (p, log) in enumerate(zip(procs, logs, strict=True)):
        assert p.returncode == 0, f"rank {r} failed:\n{log}"
    ranks = [torch.load(o) for o in outs]

    y0, target = W.make_data(WORLD)
    for run in W.RUNS:
        model = W.make_model(run)
        params = list(model.parameters())
        grads, final = W.train(model, params, y0, target)
        for res in (r[run] for r in ranks):
            # every parameter's gradient reached it through autograd's accumulation, once a step
            assert res["hooks"] == [W.STEPS] * len(params), run
            for step in range(W.STEPS):
                for g, ref in zip(res["grads"][step], grads[step], strict=True):
                    assert _rel(g, ref) < 1e-10, (run, step)
            for p, ref in zip(res["params"], final, strict=True):
                assert _rel(p, ref) < 1e-10, run
        # the check has teeth: one rank's own half-batch gradient is far from the whole batch's
        half = W.make_model(run)
        W.loss_fn(half(y0[:W.BATCH]), target[:W.BATCH]).backward()
        assert max(_rel(p.grad, ref)
                   for p, ref in zip(half.parameters(), grads[0], strict=True)) > 1e-2
