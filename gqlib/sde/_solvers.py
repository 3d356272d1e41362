"""``sdeint``: fixed-step SDE solves driven by a :class:`BrownianPath`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from gqlib._backend import to_host_array
from gqlib._jit import is_jitted
from gqlib.errors import GQLibError, NonFiniteState, TooManySteps
from gqlib.integrate._policy import check_times, substep_count

from ._brownian import BrownianPath
from ._kernels import KERNEL_REQUIRES, KERNELS
from ._methods import SDE_METHODS, StepContext, check_supports, get_sde_method
from ._noise_types import NoiseType, as_noise_type
from ._xp import convert_like, namespace

__all__ = ["sdeint"]

SDE_TYPES = ("ito", "stratonovich")
#: Brownian increments are fetched in chunks of about this many numbers (steps x elements).
_CHUNK_VALUES = 2**22
#: Outside NumPy, the per-step finiteness flags are read on the host once per this many steps (and
#: at output times): one device sync per block instead of per step, at most a block of wasted steps.
_CHECK_EVERY = 32


def _validate_times(t: Any, path: BrownianPath) -> np.ndarray:
    tt = check_times(t, increasing=True)
    if tt[0] < path.t0 or tt[-1] > path.t1:
        raise ValueError(f"`t` must lie within the path's interval [{path.t0!r}, {path.t1!r}]; "
                         f"got [{float(tt[0])!r}, {float(tt[-1])!r}].")
    return tt


def _step_grid(tt: np.ndarray, dt: float, max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Step times (landing on every output time) and, per grid point, its output row or -1.

    Raises TooManySteps, before allocating, where the grid would exceed ``max_steps`` steps.
    """
    pieces = [tt[:1]]
    rec = [np.zeros(1, dtype=np.int64)]
    total = 0
    for i in range(tt.size - 1):
        span = tt[i + 1] - tt[i]
        n = substep_count.py_func(span, dt)
        if total + n > max_steps:
            h = span / n
            raise TooManySteps(f"sdeint needs more than `max_steps` = {max_steps} steps of at most "
                               f"`dt` = {dt!r} (step {max_steps + 1} would start here); raise "
                               "`max_steps` or `dt`", t=tt[i] + (max_steps - total) * h, h=h)
        total += n
        pts = tt[i] + span * (np.arange(1, n + 1, dtype=np.float64) / n)
        pts[-1] = tt[i + 1]
        pieces.append(pts)
        r = np.full(n, -1, dtype=np.int64)
        r[-1] = i + 1
        rec.append(r)
    return np.concatenate(pieces), np.concatenate(rec)


