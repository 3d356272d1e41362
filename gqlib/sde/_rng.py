"""Counter-based normal draws: each value is a pure function of (key, node, element).

The Brownian tree needs, for every tree node and every state element, one standard normal that does
not depend on which other nodes were visited. A stateful generator cannot give that; a hash can. We use
the splitmix64 finaliser (Steele, Lea, Flood 2014; the mixer of Java's ``SplittableRandom``), a
bijection on 64-bit words with full avalanche, chained over the counters

    h = mix(mix(key ^ mix(node + C1)) ^ mix(element + C2)),

then two 53-bit uniforms ``mix(h + 1)``, ``mix(h + 2)`` and the Box-Muller cosine branch. Box-Muller is
exact in distribution (no tail truncation beyond the 2**-53 grid of ``u1``: |z| <= 8.57).

Under ``GQLIB_DISABLE_JIT`` the same code runs on NumPy ``uint64`` scalars; callers wrap it in
``np.errstate(over="ignore")`` because wrap-around multiplication is the point.
"""

from __future__ import annotations

import math

import numpy as np

from gqlib._jit import jit

__all__ = ["seed_key", "normal"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_C_NODE = np.uint64(0x632BE59BD9B4E019)
_C_ELEM = np.uint64(0x8CB92BA72F3D8DD7)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_ONE = np.uint64(1)
_TWO = np.uint64(2)
_TWO_M53 = 2.0**-53
_TWO_PI = 2.0 * math.pi


@jit
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@jit
def normal(key, node, elem):
    """Standard normal for (``key``, ``node``, ``elem``), all ``uint64``."""
    h = _mix(_mix(key ^ _mix(node + _C_NODE)) ^ _mix(elem + _C_ELEM))
    u1 = (float(_mix(h + _ONE) >> _S11) + 1.0) * _TWO_M53  # in (0, 1]: log is finite
    u2 = float(_mix(h + _TWO) >> _S11) * _TWO_M53
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)


def seed_key(seed: int) -> np.uint64:
    """Scramble a user seed (any Python int, reduced mod 2**64) into the tree key."""
    z = (int(seed) + int(_GOLDEN)) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * int(_M1)) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * int(_M2)) & 0xFFFFFFFFFFFFFFFF
    return np.uint64(z ^ (z >> 31))
