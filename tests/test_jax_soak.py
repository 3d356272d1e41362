"""Soak: many jitted value_and_grad calls (plain and vmapped) finish, without memory growth.

Host callbacks that called back into JAX would deadlock (jax-ml/jax#24255); this runs the
adapter's callbacks some thousand times in a fresh process under a hard timeout.
"""

import subprocess
import sys

import pytest

pytest.importorskip("jax")

SCRIPT = r"""
import resource, sys
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
import gqlib.jax as gj

def f(y, t, W):
    return jnp.tanh(y @ W) - 0.1 * y

def loss(W, y0, adjoint):
    return jnp.mean(gj.odeint(f, y0, jnp.linspace(0.0, 1.0, 5), W, rtol=1e-6, atol=1e-8,
                              adjoint=adjoint) ** 2)

def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20

W = 0.5 * jnp.eye(4) + 0.1
y0 = jnp.ones((3, 4))
Y0 = jnp.stack([y0 * (1 + 0.1 * i) for i in range(4)])
for adjoint in ("checkpoint", "gq"):
    vg = jax.jit(jax.value_and_grad(lambda W, y: loss(W, y, adjoint)))
    vm = jax.jit(jax.vmap(jax.value_and_grad(lambda W, y: loss(W, y, adjoint)), (None, 0)))
    jax.block_until_ready(vg(W, y0)); jax.block_until_ready(vm(W, Y0))
    for _ in range(20):  # warm-up: allocator pools settle
        jax.block_until_ready(vg(W, y0))
    before = rss_mb()
    for i in range(200):
        v, g = vg(W * (1 + 1e-3 * i), y0)
        jax.block_until_ready(g)
    for i in range(20):
        v, g = vm(W * (1 + 1e-3 * i), Y0)
        jax.block_until_ready(g)
    grown = rss_mb() - before
    print(adjoint, "rss growth MB", round(grown, 1), flush=True)
    assert grown < 30, (adjoint, grown)
print("ok")
"""


@pytest.mark.slow  # ~20-40 s (two strategies compiled in a fresh process)
def test_soak_no_deadlock_no_memory_growth():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("ok"), out.stdout
