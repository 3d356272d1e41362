r"""Fixed-step SDE methods as data: capabilities, provenance and a generic step.

Each :class:`SDEMethod` states the SDE interpretation it solves (``sde_type``), its strong order for
commutative noise and in general, and the noise capabilities it requires (``requires``, attributes of
a :class:`NoiseType`); :func:`sdeint` checks them up front (torchsde's convention). The step acts on
a state tuple whose first entry is y (reversible Heun carries more), and is written once against the
array API so it runs on NumPy and torch arrays; the numba kernels in ``_kernels.py`` repeat the same
formulas for jitted NumPy problems (a parity test holds them together).

Notation: ``f = drift``, ``g = diffusion``, ``g.dW`` the noise product (elementwise, or ``g @ dW`` for
general noise), ``h`` the step, ``dW = W(t + h) - W(t)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ._conversion import diffusion_correction
from ._noise_types import CAPABILITIES, NOISE_TYPES, NoiseType

__all__ = ["SDEMethod", "SDE_METHODS", "get_sde_method", "check_supports"]


class StepContext:
    """What a step needs besides the state: the SDE, how to multiply noise, output checks.

    Every drift and diffusion output is compared with the first one's shape and dtype (a tuple and
    a dtype comparison per call): a later change would otherwise be broadcast into the state.
    """

    def __init__(self, drift: Callable, diffusion: Callable, noise: NoiseType, f0: Any, g0: Any,
                 diffusion_jacobian: Callable | None = None, xp: Any = None):
        self.drift = drift
        self.diffusion = diffusion
        self.noise = noise
        self.diffusion_jacobian = diffusion_jacobian
        self.xp = xp
        self._f_spec = (f0.shape, f0.dtype)
        self._g_spec = (g0.shape, g0.dtype)

    def f(self, t, y):
        out = self.drift(t, y)
        if (out.shape, out.dtype) != self._f_spec:
            _changed("drift", out, self._f_spec, t)
        return out

    def g(self, t, y):
        out = self.diffusion(t, y)
        if (out.shape, out.dtype) != self._g_spec:
            _changed("diffusion", out, self._g_spec, t)
        return out

    def prod(self, g, dw):
        return self.noise.product(g, dw, self.xp)


def _changed(name: str, out: Any, spec: tuple, t: float):
    raise ValueError(f"`{name}` returned shape {tuple(out.shape)} and dtype {out.dtype} at t = {t!r}; "
                     f"at the first call it returned shape {tuple(spec[0])} and dtype {spec[1]}. "
                     "Outputs must keep the shape and dtype the first call checked.")


@dataclass(frozen=True)
class SDEMethod:
    """A fixed-step SDE method.

    Attributes
    ----------
    name : str
    sde_type : {"ito", "stratonovich"}
        The calculus whose solution the method converges to.
    strong_order : float
        Strong order for commutative noise (diagonal noise with ``g_i`` depending on ``y_i`` only,
        scalar noise, additive noise).
    strong_order_general : float
        Strong order for general (non-commutative) noise.
    requires : frozenset of str
        Capabilities (attributes of :class:`NoiseType`, see ``CAPABILITIES``) the noise must have.
    reference : str
    """

    name: str
    sde_type: str
    strong_order: float
    strong_order_general: float
    requires: frozenset
    reference: str
    _init: Callable = field(repr=False, compare=False)
    _step: Callable = field(repr=False, compare=False)

    def supports(self, noise: NoiseType) -> bool:
        """Whether the noise structure has every capability the method requires."""
        return not noise.missing(self.requires)

    @property
    def noise_types(self) -> frozenset:
        """Names of the registered noise structures the method supports."""
        return frozenset(n for n, nt in NOISE_TYPES.items() if self.supports(nt))

    def init(self, ctx: StepContext, t0: float, y0: Any, f0: Any, g0: Any) -> tuple:
        """Initial state from ``y0`` and the first evaluations ``f0 = f(t0, y0)``, ``g0 = g(t0, y0)``."""
        return self._init(ctx, t0, y0, f0, g0)

    def step(self, ctx: StepContext, state: tuple, t: float, h: float, dw: Any) -> tuple:
        """Advance the state from ``t`` to ``t + h`` with the Brownian increment ``dw``."""
        return self._step(ctx, state, t, h, dw)


def _init_y(ctx, t0, y0, f0, g0):
    return (y0,)


def _euler_maruyama(ctx, state, t, h, dw):
    (y,) = state
    return (y + ctx.f(t, y) * h + ctx.prod(ctx.g(t, y), dw),)


def _milstein(ctx, state, t, h, dw):
    # y1 = y + f h + g.dW + 1/2 c (dW^2 - h),  c^i = sum_k g^k d_k g^i (diagonal: g_i d_i g_i).
    # Without a Jacobian, c comes from the derivative-free supporting value
    # y_hat = y + f h + g sqrt(h):  c ~ (g(y_hat) - g(y)) / sqrt(h)  (Kloeden & Platen 11.1.7),
    # which keeps strong order 1 for commutative noise.
    (y,) = state
    f0 = ctx.f(t, y)
    g0 = ctx.g(t, y)
    if ctx.diffusion_jacobian is not None:
        c = diffusion_correction(t, y, g0, ctx.diffusion, ctx.noise, ctx.diffusion_jacobian)
    else:
        sq = math.sqrt(h)
        c = (ctx.g(t, y + f0 * h + g0 * sq) - g0) / sq
    return (y + f0 * h + g0 * dw + 0.5 * c * (dw * dw - h),)


def _euler_heun(ctx, state, t, h, dw):
    (y,) = state
    g0dw = ctx.prod(ctx.g(t, y), dw)
    y_pred = y + g0dw
    return (y + ctx.f(t, y) * h + 0.5 * (g0dw + ctx.prod(ctx.g(t + h, y_pred), dw)),)


def _midpoint(ctx, state, t, h, dw):
    (y,) = state
    th = t + 0.5 * h
    y_mid = y + 0.5 * (ctx.f(t, y) * h + ctx.prod(ctx.g(t, y), dw))
    return (y + ctx.f(th, y_mid) * h + ctx.prod(ctx.g(th, y_mid), dw),)


def _init_reversible_heun(ctx, t0, y0, f0, g0):
    return (y0, y0, f0, g0)


def _reversible_heun(ctx, state, t, h, dw):
    # Kidger, Foster, Li, Lyons (2021), Algorithm 1: state (y, y_hat, f(y_hat), g(y_hat)); one drift
    # and one diffusion evaluation per step, algebraically reversible.
    y, y_hat, f0, g0 = state
    y_hat1 = 2.0 * y - y_hat + f0 * h + ctx.prod(g0, dw)
    f1 = ctx.f(t + h, y_hat1)
    g1 = ctx.g(t + h, y_hat1)
    y1 = y + 0.5 * (f0 + f1) * h + 0.5 * (ctx.prod(g0, dw) + ctx.prod(g1, dw))
    return (y1, y_hat1, f1, g1)


_ALL = frozenset()
# Milstein's term 1/2 c (dW^2 - h) holds the iterated integrals I_jj only: no Levy areas.
_ELEMENTWISE = frozenset({"elementwise"})

SDE_METHODS: dict[str, SDEMethod] = {
    m.name: m
    for m in (
        SDEMethod("euler_maruyama", "ito", 0.5, 0.5, _ALL,
                  "Kloeden & Platen (1992), 10.2", _init_y, _euler_maruyama),
        SDEMethod("milstein", "ito", 1.0, 0.5, _ELEMENTWISE,
                  "Kloeden & Platen (1992), 10.3 and 11.1 (derivative-free)", _init_y, _milstein),
        SDEMethod("euler_heun", "stratonovich", 1.0, 0.5, _ALL,
                  "Kloeden & Platen (1992), 11.1; torchsde's euler_heun", _init_y, _euler_heun),
        SDEMethod("midpoint", "stratonovich", 1.0, 0.5, _ALL,
                  "Burrage, Burrage & Tian (2004); torchsde's midpoint", _init_y, _midpoint),
        SDEMethod("reversible_heun", "stratonovich", 1.0, 0.5, _ALL,
                  "Kidger, Foster, Li & Lyons (2021), Algorithm 1", _init_reversible_heun,
                  _reversible_heun),
    )
}


def get_sde_method(method: Any) -> SDEMethod:
    """Look up ``method`` (a name or an :class:`SDEMethod`); unknown names raise, listing the valid ones."""
    if isinstance(method, SDEMethod):
        return method
    if isinstance(method, str) and method in SDE_METHODS:
        return SDE_METHODS[method]
    raise ValueError(f"unknown `method` {method!r}; valid: {', '.join(sorted(SDE_METHODS))}.")


def check_supports(meth: SDEMethod, noise: NoiseType) -> None:
    """Raise ValueError naming both sides if ``noise`` lacks a capability ``meth`` requires."""
    missing = noise.missing(meth.requires)
    if not missing:
        return
    why = "; ".join(f"{c}: {CAPABILITIES.get(c, c)}" for c in missing)
    alts = sorted(n for n, m in SDE_METHODS.items()
                  if m.sde_type == meth.sde_type and m.supports(noise))
    raise ValueError(f"method {meth.name!r} supports noise types "
                     f"{', '.join(sorted(meth.noise_types))} but `noise_type` is {noise.name!r} "
                     f"({type(noise).__name__}), which lacks {why}; use one of "
                     f"{', '.join(alts) or 'no registered method'}.")
