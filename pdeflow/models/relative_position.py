"""Relative-position biases (RPE) of attention logits, one family per kind of memory kernel.

For a query ``i`` and key ``j`` at distance ``δ = |i − j|`` each head ``h`` adds ``b_h(δ)`` to its logit:

* ``"none"``: ``b = 0``;
* ``"linear"`` (ALiBi-like): ``b_h(δ) = −p_h·δ``, so position-only attention decays like ``e^{−p_h δ}``
  (light-tailed);
* ``"log"``: ``b_h(δ) = −p_h·log(1 + δ)``, so position-only attention decays like ``(1 + δ)^{−p_h}``
  (heavy-tailed);
* ``"t5"``: a learned value per bucket of ``δ`` (`t5_buckets`): one bucket per distance below
  ``num_buckets/2``, logarithmically wider buckets up to ``max_distance``, one last bucket beyond;
* ``"table"``: a learned value per distance up to ``max_distance`` (clipped beyond).

The slopes ``p_h`` are free (either sign). The same function serves the transformers of
`pdeflow.models.rpe_transformer` and the attention-PDE's position bias (`pdeflow.pde.attention_pde`), and
`relative_offsets` (clipped signed offsets) also indexes the PDE's ``"offsets"`` bias on a chain or a patch grid
(`pdeflow.pde.geometry`).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import Array

RPE_FAMILIES = ("none", "linear", "log", "t5", "table")
PARAMETRIC = ("linear", "log")


def t5_buckets(distance: np.ndarray, num_buckets: int, max_distance: int) -> np.ndarray:
    """Bucket ids in ``[0, num_buckets)`` of non-negative distances: exact below ``num_buckets // 2``, then
    ``num_buckets − num_buckets//2 − 1`` log-spaced buckets up to ``max_distance``, and the last bucket for
    everything at or beyond it."""
    distance = np.asarray(distance)
    exact = num_buckets // 2
    if exact < 1 or max_distance <= exact:
        raise ValueError(f"need num_buckets >= 2 and max_distance > num_buckets // 2; got {num_buckets}, "
                         f"{max_distance}.")
    spread = num_buckets - exact - 1
    far = exact + np.floor(np.log(np.maximum(distance, 1) / exact) / math.log(max_distance / exact) * spread)
    far = np.where(distance >= max_distance, num_buckets - 1, np.minimum(far, num_buckets - 2))
    return np.where(distance < exact, distance, far).astype(np.int64)


def num_weights(family: str, num_buckets: int, max_distance: int) -> int:
    """Parameters per head: 0 (none), 1 (linear, log), ``num_buckets`` (t5), ``max_distance + 1`` (table)."""
    check_family(family)
    return {"none": 0, "linear": 1, "log": 1, "t5": num_buckets, "table": max_distance + 1}[family]


def check_family(family: str) -> None:
    if family not in RPE_FAMILIES:
        raise ValueError(f"unknown relative-position family {family!r}; choose from {RPE_FAMILIES}.")


def relative_offsets(positions: np.ndarray, max_distance: int | None = None) -> np.ndarray:
    """``(N, N)`` signed offsets ``positions[j] − positions[i]`` (key ``j`` relative to query ``i``) of ``(N,)``
    integer positions, clipped to ``[−max_distance, max_distance]`` unless ``max_distance`` is None."""
    positions = np.asarray(positions)
    offsets = positions[None, :] - positions[:, None]
    return offsets if max_distance is None else np.clip(offsets, -max_distance, max_distance)


def distances(n: int, max_distance: int | None = None) -> np.ndarray:
    """``(N, N)`` ``|i − j|``, clipped to ``max_distance`` unless it is None."""
    return np.abs(relative_offsets(np.arange(n), max_distance))


def relative_bias(family: str, weights: Array | None, n: int, num_buckets: int = 32,
                  max_distance: int = 128) -> Array:
    """``(H, N, N)`` bias of every head for ``N`` tokens.

    ``weights``: ``(H, num_weights)`` (`num_weights`); ignored for ``"none"``, which returns ``(1, N, N)``
    zeros."""
    check_family(family)
    delta = distances(n)
    if family == "none":
        return jnp.zeros((1, n, n))
    if family == "linear":
        return -weights[:, :1, None] * jnp.asarray(delta, weights.dtype)
    if family == "log":
        return -weights[:, :1, None] * jnp.asarray(np.log1p(delta), weights.dtype)
    if family == "t5":
        return weights[:, t5_buckets(delta, num_buckets, max_distance)]
    return weights[:, distances(n, max_distance)]


def initial_weights(family: str, num_heads: int, num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """``(H, num_weights)`` starting values: slopes spread over heads (linear: ``2^{−8h/H}`` as in ALiBi, up to
    1; log: 0.5 … 2), zeros for the learned tables."""
    count = num_weights(family, num_buckets, max_distance)
    if family == "linear":
        return (2.0 ** (-8.0 * np.arange(num_heads) / max(num_heads, 1)))[:, None].astype(np.float32)
    if family == "log":
        return np.linspace(0.5, 2.0, num_heads)[:, None].astype(np.float32)
    return np.zeros((num_heads, count), np.float32)
