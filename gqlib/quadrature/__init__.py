"""Gauss-Legendre quadrature for any n: nodes and weights to the last ulp in O(n).

``gauss_legendre(n, a, b)`` returns the n-point rule on ``[a, b]``, exact for polynomials of
degree ``2n - 1``. The algorithm is split by regime (FastGaussQuadrature.jl's layout, Bogaert's
formulas):

========================  ==================================================================
``n <= 3``                closed forms (``CLOSED_FORM_MAX``)
``3 < n <= 100``          Newton on the three-term recurrence from asymptotic starting
                          guesses, finished in double-double; O(n^2), cached (``NEWTON_MAX``)
``n > 100``               Bogaert's (2014) iteration-free asymptotic formulas, O(1) per node,
                          numba-compiled; the O(v^6) terms (v = 1/(n + 1/2)) are dropped from
                          n = 1000 and the O(v^4) terms from n = 10^5, where they fall below
                          1e-19; parallel over node pairs from ``n = 10^4`` (``PARALLEL_MIN``)
========================  ==================================================================

Rules with ``n <= 4096`` (``CACHE_MAX``) are cached per (n, dtype). Nodes are within 1 ulp
(absolute) of the exact zeros and weights within a few ulps (relative) for all n; on ``[-1, 1]``
the nodes are exactly antisymmetric and the weights exactly symmetric.

Also here: :func:`map_to_interval` (affine map of a rule on ``[-1, 1]``), :func:`composite`
(a rule per interval of a partition) and :func:`integrate` (``sum w f(t)`` for vectorised f).
"""

from gqlib.quadrature._gauss_legendre import (
                                              CACHE_MAX,
                                              CLOSED_FORM_MAX,
                                              NEWTON_MAX,
                                              PARALLEL_MIN,
                                              gauss_legendre,
)
from gqlib.quadrature._rules import composite, integrate, map_to_interval

__all__ = ["gauss_legendre", "map_to_interval", "composite", "integrate", "CLOSED_FORM_MAX",
           "NEWTON_MAX", "PARALLEL_MIN", "CACHE_MAX"]
