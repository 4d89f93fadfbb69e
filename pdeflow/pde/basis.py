"""Smooth functions of depth-time: a normalised Gaussian radial basis over K knots on [0, T].

A time-dependent quantity is ``θ(t) = Σ_k φ_k(t) θ_k`` with ``Σ_k φ_k(t) = 1``; with knot spacing ``h``
the Gaussians have width ``w·h`` (``w = 1/2`` by default), so ``θ(t_k)`` is close to ``θ_k`` while ``θ`` stays
infinitely smooth (adaptive solvers see no kinks). `interpolating_coefficients` finds the ``θ_k`` that make
``θ(t_k)`` equal given values exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


def knot_times(num_knots: int, t_end: float) -> np.ndarray:
    """``(K,)`` knot positions: ``K = 1`` gives ``[0]``; ``K = m·T`` for an integer ``m > 1`` (``T = t_end``)
    gives ``m`` knots per unit interval, at ``0, 1/m, …, T − 1/m``; otherwise ``K`` evenly spaced over
    ``[0, T − 1]``, the depth-times at which the kernel is compared with the transformer's blocks (``K = T``:
    one knot at each)."""
    if num_knots < 1:
        raise ValueError(f"num_knots must be at least 1; got {num_knots}.")
    if num_knots == 1:
        return np.zeros((1,), np.float32)
    per_unit = num_knots / t_end
    if per_unit > 1 and per_unit == int(per_unit):
        return (np.arange(num_knots) / per_unit).astype(np.float32)
    return np.linspace(0.0, max(t_end - 1.0, 1.0), num_knots, dtype=np.float32)


def basis_weights(t: Array, knots: Array, width: float = 0.5) -> Array:
    """``φ(t)``: ``(K,)`` non-negative weights summing to one (a scalar ``t``); ``width`` is the Gaussians'
    standard deviation in knot spacings."""
    if knots.shape[0] == 1:
        return jnp.ones((1,), dtype=jnp.result_type(t, jnp.float32))
    sigma = width * (knots[1] - knots[0])
    return jax.nn.softmax(-0.5 * ((t - knots) / sigma) ** 2)


def evaluate(coefficients, t: Array, knots: Array, width: float = 0.5):
    """Contract the leading ``K`` axis of every leaf of ``coefficients`` with ``φ(t)``."""
    weights = basis_weights(t, knots, width)
    return jax.tree_util.tree_map(lambda c: jnp.tensordot(weights.astype(c.dtype), c, axes=1), coefficients)


def interpolating_coefficients(values: np.ndarray, times: np.ndarray, knots: np.ndarray,
                               width: float = 0.5) -> np.ndarray:
    """Knot coefficients ``θ_k`` (``(K, ...)``) whose ``θ(t_i)`` equals ``values[i]`` (``(T, ...)``) at each of the
    ``T`` ``times``: exactly when ``T = K`` (the ``T × K`` matrix ``φ_k(t_i)`` of a Gaussian basis is
    invertible), in the least-squares sense when ``T > K``."""
    values = np.asarray(values, np.float64)
    design = np.stack([np.asarray(basis_weights(jnp.float32(t), jnp.asarray(knots), width), np.float64)
                       for t in times])  # (T, K)
    flat = values.reshape(len(times), -1)
    solution = np.linalg.lstsq(design, flat, rcond=None)[0]
    return solution.reshape((len(knots),) + values.shape[1:]).astype(np.float32)
