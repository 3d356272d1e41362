"""The DETEST nonstiff test set (Hull, Enright, Fellen & Sedgwick 1972) as torch vector fields.

Twenty-five problems in five classes, each on t in [0, 20] as in the paper:

* A1-A5: single equations (decay, ``y' = -y^3/2``, ``y' = y cos t``, logistic, ``(y - t)/(y + t)``);
* B1-B5: small systems (Lotka-Volterra, a linear chain, a nonlinear chain, a helix-like orbit
  with ``r = sqrt(y1^2 + y2^2)``, Euler's rigid body);
* C1-C5: moderate systems (radioactive decay chains of 10 equations, the discrete heat
  equation with 10 and 51 points, the five outer planets about the sun: 30 equations,
  heliocentric, with the masses and initial data of Hairer, Lubich & Wanner's outer solar
  system, which are DETEST's);
* D1-D5: Kepler orbits of eccentricity 0.1, 0.3, 0.5, 0.7, 0.9 from perihelion;
* E1-E5: second-order equations as systems (Bessel of order 1/2, van der Pol with mu = 1,
  Duffing-type with forcing, a falling body with quadratic drag, a pursuit curve).

``PROBLEMS[name] = (func, y0)`` with ``func(t, y)`` torchdiffeq's call shape, y0 float64 CPU.
"""

from __future__ import annotations

import math

import torch

T_END = 20.0
DT = torch.float64


def _t(values):
    return torch.tensor(values, dtype=DT)


def _chain(n, lower, diag, last):
    """Tridiagonal-style constant matrices of classes B and C."""
    A = torch.zeros(n, n, dtype=DT)
    for i in range(n):
        A[i, i] = diag(i)
        if i > 0:
            A[i, i - 1] = lower(i)
    A[n - 1, n - 1] = last
    return A


# -- class A ------------------------------------------------------------------------------------
def a1(t, y):
    return -y


def a2(t, y):
    return -0.5 * y ** 3


def a3(t, y):
    return y * torch.cos(t)


def a4(t, y):
    return 0.25 * y * (1.0 - y / 20.0)


def a5(t, y):
    return (y - t) / (y + t)


# -- class B ------------------------------------------------------------------------------------
def b1(t, y):
    p = y[0] * y[1]
    return torch.stack([2.0 * (y[0] - p), -(y[1] - p)])


_B2 = _t([[-1.0, 1.0, 0.0], [1.0, -2.0, 1.0], [0.0, 1.0, -1.0]])


def b2(t, y):
    return _B2 @ y


def b3(t, y):
    s = y[1] * y[1]
    return torch.stack([-y[0], y[0] - s, s])


def b4(t, y):
    r = torch.sqrt(y[0] * y[0] + y[1] * y[1])
    return torch.stack([-y[1] - y[0] * y[2] / r, y[0] - y[1] * y[2] / r, y[0] / r])


def b5(t, y):
    return torch.stack([y[1] * y[2], -y[0] * y[2], -0.51 * y[0] * y[1]])


# -- class C ------------------------------------------------------------------------------------
_C1 = _chain(10, lambda i: 1.0, lambda i: -1.0, 0.0)
_C2 = _chain(10, lambda i: float(i), lambda i: -float(i + 1), 0.0)


def _heat(n):
    A = -2.0 * torch.eye(n, dtype=DT)
    idx = torch.arange(n - 1)
    A[idx, idx + 1] = 1.0
    A[idx + 1, idx] = 1.0
    return A


_C3, _C4 = _heat(10), _heat(51)


def c1(t, y):
    return _C1 @ y


def c2(t, y):
    return _C2 @ y


def c3(t, y):
    return _C3 @ y


def c4(t, y):
    return _C4 @ y


K2 = 2.95912208286e-4
M0 = 1.00000597682
M = _t([0.000954786104043, 0.000285583733151, 0.0000437273164546, 0.0000517759138449,
        0.00000277777777778])
