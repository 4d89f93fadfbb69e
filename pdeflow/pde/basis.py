"""Smooth functions of depth-time: a normalised Gaussian radial basis over K knots on [0, T].

A time-dependent quantity is ``θ(t) = Σ_k φ_k(t) θ_k`` with ``Σ_k φ_k(t) = 1``; with knot spacing ``h``
the Gaussians have width ``h/2``, so ``θ(t_k)`` is close to ``θ_k`` while ``θ`` stays infinitely smooth
(adaptive solvers see no kinks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


def knot_times(num_knots: int, t_end: float) -> np.ndarray:
    """``(K,)`` knot positions: ``K = 1`` gives ``[0]``; otherwise evenly spaced over ``[0, t_end − 1]``,
    the depth-times at which the kernel is compared with the transformer's blocks."""
    if num_knots < 1:
        raise ValueError(f"num_knots must be at least 1; got {num_knots}.")
    if num_knots == 1:
        return np.zeros((1,), np.float32)
    return np.linspace(0.0, max(t_end - 1.0, 1.0), num_knots, dtype=np.float32)


def basis_weights(t: Array, knots: Array) -> Array:
    """``φ(t)``: ``(K,)`` non-negative weights summing to one (a scalar ``t``)."""
    if knots.shape[0] == 1:
        return jnp.ones((1,), dtype=jnp.result_type(t, jnp.float32))
    width = 0.5 * (knots[1] - knots[0])
    return jax.nn.softmax(-0.5 * ((t - knots) / width) ** 2)


def evaluate(coefficients, t: Array, knots: Array):
    """Contract the leading ``K`` axis of every leaf of ``coefficients`` with ``φ(t)``."""
    weights = basis_weights(t, knots)
    return jax.tree_util.tree_map(lambda c: jnp.tensordot(weights.astype(c.dtype), c, axes=1), coefficients)
