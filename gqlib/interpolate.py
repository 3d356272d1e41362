"""Dense output: the solution of a solve, evaluable anywhere in its span.

Each accepted step carries the method's continuous extension (``Q = K.T @ P``, local order
``dense_order``) or cubic Hermite (local order 3). Its global error converges at
``min(order, dense_order + 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._backend import constant_like, device_of, namespace

__all__ = ["Solution", "DenseOutput", "StepCheckpoints", "evaluate_dense", "evaluate_pieces"]


def evaluate_dense(y0, h, Q, theta):
    """``y0 + h * Q @ [theta, theta^2, ...]`` for a scalar or 1-D array of ``theta`` (floats).

    A scalar ``theta`` is raised to a cached on-device range of exponents (no host-to-device
    copy); an array goes through :func:`evaluate_pieces` as one piece (one copy of the times).
    """
    degree = Q.shape[-1]
    exps = constant_like(f"exponents{degree}", np.arange(1, degree + 1, dtype=np.float64), y0)
    if np.ndim(theta) == 0:
        return y0 + h * (Q @ (float(theta) ** exps))
    xp = namespace(y0)
    theta = np.asarray(theta, dtype=np.float64)
    theta_dev = xp.asarray(theta, dtype=xp.float64, device=device_of(y0))
    return evaluate_pieces([(0.0, 1.0, y0, h * Q)], theta, theta_dev, y0)


def evaluate_pieces(pieces, t_host, t_dev, like, origin: float = 0.0):
    """A piecewise interpolant at monotone times, without host-to-device transfers.

    ``pieces`` are ``(t0, h, y0, Q)`` of consecutive steps (host floats ``t0``, ``h``, in either
    order of time). The times are ``origin + t_host`` (NumPy) and ``origin + t_dev`` (the same
    float64 values on the state's device), monotone. Each time is assigned on the host to the
    one piece whose ``[lo, hi)`` holds it (the last piece closed); since the times are monotone
    the pieces take contiguous runs, each evaluated on a slice of ``t_dev`` (slicing moves no
    data). ``theta = (t_dev - (t0 - origin)) / h`` from the offsets: with ``origin`` near the
    pieces, it carries round-off of the offsets, not of ``|t|`` (at t ~ 1e9 that is ``1e-7``
    absolute, more than a tolerance's worth of a short step). Returns shape ``(m, *y0.shape)``.
    """
    xp = namespace(like)
    order = sorted(range(len(pieces)), key=lambda j: min(pieces[j][0], pieces[j][0] + pieces[j][1]))
    los = np.array([min(pieces[j][0], pieces[j][0] + pieces[j][1]) - origin for j in order])
    which = np.clip(np.searchsorted(los, t_host, side="right") - 1, 0, len(order) - 1)
    runs = []
    start = 0
    m = len(t_host)
    while start < m:
        stop = start + 1
        while stop < m and which[stop] == which[start]:
            stop += 1
        t0, h, y0, Q = pieces[order[which[start]]]
        degree = Q.shape[-1]
        exps = constant_like(f"exponents{degree}", np.arange(1, degree + 1, dtype=np.float64),
                             t_dev, dtype=t_dev.dtype)
        theta = (t_dev[start:stop] - (t0 - origin)) / h
        pw = xp.astype(theta[None, :] ** exps[:, None], y0.dtype)  # (degree, run)
        vals = y0[..., None] + h * (Q @ pw)                          # (*shape, run)
        runs.append(xp.moveaxis(vals, -1, 0) if vals.ndim > 1 else vals)
        start = stop
    return runs[0] if len(runs) == 1 else xp.concat(runs, axis=0)


class DenseOutput:
    """Piecewise-polynomial interpolant over a sequence of accepted steps (vectorised over time).

    Stores, per step, ``t0``, ``h`` (host floats), ``y0`` and ``Q`` stacked along a first axis.
    """

    def __init__(self, segments: Sequence[Any]):
        if not segments:
            raise ValueError("dense output needs at least one step")
        xp = namespace(segments[0].y0)
        self.xp = xp
        self.t0 = np.array([s.t0 for s in segments], dtype=np.float64)
        self.h = np.array([s.h for s in segments], dtype=np.float64)
        # the step sizes the stages used (the stepper's h; t1 - t0 where a record has none)
        self.h_step = np.array([getattr(s, "h_step", s.h) for s in segments], dtype=np.float64)
        degree = max(s.Q.shape[-1] for s in segments)
        Qs = []
        for s in segments:
            Q = s.Q
            if Q.shape[-1] < degree:  # pad lower-degree pieces (cubic Hermite) with zero columns
                pad = xp.zeros((*Q.shape[:-1], degree - Q.shape[-1]), dtype=Q.dtype)
                Q = xp.concat([Q, pad], axis=-1)
            Qs.append(Q)
        self.Q = xp.stack(Qs, axis=0)          # (n_steps, *shape, degree)
        self.y0 = xp.stack([s.y0 for s in segments], axis=0)  # (n_steps, *shape)
        self.direction = 1.0 if self.h[0] > 0 else -1.0
        self.t_first = float(self.t0[0])
        self.t_last = float(self.t0[-1] + self.h[-1])
        # step boundaries in increasing order of direction * t for searchsorted
        self._keys = self.direction * self.t0
        self._last = 0

    @property
    def n_steps(self) -> int:
        return len(self.t0)

    def __call__(self, tq):
        if isinstance(tq, float):  # the adjoints query one float time per stage: fast path
            return self._at(tq)
        tq_np = np.asarray(tq, dtype=np.float64)
        lo, hi = sorted((self.t_first, self.t_last))
        if np.any(~np.isfinite(tq_np)) or np.any(tq_np < lo) or np.any(tq_np > hi):
            raise ValueError(f"`t` must lie in the solved span [{lo}, {hi}]")
        flat = tq_np.reshape(-1)
        idx = np.searchsorted(self._keys, self.direction * flat, side="right") - 1
        idx = np.clip(idx, 0, self.n_steps - 1)
        theta = (flat - self.t0[idx]) / self.h[idx]
        xp = self.xp
        degree = self.Q.shape[-1]
        powers = np.cumprod(np.repeat(theta[:, None], degree, axis=1), axis=1)  # (m, degree)
        like = self.y0
        dev = device_of(like)
        idx_x = xp.asarray(idx, device=dev)
        Qsel = xp.take(self.Q, idx_x, axis=0)            # (m, *shape, degree)
        ysel = xp.take(self.y0, idx_x, axis=0)           # (m, *shape)
        shape_extra = (1,) * (like.ndim - 1)
        pw = xp.asarray(powers, dtype=like.dtype, device=dev)
        pw = xp.reshape(pw, (pw.shape[0], *shape_extra, degree))
        hsel = xp.asarray(self.h[idx], dtype=like.dtype, device=dev)
        hsel = xp.reshape(hsel, (hsel.shape[0], *shape_extra))
        out = ysel + hsel * xp.sum(Qsel * pw, axis=-1)
        return xp.reshape(out, (*tq_np.shape, *like.shape[1:]))

    def pieces_between(self, a: float, b: float):
        """``(t0, h, y0, Q)`` of the steps overlapping ``[a, b]`` (for device-side evaluation)."""
        lo_key, hi_key = sorted((self.direction * a, self.direction * b))
        i0 = max(int(np.searchsorted(self._keys, lo_key, side="right")) - 1, 0)
        i1 = min(int(np.searchsorted(self._keys, hi_key, side="right")) - 1, self.n_steps - 1)
        return [(float(self.t0[i]), float(self.h[i]), self.y0[i], self.Q[i])
                for i in range(i0, i1 + 1)]

    def _at(self, t: float):
        lo, hi = (self.t_first, self.t_last) if self.direction > 0 else (self.t_last, self.t_first)
        if not (lo <= t <= hi):
            if t != t:  # a NaN step of a solver reading this output, not a caller's time
                raise ValueError("`t` is NaN: a dense output was queried at a non-finite time")
            raise ValueError(f"`t` must lie in the solved span [{lo}, {hi}]")
        i = self._last
        key = self.direction * t
        if not (self._keys[i] <= key and (i + 1 == self.n_steps or key < self._keys[i + 1])):
            i = int(np.searchsorted(self._keys, key, side="right")) - 1
            i = min(max(i, 0), self.n_steps - 1)
            self._last = i
        theta = (t - self.t0[i]) / self.h[i]
        return evaluate_dense(self.y0[i], float(self.h[i]), self.Q[i], theta)


class StepCheckpoints:
    """The state at every accepted step boundary of a solve: what the adjoints restart from.

    ``t`` holds the ``S + 1`` boundaries in the direction of travel (host float64, ``t[0]`` the
    initial time), ``y`` the states there, shape ``(S + 1, *y0.shape)``. Memory ``O(S D)``.
    ``h`` holds the ``S`` step sizes the forward's stages used (``t0 + h`` rounds to ``t1``, but
    ``t1 - t0`` can differ from ``h`` by a float spacing of t, which a stiff step amplifies
    through its stages): a recomputed step is then the forward's to the last bit. Default
    ``t1 - t0``.
    """

    __slots__ = ("t", "y", "h")

    def __init__(self, t, y, h=None):
        self.t = np.asarray(t, dtype=np.float64)
        self.y = y
        if self.t.ndim != 1 or self.t.size < 2 or self.t.size != y.shape[0]:
            raise ValueError("step checkpoints need matching 1-D times and states (two at least)")
        self.h = np.diff(self.t) if h is None else np.asarray(h, dtype=np.float64)
        if self.h.shape != (self.t.size - 1,):
            raise ValueError("step checkpoints need one step size per step")

    @classmethod
    def from_dense(cls, dense: DenseOutput, y_last) -> StepCheckpoints:
        """The boundaries of a dense output's steps (``y_last``: the state at its end)."""
        xp = dense.xp
        t = np.concatenate([dense.t0, [dense.t_last]])
        return cls(t, xp.concat([dense.y0, xp.stack([y_last])], axis=0), dense.h_step)

    def __len__(self) -> int:
        return self.t.size


def _copy_times(t):
    """A copy of the output times in their own type (NumPy array, tensor, list)."""
    if isinstance(t, np.ndarray):
        return t.copy()
    clone = getattr(t, "clone", None)  # torch
    if callable(clone):
        return clone()
    if isinstance(t, (list, tuple)):
        return type(t)(t)
    return t


class Solution:
    """Result of :func:`gqlib.solve`.

    Attributes
    ----------
    t : array
        Output times, as given.
    y : array
        States at ``t``, shape ``(len(t), *y0.shape)``, same array type as ``y0``.
    stats : dict
        ``nfe``, ``n_steps`` (attempts), ``n_accepted``, ``n_rejected``.
    tstops : tuple of float
        The discontinuity points the solver stepped onto (the adjoints reuse them).
    method, rtol, atol, step_size, norm :
        The options of the solve (the adjoints default to them); also as the dict ``options``.
    driver : {"numba", "array-api"}
        The driver that ran the solve.
    driver_reason : str or None
        Why the array-API driver ran rather than the compiled one (None when numba ran).
    dense : DenseOutput or None
        Every step's interpolant (``dense_output=True``); ``sol(tq)`` evaluates it, shape
        ``(*tq.shape, *y0.shape)``.
    checkpoints : StepCheckpoints or None
        The state at every accepted step boundary (``checkpoints=True`` or ``dense_output=True``).
    """

    def __init__(self, t, y, stats, *, method: str, rtol, atol, step_size=None, norm="rms",
                 tstops=(), dense: DenseOutput | None = None, driver: str = "array-api",
                 driver_reason: str | None = None, checkpoints: StepCheckpoints | None = None):
        self.t = _copy_times(t)  # the caller's array may change after the solve
        self.y = y
        self.stats = stats
        self.tstops = tuple(tstops)
        self.dense = dense
        if checkpoints is None and dense is not None:
            checkpoints = StepCheckpoints.from_dense(dense, y[-1])
        self.checkpoints = checkpoints
        self.method = method
        self.rtol = rtol
        self.atol = atol
        self.step_size = step_size
        self.norm = norm
        self.driver = driver
        self.driver_reason = driver_reason

    @property
    def options(self) -> dict:
        """``method``, ``rtol``, ``atol``, ``step_size``, ``norm`` as a dict."""
        return {"method": self.method, "rtol": self.rtol, "atol": self.atol,
                "step_size": self.step_size, "norm": self.norm}

    def __call__(self, tq):
        if self.dense is None:
            raise ValueError("this Solution has no dense output; solve with `dense_output=True`")
        return self.dense(tq)

    def __repr__(self) -> str:
        return (f"Solution(method={self.method!r}, n_t={len(self.t)}, "
                f"nfe={self.stats['nfe']}, accepted={self.stats['n_accepted']}, "
                f"rejected={self.stats['n_rejected']}, driver={self.driver!r})")