Q0 = [[3.42947415189, 3.35386959711, 1.35494901715],
      [6.64145542550, 5.97156957878, 2.18231499728],
      [11.2630437207, 14.6952576794, 6.27960525067],
      [-30.1552268759, 1.65699966404, 1.43785752721],
      [-21.1238353380, 28.4465098142, 15.3882659679]]
V0 = [[-0.557160570446, 0.505696783289, 0.230578543901],
      [-0.415570776342, 0.365682722812, 0.169143213293],
      [-0.325325669158, 0.189706021964, 0.0877265322780],
      [-0.0240476254170, -0.287659532608, -0.117219543175],
      [-0.176860753121, -0.216393453025, -0.0148647893090]]
_EYE5 = torch.eye(5, dtype=torch.bool)


def c5(t, y):
    q, v = y[:15].reshape(5, 3), y[15:]
    r3 = (q * q).sum(1) ** 1.5                       # |q_i|^3
    diff = q[None, :, :] - q[:, None, :]              # q_j - q_i
    d3 = ((diff * diff).sum(2) ** 1.5).masked_fill(_EYE5, 1.0)
    w = (M[None, :] / d3).masked_fill(_EYE5, 0.0)     # m_j / d_ij^3
    mj = M[None, :].masked_fill(_EYE5, 0.0)
    acc = (-(M0 + M)[:, None] * q / r3[:, None] + (w[:, :, None] * diff).sum(1)
           - (mj[:, :, None] * (q / r3[:, None])[None, :, :]).sum(1))
    return torch.cat([v, K2 * acc.reshape(-1)])


# -- class D ------------------------------------------------------------------------------------
def kepler(t, y):
    r3 = (y[0] * y[0] + y[1] * y[1]) ** 1.5
    return torch.stack([y[2], y[3], -y[0] / r3, -y[1] / r3])


def _kepler_y0(e):
    return _t([1.0 - e, 0.0, 0.0, math.sqrt((1.0 + e) / (1.0 - e))])


# -- class E ------------------------------------------------------------------------------------
def e1(t, y):
    s = t + 1.0
    return torch.stack([y[1], -(y[1] / s + (1.0 - 0.25 / (s * s)) * y[0])])


def e2(t, y):
    return torch.stack([y[1], (1.0 - y[0] * y[0]) * y[1] - y[0]])


def e3(t, y):
    return torch.stack([y[1], y[0] ** 3 / 6.0 - y[0] + 2.0 * torch.sin(2.78535 * t)])


def e4(t, y):
    return torch.stack([y[1], 0.032 - 0.4 * y[1] * y[1]])


def e5(t, y):
    return torch.stack([y[1], torch.sqrt(1.0 + y[1] * y[1]) / (25.0 - t)])


def _unit(n):
    y = torch.zeros(n, dtype=DT)
    y[0] = 1.0
    return y


PROBLEMS = {
    "A1": (a1, _t([1.0])), "A2": (a2, _t([1.0])), "A3": (a3, _t([1.0])),
    "A4": (a4, _t([1.0])), "A5": (a5, _t([4.0])),
    "B1": (b1, _t([1.0, 3.0])), "B2": (b2, _t([2.0, 0.0, 1.0])), "B3": (b3, _t([1.0, 0.0, 0.0])),
    "B4": (b4, _t([3.0, 0.0, 0.0])), "B5": (b5, _t([0.0, 1.0, 1.0])),
    "C1": (c1, _unit(10)), "C2": (c2, _unit(10)), "C3": (c3, _unit(10)), "C4": (c4, _unit(51)),
    "C5": (c5, torch.cat([_t(Q0).reshape(-1), _t(V0).reshape(-1)])),
    **{f"D{i + 1}": (kepler, _kepler_y0(e)) for i, e in enumerate((0.1, 0.3, 0.5, 0.7, 0.9))},
    "E1": (e1, _t([0.6713967071418030, 0.09540051444747446])), "E2": (e2, _t([2.0, 0.0])),
    "E3": (e3, _t([0.0, 0.0])), "E4": (e4, _t([30.0, 0.0])), "E5": (e5, _t([0.0, 0.0])),
}