def sdeint(drift: Callable, diffusion: Callable, y0: Any, t: Any, path: BrownianPath, *,
           method: str, dt: float, sde_type: str = "stratonovich",
           noise_type: NoiseType | str = "diagonal",
           diffusion_jacobian: Callable | None = None, max_steps: int = 100_000):
    r"""Solve ``dX = drift(t, X) dt + diffusion(t, X) dW`` with a fixed-step method.

    ``dW`` is Ito or Stratonovich (``o dW``) according to ``sde_type``; the method must match
    (:data:`SDE_METHODS`). Each output interval ``[t_i, t_{i+1}]`` is split into
    ``ceil((t_{i+1} - t_i)/dt)`` equal steps (so steps never exceed ``dt`` and land exactly on every
    output time), driven by the increments of ``path`` over the step grid.

    =============== ============= ================== =========================
    method          sde_type      strong order       noise types
    =============== ============= ================== =========================
    euler_maruyama  ito           0.5                all
    milstein        ito           1.0 (commutative)  elementwise (diagonal, scalar)
    euler_heun      stratonovich  1.0 (commutative)  all
    midpoint        stratonovich  1.0 (commutative)  all
    reversible_heun stratonovich  1.0 (commutative)  all
    =============== ============= ================== =========================

    Order 1.0 needs commutative noise: scalar noise, additive noise, or diagonal noise whose
    ``diffusion_i`` depends on ``y_i`` only. A diffusion reading the whole state (a neural network)
    is diagonal but not commutative and drops to 0.5 (it would need Levy areas).

    Parameters
    ----------
    drift, diffusion : callable ``(t, y) -> array``
        ``t`` is a Python float. Diffusion shape: y's (diagonal, scalar) or ``y.shape + (m,)``
        (general).
    y0 : array
        Initial state (NumPy or any array-API namespace, e.g. torch; the solve stays in it and is
        differentiable by that framework's autograd).
    t : array of float, shape (n,)
        Strictly increasing output times within ``[path.t0, path.t1]``; ``t[0]`` is the start.
    path : BrownianPath
        Noise, of shape y's (diagonal), ``()``/``(1,)``/``y.shape[:-1] + (1,)`` (scalar), or
        ``(m,)``/``y.shape[:-1] + (m,)`` (general).
    method : str
        One of ``SDE_METHODS``.
    dt : float
        Maximum step.
    sde_type : {"stratonovich", "ito"}
    noise_type : NoiseType or {"diagonal", "scalar", "general"}
        The noise structure (``_noise_types``); the method must support it (``SDEMethod.requires``).
    diffusion_jacobian : callable, optional
        Milstein only: the diffusion's derivative (see ``diffusion_correction``); default the
        derivative-free Runge-Kutta form.
    max_steps : int
        Cap on the number of steps (checked before any work).

    Returns
    -------
    array of shape ``(n, *y0.shape)``, in y0's namespace, device and dtype.

    Raises
    ------
    ValueError
        Unknown method, method/sde_type or method/noise_type mismatch, ``dt <= 0``, ``t`` not
        strictly increasing or outside the path, non-finite ``y0``, shape mismatches, and a drift
        or diffusion output whose shape or dtype differs from the first call's (checked at every
        call).
    gqlib.errors.NonFiniteState
        A step produced a NaN or infinite state; ``.t`` and ``.h`` name the step.
    gqlib.errors.TooManySteps
        The step grid exceeds ``max_steps``.

    Notes
    -----
    With NumPy arrays and numba-jitted ``drift`` and ``diffusion`` (an ``elementwise`` noise, no
    ``diffusion_jacobian``), the time loop runs in a compiled kernel (one compilation per function
    pair per process). Brownian increments are read in chunks of about 4M numbers.

    Examples
    --------
    Geometric Brownian motion, Stratonovich: X(t) = exp(mu t + sigma W(t)).

    >>> path = BrownianPath(0.0, 1.0, shape=(1000,), seed=0)
    >>> ys = sdeint(lambda t, y: 0.1 * y, lambda t, y: 0.2 * y, np.ones(1000), [0.0, 1.0], path,
    ...             method="midpoint", dt=2**-8)
    >>> exact = np.exp(0.1 + 0.2 * path(1.0))
    >>> bool(np.mean(np.abs(ys[-1] - exact)) < 1e-3)
    True
    """
    meth = get_sde_method(method)
    if sde_type not in SDE_TYPES:
        raise ValueError(f"`sde_type` must be one of {', '.join(map(repr, SDE_TYPES))}; got "
                         f"{sde_type!r}.")
    noise = as_noise_type(noise_type)
    if meth.sde_type != sde_type:
        alts = sorted(n for n, m in SDE_METHODS.items() if m.sde_type == sde_type)
        raise ValueError(f"method {meth.name!r} solves {meth.sde_type} SDEs but `sde_type` is "
                         f"{sde_type!r}; for {sde_type} SDEs use one of {', '.join(alts)}, or "
                         "convert the drift (ito_to_stratonovich / stratonovich_to_ito).")
    check_supports(meth, noise)
    if not callable(drift):
        raise TypeError(f"`drift` must be callable (t, y) -> array; got {type(drift).__name__}.")
    if not callable(diffusion):
        raise TypeError(f"`diffusion` must be callable (t, y) -> array; got "
                        f"{type(diffusion).__name__}.")
    if diffusion_jacobian is not None and not callable(diffusion_jacobian):
        raise TypeError("`diffusion_jacobian` must be callable or None; got "
                        f"{type(diffusion_jacobian).__name__}.")
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise TypeError(f"`dt` must be a positive float; got {dt!r}.") from None
    if not (dt > 0 and math.isfinite(dt)):
        raise ValueError(f"`dt` must be positive and finite; got {dt!r}.")
    if not isinstance(path, BrownianPath):
        raise TypeError(f"`path` must be a BrownianPath; got {type(path).__name__}.")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) or max_steps < 1:
        raise ValueError(f"`max_steps` must be a positive int; got {max_steps!r}.")
    tt = _validate_times(t, path)

    if isinstance(y0, (list, tuple, float, int)):
        y0 = np.asarray(y0, dtype=np.float64)
    xp = namespace(y0)
    if not xp.isdtype(y0.dtype, "real floating"):
        raise TypeError(f"`y0` must be a real floating array; got dtype {y0.dtype}.")
    if not bool(xp.all(xp.isfinite(y0))):
        raise ValueError("`y0` must be finite; it holds NaN or infinite values.")
    t0 = float(tt[0])
    f0 = drift(t0, y0)
    g0 = diffusion(t0, y0)
    noise.check_shapes(tuple(y0.shape), tuple(f0.shape), tuple(g0.shape), tuple(path.shape),
                       "`path`")
    if tt.size == 1:
        return xp.stack([y0])

    grid, rec = _step_grid(tt, dt, int(max_steps))
    fast = (isinstance(y0, np.ndarray) and y0.ndim >= 1 and is_jitted(drift)
            and is_jitted(diffusion) and not noise.missing(KERNEL_REQUIRES)
            and diffusion_jacobian is None)
    ctx = StepContext(drift, diffusion, noise, f0, g0, diffusion_jacobian, xp)
    state = meth.init(ctx, t0, y0, f0, g0)
    chunk = max(1, _CHUNK_VALUES // max(1, int(np.prod(path.shape, dtype=np.int64))))
    # Overflow and NaN are reported as NonFiniteState with the step, not as NumPy warnings.
    with np.errstate(over="ignore", invalid="ignore"):
        if fast:
            return _run_kernel(meth, ctx, state, y0, tt.size, grid, rec, path, chunk)
        return _run_python(meth, ctx, state, y0, grid, rec, path, chunk)


def _run_kernel(meth, ctx, state, y0, n_out, grid, rec, path, chunk):
    """The compiled loop; a step it flags is replayed in Python, which raises the error."""
    kernel = KERNELS[meth.name]
    out = np.empty((n_out,) + y0.shape, dtype=y0.dtype)
    out[0] = y0
    state = tuple(np.ascontiguousarray(s) for s in state)
    n_steps = grid.size - 1
    for a in range(0, n_steps, chunk):
        b = min(a + chunk, n_steps)
        dW = np.ascontiguousarray(np.diff(path(grid[a:b + 1]), axis=0).astype(y0.dtype))
        k, state = kernel(ctx.drift, ctx.diffusion, grid[a:b + 1], dW, *state, rec[a + 1:b + 1],
                          out)
        if k >= 0:
            _replay_failed_step(meth, ctx, state, grid, a + k, dW[k])
    return out


def _replay_failed_step(meth, ctx, state, grid, n, dw):
    tn = float(grid[n])
    h = float(grid[n + 1]) - tn
    y = meth.step(ctx, state, tn, h, dw)[0]  # raises if an output shape is wrong
    if not np.all(np.isfinite(y)):
        _non_finite(tn, h)
    raise GQLibError(f"sdeint: the compiled {meth.name} step flagged a non-finite state or an "
                     "output of another shape, but its Python replay did not; drift and diffusion "
                     "must be deterministic", t=tn, h=h)  # pragma: no cover - parity is tested


def _run_python(meth, ctx, state, y0, grid, rec, path, chunk):
    """The array-API loop, checking the state's finiteness after every step."""
    xp = ctx.xp
    numpy = isinstance(y0, np.ndarray)
    ys = [y0]
    flags: list = []  # (step, 0-d finiteness flag) not yet read on the host
    n_steps = grid.size - 1
    for a in range(0, n_steps, chunk):
        b = min(a + chunk, n_steps)
        dW = convert_like(np.diff(path(grid[a:b + 1]), axis=0), y0)
        for n in range(a, b):
            tn = float(grid[n])
            state = meth.step(ctx, state, tn, float(grid[n + 1]) - tn, dW[n - a])
            if numpy:
                # A finite sum proves every element finite (a NaN or inf would propagate into it);
                # only a non-finite sum, possibly an overflow of huge finite values, needs the test.
                y = state[0]
                if not (math.isfinite(y.sum()) or np.isfinite(y).all()):
                    _non_finite(tn, float(grid[n + 1]) - tn)
            else:
                flags.append((n, xp.all(xp.isfinite(state[0]))))
                if len(flags) >= _CHECK_EVERY or rec[n + 1] >= 0:
                    _read_flags(xp, flags, grid)
            if rec[n + 1] >= 0:
                ys.append(state[0])
    return xp.stack(ys)


def _read_flags(xp, flags, grid):
    """One host sync for a block of steps' finiteness flags; raise at the first bad step."""
    ok = to_host_array(xp.stack([f for _, f in flags]))
    if not ok.all():
        n = flags[int(np.argmin(ok))][0]
        _non_finite(float(grid[n]), float(grid[n + 1]) - float(grid[n]))
    flags.clear()


def _non_finite(t: float, h: float):
    raise NonFiniteState("sdeint: the state became NaN or infinite in the step from t to t + h; "
                         "reduce `dt` (an explicit step can overflow on a fast drift) or check the "
                         "drift and diffusion there", t=t, h=h)
