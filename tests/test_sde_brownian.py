"""BrownianPath: virtual-Brownian-tree semantics and the law of its increments.

Statistical checks use fixed seeds and bounds of 4-5 standard errors: deterministic, and a
correct implementation fails them with probability below 1e-4 per check over seeds.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from gqlib.sde import BrownianPath


def test_starts_at_zero_and_shapes():
    for shape in [(), (3,), (4, 2)]:
        p = BrownianPath(0.3, 2.1, shape=shape, seed=1)
        assert np.all(p(0.3) == 0.0)
        assert p(0.3).shape == shape
        assert p(np.array([0.5, 1.0, 2.1])).shape == (3,) + shape
        assert p(np.zeros((2, 5)) + 1.0).shape == (2, 5) + shape
    assert BrownianPath(0, 1, shape=4, seed=0).shape == (4,)


def test_query_order_and_batching_independence():
    p = BrownianPath(-1.0, 3.0, shape=(5,), seed=123)
    rng = np.random.default_rng(0)
    ts = np.concatenate([rng.uniform(-1.0, 3.0, 60), [-1.0, 3.0, 1.0, 0.0]])
    batch = p(ts)
    singles = np.stack([p(float(t)) for t in ts])
    perm = rng.permutation(ts.size)
    shuffled = p(ts[perm])
    halves = np.concatenate([p(ts[:20]), p(ts[20:])])
    # A fresh object with the same seed, queried in reverse order.
    other = BrownianPath(-1.0, 3.0, shape=(5,), seed=123)(ts[::-1])[::-1]
    np.testing.assert_array_equal(batch, singles)
    np.testing.assert_array_equal(batch[perm], shuffled)
    np.testing.assert_array_equal(batch, halves)
    np.testing.assert_array_equal(batch, other)
    # Large queries run in parallel, small ones serially: same values.
    big = BrownianPath(-1.0, 3.0, shape=(200,), seed=123)
    many = big(np.linspace(-1.0, 3.0, 1001))
    np.testing.assert_array_equal(many[::250, :5], p(np.linspace(-1.0, 3.0, 5)))
    # Repeated times in one query agree too.
    np.testing.assert_array_equal(p(np.array([0.7, 0.7, 0.7])), np.stack([p(0.7)] * 3))


def test_seed_and_elements_distinguish_paths():
    a = BrownianPath(0, 1, shape=(3,), seed=1)(0.5)
    b = BrownianPath(0, 1, shape=(3,), seed=2)(0.5)
    assert np.all(a != b)
    assert len(set(a.tolist())) == 3
    g = np.random.default_rng(7)
    p = BrownianPath(0, 1, seed=g)
    assert isinstance(p.seed, int)
    q = BrownianPath(0, 1, seed=None)
    np.testing.assert_array_equal(q(0.4), BrownianPath(0, 1, seed=q.seed)(0.4))


def test_increments_call_and_broadcast():
    p = BrownianPath(0, 2, shape=(3,), seed=4)
    s, t = np.array([0.1, 0.5]), np.array([1.5, 0.9])
    np.testing.assert_allclose(p(s, t), p(t) - p(s), rtol=0, atol=1e-15)
    np.testing.assert_allclose(p(0.25, 1.0), p(1.0) - p(0.25), rtol=0, atol=1e-15)


@pytest.mark.parametrize("t0,t1", [(0.0, 1.0), (0.3, 2.1)])
def test_increment_law(t0, t1):
    """Increments over a non-dyadic grid: mean 0, variance dt, Gaussian, uncorrelated."""
    M = 20000
    p = BrownianPath(t0, t1, shape=(M,), seed=2024)
    grid = t0 + (t1 - t0) * np.array([0.0, 0.07, 0.2, 0.45, 0.5, 0.81, 1.0])
    dw = np.diff(p(grid), axis=0)  # (6, M)
    dt = np.diff(grid)[:, None]
    z = dw / np.sqrt(dt)
    assert np.all(np.abs(z.mean(axis=1)) < 4.5 / np.sqrt(M))
    # Var of the sample variance of N(0,1) is 2/M.
    assert np.all(np.abs(z.var(axis=1) - 1.0) < 4.5 * np.sqrt(2.0 / M))
    corr = np.corrcoef(z)
    off = corr[~np.eye(6, dtype=bool)]
    assert np.all(np.abs(off) < 4.5 / np.sqrt(M))
    assert stats.kstest(z.ravel(), "norm").pvalue > 1e-4
    # Gaussian fourth moment: E z^4 = 3, Var(z^4) = 96.
    assert abs(np.mean(z**4) - 3.0) < 4.5 * np.sqrt(96.0 / z.size)


def test_covariance_min_and_across_seeds():
    """Cov(W(s), W(t)) = min(s, t) - t0, over many seeds (scalar paths)."""
    ts = np.array([0.2, 0.55, 0.9])
    w = np.stack([BrownianPath(0.0, 1.0, seed=s)(ts) for s in range(3000)])
    cov = np.cov(w.T)
    expect = np.minimum.outer(ts, ts)
    # sd of a sample covariance of Gaussians ~ sqrt((s_ii s_jj + s_ij^2)/n)
    sd = np.sqrt((np.outer(np.diag(expect), np.diag(expect)) + expect**2) / 3000)
    assert np.all(np.abs(cov - expect) < 4.5 * sd)


def test_tolerance_and_linear_below_resolution():
    c = 3.0
    p = BrownianPath(0.0, c, shape=(4,), seed=9, tol=0.01)
    assert p.resolution <= 0.01 < 2 * p.resolution
    assert p.depth == 9
    default = BrownianPath(0.0, c)
    assert default.tol == c * 2.0**-20 and default.depth == 20
    # Inside a leaf [a, b] W is the chord.
    a = 37 * p.resolution
    b = a + p.resolution
    x = np.linspace(a, b, 7)
    wa, wb = p(a), p(b)
    chord = wa + (wb - wa) * ((x - a) / (b - a))[:, None]
    np.testing.assert_allclose(p(x), chord, rtol=0, atol=1e-14)
    # Above the resolution: leaf increments have the Brownian variance (M x 2**9 samples).
    M = 200
    q = BrownianPath(0.0, c, shape=(M,), seed=10, tol=0.01)
    leaves = np.arange(2**9 + 1) * q.resolution
    z = np.diff(q(leaves), axis=0) / np.sqrt(q.resolution)
    assert abs(z.var() - 1.0) < 4.5 * np.sqrt(2.0 / z.size)


def test_float32_and_torch_times():
    p = BrownianPath(0, 1, shape=(2,), seed=3, dtype=np.float32)
    assert p(0.5).dtype == np.float32
    torch = pytest.importorskip("torch")
    q = BrownianPath(0, 1, shape=(2,), seed=3)
    out = q(torch.tensor([0.25, 0.5], dtype=torch.float64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 2)
    np.testing.assert_array_equal(out.numpy(), q(np.array([0.25, 0.5])))


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(t0=1.0, t1=1.0), ValueError, "`t1` must be after `t0`"),
        (dict(t0=0.0, t1=float("inf")), ValueError, "`t1` must be finite"),
        (dict(t0=0.0, t1=1.0, tol=0.0), ValueError, "`tol` must be positive"),
        (dict(t0=0.0, t1=1.0, tol=1e-30), ValueError, "finest resolution"),
        (dict(t0=0.0, t1=1.0, shape=(2, -1)), ValueError, "`shape`"),
        (dict(t0=0.0, t1=1.0, shape="ab"), TypeError, "`shape`"),
        (dict(t0=0.0, t1=1.0, seed=1.5), TypeError, "`seed`"),
        (dict(t0=0.0, t1=1.0, dtype=np.int64), TypeError, "`dtype`"),
    ],
)
def test_validation(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        BrownianPath(**kwargs)


def test_query_outside_interval_raises():
    p = BrownianPath(0.0, 1.0, seed=0)
    with pytest.raises(ValueError, match=r"`t` must lie in \[t0, t1\]"):
        p(1.5)
    with pytest.raises(ValueError, match="`t`"):
        p(np.array([0.5, np.nan]))


def test_plain_python_parity():
    """The kernel run as plain Python (GQLIB_DISABLE_JIT=1) gives bit-identical values."""
    code = (
        "import numpy as np\n"
        "from gqlib.sde import BrownianPath\n"
        "p = BrownianPath(0.2, 1.7, shape=(3,), seed=77, tol=1e-3)\n"
        "print(repr(p(np.array([0.2, 0.3, 0.95, 1.7, 1.2345])).tolist()))\n"
    )
    env = dict(os.environ, GQLIB_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    plain = np.array(eval(out.stdout))
    p = BrownianPath(0.2, 1.7, shape=(3,), seed=77, tol=1e-3)
    np.testing.assert_array_equal(plain, p(np.array([0.2, 0.3, 0.95, 1.7, 1.2345])))
