"""Step-size control: the controller decides, the driver drives.

A controller owns its settings and its memory. The driver calls :meth:`~PIController.start`
when a solve starts, telling it the method's error order and the step bounds; ``start`` returns
a fresh copy whose memory belongs to that solve (so one controller may configure many solves).
The running copy proposes each step (:meth:`propose`) and decides on it (:meth:`decide`)
through the scalar kernels of :mod:`gqlib.integrate._policy`, which the numba driver calls
compiled.

PI control (Gustafsson 1991; Hairer, Norsett & Wanner II, IV.2)::

    factor = SAFETY * err**(-beta1) * err_prev**beta2,   clipped to [MIN_FACTOR, MAX_FACTOR]

with ``k = error_order + 1`` and, unless given, ``beta1 = 1/k - 0.75 * beta2`` (Hairer's DOPRI5
relation). After a rejection the step may not grow (Hairer's rule).

The default integral gain is ``beta2 = 0``: the I controller of scipy.integrate and torchdiffeq
(Hairer's DOPRI5 code uses ``beta2 = 0.04``). Measured on the Arenstorf orbit (dopri5,
rtol = atol): beta2 = 0 gives scipy RK45's NFE and error exactly (1004 NFE / 1.6e-2 at 1e-6,
3056 / 2.6e-5 at 1e-9), while beta2 = 0.04 gives 1004 / 3.8e-2 and 3206 / 1.9e-5: no better per
evaluation, and matching torchdiffeq's controller keeps NFE comparable for users who switch.
Pass ``PIController(beta2=0.04)`` for Hairer's gains.
"""

from __future__ import annotations

import copy
import math

from .._jit import plain
from ._policy import (
    ERR_PREV_INIT,
    clamp_step,
    constant_decide,
    constant_propose,
    pi_decide,
    pi_factor,
    pi_propose,
)

__all__ = ["PIController", "ConstantStep", "SAFETY", "MIN_FACTOR", "MAX_FACTOR", "PI_BETA",
           "pi_factor"]

SAFETY = 0.9       # shrink the optimal step a little so most steps are accepted (HNW I, II.4)
MIN_FACTOR = 0.2   # never shrink by more than 5x in one go (HNW I, (4.13))
MAX_FACTOR = 10.0  # never grow by more than 10x in one go (scipy.integrate uses 10 too)
PI_BETA = 0.0      # integral gain beta2 (Hairer's DOPRI5 uses 0.04); 0 is the classic I controller

# the kernels as plain Python (``.py_func`` with the kernels they call plain too)
_clamp_step, _pi_propose, _pi_decide = plain(clamp_step), plain(pi_propose), plain(pi_decide)
_constant_propose, _constant_decide = plain(constant_propose), plain(constant_decide)


