"""Butcher tableaux as validated data.

A tableau is written once, exactly (``fractions.Fraction``) where its coefficients are rational,
and checks its own identities on construction. One generic stepper runs every tableau.

Conventions
-----------
Stages ``k_i = f(t + c_i h, y + h sum_{j<i} a_ij k_j)``, ``i = 0 .. s-1``; the step is
``y1 = y + h sum_i b_i k_i``. ``b_err`` stores the error combination ``b - b_hat`` directly, so the
local error estimate is ``h sum_i b_err_i k_i``. A method is FSAL when its last stage is evaluated
at ``(t + h, y1)`` (``c[-1] == 1`` and ``a[-1] == b``): that stage is the next step's first.

Dense output (scipy's convention): with stage matrix ``K`` (``s_total x dim``) and the method's
matrix ``P`` (``s_total x degree``), ``y(t + theta h) = y + h (K.T @ P) @ [theta, theta^2, ...]``.
``s_total = s + len(dense_c)``: methods whose continuous extension needs extra stages (dop853)
declare them in ``dense_c``/``dense_a`` (rows over all earlier stages); they are evaluated only
when dense output is requested. Without ``P`` the stepper uses cubic Hermite (``dense_order`` 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property

import numpy as np

__all__ = ["ButcherTableau"]

Number = Fraction | float | int

_TOL = 1e-13  # tolerance for identities of float-valued (irrational) tableaux


def _close(x: Number, y: Number, scale: float = 1.0) -> bool:
    if isinstance(x, Fraction) and isinstance(y, Fraction):
        return x == y
    return abs(float(x) - float(y)) <= _TOL * max(1.0, scale)


@dataclass(frozen=True, eq=False)
class ButcherTableau:
    """An explicit Runge-Kutta method.

    Parameters
    ----------
    name : str
        Registry name (``"dopri5"``).
    c, a, b : sequences
        Nodes (length s), strictly lower stage matrix given as rows of length ``i`` for stage
        ``i``, and weights (length s).
    order : int
        Classical order p of ``b``.
    b_err : sequence, optional
        ``b - b_hat`` for adaptive methods (``sum(b_err) == 0``).
    error_order : int, optional
        Order of the embedded solution ``b_hat``; the controller's exponent is
        ``1 / (error_order + 1)``.
    b_err_low : sequence, optional
        A second, lower-order error combination (dop853's 3rd-order estimator), combined as in
        Hairer's DOP853: ``err = e5^2 / sqrt(e5^2 + 0.01 e3^2)``.
    dense : sequence of rows, optional
        ``P`` (``s_total x degree``), see module docstring.
    dense_order : int
        Local order q of the continuous extension (3 for the cubic Hermite fallback).
    dense_c, dense_a : sequences, optional
        Extra stages needed only by the continuous extension.
    provenance : str
        Where the coefficients come from (paper, table).
    """

    name: str
    c: Sequence[Number]
    a: Sequence[Sequence[Number]]
    b: Sequence[Number]
    order: int
    b_err: Sequence[Number] | None = None
    error_order: int | None = None
    b_err_low: Sequence[Number] | None = None
    dense: Sequence[Sequence[Number]] | None = None
    dense_order: int = 3
    dense_c: Sequence[Number] = ()
    dense_a: Sequence[Sequence[Number]] = ()
    provenance: str = ""
    aliases: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        s = len(self.c)
        if s == 0 or len(self.b) != s or len(self.a) != s:
            raise ValueError(f"{self.name}: `c`, `a` and `b` must describe the same number (>= 1) of "
                             f"stages; got {s}, {len(self.a)} and {len(self.b)}")
        if self.order < 1:
            raise ValueError(f"{self.name}: `order` must be >= 1, got {self.order}")
        for i, row in enumerate(self.a):
            if len(row) != i:
                raise ValueError(f"{self.name}: row {i} of `a` must have {i} entries (explicit method), "
                                 f"got {len(row)}")
            if not _close(sum(row, Fraction(0)) if row else 0, self.c[i], 1.0):
                raise ValueError(f"{self.name}: row sum of a[{i}] != c[{i}] = {self.c[i]}")
        if not _close(sum(self.b, Fraction(0)), 1):
            raise ValueError(f"{self.name}: sum(b) != 1")
        if self.b_err is not None:
            if len(self.b_err) != s:
                raise ValueError(f"{self.name}: `b_err` must have {s} entries, got {len(self.b_err)}")
            if not _close(sum(self.b_err, Fraction(0)), 0):
                raise ValueError(f"{self.name}: sum(b_err) != 0 (`b_err` stores b - b_hat)")
            if self.error_order is None or self.error_order < 1:
                raise ValueError(f"{self.name}: adaptive methods must state error_order >= 1")
        elif self.error_order is not None or self.b_err_low is not None:
            raise ValueError(f"{self.name}: `error_order` and `b_err_low` need `b_err`")
        if self.b_err_low is not None:
            if len(self.b_err_low) != s:
                raise ValueError(f"{self.name}: `b_err_low` must have {s} entries, got {len(self.b_err_low)}")
            if not _close(sum(self.b_err_low, Fraction(0)), 0):
                raise ValueError(f"{self.name}: sum(b_err_low) != 0")
        if len(self.dense_c) != len(self.dense_a):
            raise ValueError(f"{self.name}: `dense_c` and `dense_a` differ in length "
                             f"({len(self.dense_c)} and {len(self.dense_a)})")
        if self.dense_c and self.dense is None:
            raise ValueError(f"{self.name}: extra stages `dense_c` given without a dense matrix `dense`")
        for j, row in enumerate(self.dense_a):
            if len(row) != s + j:
                raise ValueError(f"{self.name}: dense_a[{j}] must have {s + j} entries, got {len(row)}")
            if not _close(sum(row, Fraction(0)), self.dense_c[j]):
                raise ValueError(f"{self.name}: row sum of dense_a[{j}] != dense_c[{j}] = {self.dense_c[j]}")
        if self.dense_order < 1:
            raise ValueError(f"{self.name}: `dense_order` must be >= 1, got {self.dense_order}")
        if self.dense is not None:
            if len(self.dense) != s + len(self.dense_c):
                raise ValueError(f"{self.name}: `dense` must have one row per stage (incl. extra): "
                                 f"{s + len(self.dense_c)}, got {len(self.dense)}")
            degree = len(self.dense[0])
            if degree < 1 or any(len(row) != degree for row in self.dense):
                raise ValueError(f"{self.name}: rows of `dense` must all have the same length >= 1")
            # the interpolant must end at y1: row i of P sums to b_i (0 for the extra stages)
            for i, row in enumerate(self.dense):
                bi = self.b[i] if i < s else 0
                if not _close(sum(row, Fraction(0)), bi, 10.0):
                    raise ValueError(f"{self.name}: dense row {i} does not sum to b[{i}]")

    # -- derived attributes -------------------------------------------------------------------
    @property
    def stages(self) -> int:
        """Number of stages s of one step (an FSAL stage counted)."""
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_err is not None

    @cached_property
    def fsal(self) -> bool:
        """True if the last stage is ``f(t + h, y1)``, reused as the next step's first."""
        last = self.a[-1]
        return (self.stages > 1 and _close(self.c[-1], 1)
                and all(_close(x, y) for x, y in zip(last, self.b[:-1], strict=True))
                and _close(self.b[-1], 0))

    @property
    def new_evals_per_step(self) -> int:
        """f evaluations per step after the first (FSAL saves one)."""
        return self.stages - 1 if self.fsal else self.stages

    # float64 arrays shared by every driver (numba and array-API alike)
    @cached_property
    def A(self) -> np.ndarray:
        s = self.stages + len(self.dense_c)
        A = np.zeros((s, s))
        for i, row in enumerate(list(self.a) + list(self.dense_a)):
            A[i, : len(row)] = [float(x) for x in row]
        return A

    @cached_property
    def C(self) -> np.ndarray:
        return np.array([float(x) for x in list(self.c) + list(self.dense_c)])

    @cached_property
    def B(self) -> np.ndarray:
        return np.array([float(x) for x in self.b])

    @cached_property
    def E(self) -> np.ndarray | None:
        return None if self.b_err is None else np.array([float(x) for x in self.b_err])

    @cached_property
    def E_low(self) -> np.ndarray | None:
        return None if self.b_err_low is None else np.array([float(x) for x in self.b_err_low])

    @cached_property
    def P(self) -> np.ndarray | None:
        if self.dense is None:
            return None
        return np.array([[float(x) for x in row] for row in self.dense])

    def __repr__(self) -> str:
        kind = f"adaptive {self.order}({self.error_order})" if self.adaptive else f"fixed, order {self.order}"
        return (f"<ButcherTableau {self.name}: {kind}, {self.stages} stages, fsal={self.fsal}, "
                f"dense_order={self.dense_order}>")
