"""The user's problem as the adapter's loops see it: a flat state and flat differentiable args.

``func(y, t, *args)`` (jax.experimental.ode's convention) takes PyTree ``y`` and ``args``; the
loops work on one flat vector (``jax.flatten_util.ravel_pytree``) and on the inexact leaves of
``args`` (the ones with gradients); integer or boolean leaves are held fixed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = ["Problem"]


def _inexact(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


class Problem:
    """``F(t, y_flat)`` with the args bound and ``Fp(t, y_flat, dargs)`` with them free."""

    def __init__(self, func, y0, t_dtype, args):
        self.func = func
        self.y0_flat, self.unravel = ravel_pytree(y0)
        self.t_dtype = t_dtype  # the user's time dtype: func sees times of it
        leaves, self.args_tree = jax.tree_util.tree_flatten(args)
        self.mask = [_inexact(x) for x in leaves]
        self.leaves = leaves
        self.dargs = tuple(x for x, m in zip(leaves, self.mask, strict=True) if m)

    def args_from(self, dargs):
        it = iter(dargs)
        leaves = [next(it) if m else x for x, m in zip(self.leaves, self.mask, strict=True)]
        return jax.tree_util.tree_unflatten(self.args_tree, leaves)

    def Fp(self, t, y, dargs):
        out = self.func(self.unravel(y), jnp.asarray(t).astype(self.t_dtype),
                        *self.args_from(dargs))
        flat, _ = ravel_pytree(out)
        return flat.astype(y.dtype)

    def F(self, t, y):
        return self.Fp(t, y, self.dargs)

    def args_cotangent(self, dargs_bar):
        """Cotangents for every leaf of ``args`` (float0 zeros for the fixed ones)."""
        it = iter(dargs_bar)
        leaves = [next(it) if m else np.zeros(np.shape(x), dtype=jax.dtypes.float0)
                  for x, m in zip(self.leaves, self.mask, strict=True)]
        return jax.tree_util.tree_unflatten(self.args_tree, leaves)
