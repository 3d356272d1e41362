"""gqlib.torch on CUDA: results equal CPU's, and at most one host sync per step attempt.

Skipped without a CUDA device. The sync count uses torch's sync debug mode, which warns at every
synchronising call (``.item()``, ``float(tensor)``, device-to-host copies).
"""

import os
import warnings
from collections import Counter

import pytest

torch = pytest.importorskip("torch")

from gqlib.torch import odeint  # noqa: E402

pytestmark = [pytest.mark.torch,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
F64 = torch.float64
ADJ = [None, "gq", "backsolve", "interpolated", "collocation"]


class Field(torch.nn.Module):
    def __init__(self, d=4, width=32, dtype=F64):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.l1 = torch.nn.Linear(d, width).to(dtype)
        self.l2 = torch.nn.Linear(width, d).to(dtype)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=dtype) * 0.5)

    def forward(self, t, y):
        return self.l2(torch.tanh(self.l1(y))) * (1.0 + 0.5 * torch.sin(2.0 * t)) - 0.1 * y


def _setup(device, dtype=F64):
    func = Field(dtype=dtype).to(device)
    g = torch.Generator().manual_seed(1)
    y0 = torch.randn(8, 4, generator=g, dtype=dtype).to(device).requires_grad_(True)
    t = torch.linspace(0, 2, 5, dtype=dtype).to(device).requires_grad_(True)
    w = torch.randn(5, 8, 4, generator=g, dtype=dtype).to(device)
    return func, y0, t, w


def _solve(func, y0, t, w, adjoint, **kw):
    ys, stats = odeint(func, y0, t, adjoint=adjoint, return_stats=True, **kw)
    grads = torch.autograd.grad((w * ys).sum(), (y0, t, *func.parameters()))
    return ys, grads, stats


def _run(device, adjoint, dtype=F64, **kw):
    return _solve(*_setup(device, dtype), adjoint, **kw)


@pytest.mark.parametrize("adjoint", ADJ)
def test_cuda_matches_cpu(adjoint):
    tol = dict(rtol=1e-9, atol=1e-11)
    ys_c, g_c, _ = _run("cpu", adjoint, **tol)
    ys_g, g_g, _ = _run("cuda", adjoint, **tol)
    assert ys_g.device.type == "cuda"
    assert (ys_g.cpu() - ys_c).abs().max() < 1e-9
    for a, b in zip(g_g, g_c, strict=True):
        assert a.device.type == "cuda"
        assert ((a.cpu() - b).norm() / b.norm()) < 1e-7


@pytest.mark.parametrize("adjoint", ADJ)
def test_cuda_float32(adjoint):
    ys, grads, _ = _run("cuda", adjoint, dtype=torch.float32, rtol=1e-5, atol=1e-6)
    assert ys.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


def _sync_sites(fn):
    """Run ``fn`` with torch's sync debug mode; return its result and a Counter of the Python
    lines (``file:line``) that synchronised, host-to-device copies from pageable memory included."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            out = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    sites = Counter(f"{os.path.relpath(w.filename)}:{w.lineno}" for w in rec
                    if "synchroniz" in str(w.message).lower())
    return out, sites


@pytest.mark.parametrize("method", ["rk4", "dopri8"])
def test_direct_mode_syncs_once_per_step_attempt(method):
    # rk4 (fixed) and dopri8 (adaptive) land on the outputs: no dense output is evaluated
    kw = dict(options=dict(step_size=0.05)) if method == "rk4" else dict(rtol=1e-8, atol=1e-10)
    args = _setup("cuda")
    _solve(*args, None, method=method, **kw)  # warm up kernels and allocator
    (_, _, stats), sites = _sync_sites(lambda: _solve(*args, None, method=method, **kw))
    syncs = sum(sites.values())
    print(f"{method}: {syncs} syncs for {stats.forward['n_steps']} attempts: {dict(sites)}")
    # + the times to the host once and Hairer's initial step (three norms)
    assert syncs <= stats.forward["n_steps"] + 4


def _adjoint_sites(adjoint):
    args = _setup("cuda")
    _solve(*args, adjoint)
    (_, _, stats), sites = _sync_sites(lambda: _solve(*args, adjoint))
    attempts = stats.forward["n_steps"] + (stats.backward or {}).get("n_steps", 0)
    print(f"adjoint={adjoint}: {sum(sites.values())} syncs for {attempts} step attempts")
    for site, n in sites.most_common():
        print(f"    {n:5d}  {site}")
    return sites, stats, attempts


@pytest.mark.parametrize("adjoint", ADJ)
def test_the_adapter_adds_no_syncs(adjoint):
    sites, _, _ = _adjoint_sites(adjoint)
    assert not [s for s in sites if "gqlib/torch/" in s.replace(os.sep, "/")]


# measured on an NVIDIA H200 (validation/cuda_check.sh): direct, backsolve, gq and interpolated
# all within one sync per step attempt plus one per quadrature panel (the node rule's decision);
# collocation (not yet run on a GPU) syncs once per output interval (its finiteness check)
@pytest.mark.parametrize("adjoint", [None, "backsolve", "gq", "interpolated", "collocation"])
def test_dense_output_and_adjoints_sync_once_per_step_attempt(adjoint):
    sites, stats, attempts = _adjoint_sites(adjoint)
    panels = (stats.backward or {}).get("n_panels", 0)
    assert sum(sites.values()) <= attempts + panels + 8


def test_cuda_dropout_replayed_is_direct_backprop():
    """The checkpoint adjoint restores the device's generator before each recomputed call: the
    same dropout masks as the forward's, direct backprop's gradient, and the caller's CUDA
    stream is left as the forward left it."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Tanh(), torch.nn.Dropout(0.3),
                              torch.nn.Linear(64, 4)).to("cuda", F64)
    y0 = torch.randn(8, 4, dtype=F64, device="cuda")
    t = torch.linspace(0.0, 1.0, 4, dtype=F64, device="cuda")

    def grads(adjoint):
        net.zero_grad()
        torch.manual_seed(5)
        ys = odeint(lambda t, y: net(y), y0, t, method="rk4", options=dict(step_size=0.05),
                    adjoint=adjoint, adjoint_params=tuple(net.parameters()) if adjoint else None)
        state = torch.cuda.get_rng_state()
        (ys ** 2).sum().backward()
        assert torch.equal(torch.cuda.get_rng_state(), state)
        return torch.cat([p.grad.reshape(-1) for p in net.parameters()])

    want, got = grads(None), grads("checkpoint")
    assert float((got - want).norm() / want.norm()) < 1e-12