class PIController:
    """Proportional-integral step-size controller (adaptive mode).

    The next step is ``|h| * factor`` with ``factor = safety * err^(-beta1) * err_prev^beta2``
    clipped to ``[min_factor, max_factor]`` (no growth right after a rejection), then clamped to
    ``[min_step, max_step]``; a step is accepted when its scaled error norm ``err <= 1``.

    Parameters
    ----------
    safety : float
        In (0, 1]; default 0.9.
    min_factor, max_factor : float
        Bounds on the factor, ``0 < min_factor <= 1 <= max_factor``; defaults 0.2 and 10.
    beta1 : float, optional
        Exponent of the current error; default ``1 / (error_order + 1) - 0.75 * beta2``, set when
        the solve starts and tells the controller the method's error order.
    beta2 : float
        Exponent of the previous accepted error (integral gain); default 0, the I controller of
        scipy and torchdiffeq. Hairer's DOPRI5 uses 0.04.
    shrink_after_accept : bool
        Whether an accepted step may be followed by a smaller one (default True, as scipy and
        Hairer's codes do). False keeps the step size after an accepted step whose factor is
        below 1, as torchdiffeq and diffrax do (gqlib.torch's default, for the same steps).
        The drivers read it as ``min_accept_factor``: the least factor after an accepted step
        (``min_factor``, or 1).

    Examples
    --------
    >>> import numpy as np, gqlib
    >>> sol = gqlib.solve(lambda t, y: -y, np.array([1.0]), [0.0, 1.0], method="dop853",
    ...                   controller=gqlib.PIController(safety=0.8))
    >>> bool(abs(sol.y[-1, 0] - np.exp(-1.0)) < 1e-7)
    True
    """

    estimates_error = True  # the driver must compute an embedded error estimate

    def __init__(self, *, safety: float = SAFETY, min_factor: float = MIN_FACTOR,
                 max_factor: float = MAX_FACTOR, beta1: float | None = None,
                 beta2: float = PI_BETA, shrink_after_accept: bool = True):
        for name, v in (("safety", safety), ("min_factor", min_factor),
                        ("max_factor", max_factor), ("beta2", beta2)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise TypeError(f"`{name}` must be a finite real number, got {v!r}")
        if beta1 is not None and (isinstance(beta1, bool) or not isinstance(beta1, (int, float))
                                  or not math.isfinite(beta1)):
            raise TypeError(f"`beta1` must be a finite real number or None, got {beta1!r}")
        if not (0 < safety <= 1):
            raise ValueError(f"`safety` must be in (0, 1], got {safety}")
        if not (0 < min_factor <= 1 <= max_factor):
            raise ValueError("`min_factor` must be in (0, 1] and `max_factor` >= 1, "
                             f"got {min_factor} and {max_factor}")
        if not isinstance(shrink_after_accept, bool):
            raise TypeError(f"`shrink_after_accept` must be a bool, got {shrink_after_accept!r}")
        self.safety = float(safety)
        self.min_factor = float(min_factor)
        self.shrink_after_accept = shrink_after_accept
        self.min_accept_factor = self.min_factor if shrink_after_accept else 1.0
        self.max_factor = float(max_factor)
        self.beta2 = float(beta2)
        self._beta1 = None if beta1 is None else float(beta1)
        # set by start(): the method's error order, the step bounds, the memory
        self.error_order: int | None = None
        self.beta1: float | None = self._beta1
        self.min_step, self.max_step = 0.0, math.inf
        self.err_prev, self.after_reject, self.n_bad = ERR_PREV_INIT, False, 0

    def __repr__(self) -> str:
        return (f"PIController(safety={self.safety}, min_factor={self.min_factor}, "
                f"max_factor={self.max_factor}, beta1={self._beta1}, beta2={self.beta2}, "
                f"shrink_after_accept={self.shrink_after_accept})")

    def start(self, error_order: int | None, *, min_step: float = 0.0,
              max_step: float = math.inf) -> PIController:
        """A copy for one solve: told the method's error order, memory reset."""
        if error_order is None:
            raise ValueError("a PIController needs a method with an error estimate (give "
                             "`step_size` for fixed-step mode)")
        run = copy.copy(self)
        run.error_order = int(error_order)
        k = run.error_order + 1
        run.beta1 = 1.0 / k - 0.75 * self.beta2 if self._beta1 is None else self._beta1
        run.min_step, run.max_step = float(min_step), float(max_step)
        run.err_prev, run.after_reject, run.n_bad = ERR_PREV_INIT, False, 0
        return run

    def clamp(self, h: float) -> float:
        """``|h|`` clamped to ``[min_step, max_step]`` (the first step)."""
        return _clamp_step(abs(h), self.min_step, self.max_step)

    def propose(self, h_ctrl: float, t0: float, target: float, d: float) -> tuple[float, bool]:
        """The step to attempt from ``t0`` towards ``target``: ``(h, landing)``, with ``h`` the
        step ``t0 + h`` really takes."""
        return _pi_propose(h_ctrl, t0, target, d)

    def decide(self, err: float, h: float, h_ctrl: float, landing: bool, t0: float,
               target: float = math.inf) -> tuple[bool, int, float]:
        """``(accept, status, |h_next|)`` for an attempted step ``h`` from ``t0`` towards the
        landing point ``target`` with scaled error norm ``err``; updates the memory."""
        accept, status, hnew, self.err_prev, self.after_reject, self.n_bad = _pi_decide(
            err, h, h_ctrl, landing, t0, self.err_prev, self.after_reject, self.n_bad, self.safety,
            self.min_factor, self.max_factor, self.min_accept_factor, self.beta1, self.beta2,
            self.min_step,
            self.max_step, self.error_order, target)
        return accept, status, hnew


class ConstantStep:
    """Fixed-step mode: each interval between landing points is cut into equal steps no longer
    than ``step_size`` (:func:`~gqlib.integrate._policy.substep_count`); a step is accepted when
    the new state is finite."""

    estimates_error = False
    min_step = 0.0

    def __init__(self, step_size: float):
        self.step_size = float(step_size)

    def __repr__(self) -> str:
        return f"ConstantStep({self.step_size})"

    def start(self, error_order: int | None = None, *, min_step: float = 0.0,
              max_step: float = math.inf) -> ConstantStep:
        return self  # no memory

    def clamp(self, h: float) -> float:
        return self.step_size

    def propose(self, h_ctrl: float, t0: float, target: float, d: float) -> tuple[float, bool]:
        return _constant_propose(self.step_size, t0, target)

    def decide(self, err: float, h: float, h_ctrl: float, landing: bool, t0: float,
               target: float = math.inf) -> tuple[bool, int, float]:
        """``err`` is 0 when the new state is finite."""
        accept, status = _constant_decide(err == 0.0, h)
        return accept, status, self.step_size
