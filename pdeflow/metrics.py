"""Divergences and fidelity of attention maps, and the trivial baselines every figure stands beside.

Shapes: maps are ``(L, B, H, N, N)`` probabilities (rows = queries), masks ``(B, N)`` booleans. Only real
queries and real keys count. JS divergences are in bits (between 0 and 1).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


def _xlogy(x: Array, y: Array) -> Array:
    """``x · log(y)`` with ``0 · log(anything) = 0``."""
    return jnp.where(x > 0, x * jnp.log(jnp.where(x > 0, y, 1.0)), 0.0)


def _kl_rows(p: Array, log_q: Array) -> Array:
    """Row-wise ``KL(p ‖ q) = Σ_j p_j (log p_j − log q_j)`` over the last axis, from ``p`` and ``log q``."""
    return jnp.sum(_xlogy(p, p) - jnp.where(p > 0, p * log_q, 0.0), axis=-1)


def attention_kl(target: Array, log_predicted: Array, mask: Array) -> Array:
    """``KL(target ‖ predicted)`` per row, averaged over real query rows, for one input.

    Args:
        target: ``(..., N, N)`` probabilities; log_predicted: ``(..., N, N)`` log-probabilities;
        mask: ``(N,)``.
    Returns:
        ``(...)`` mean row KL in nats.
    """
    row = _kl_rows(jnp.where(mask[None, :], target, 0.0), log_predicted)
    m = mask.astype(row.dtype)
    return jnp.sum(row * m, axis=-1) / jnp.maximum(m.sum(), 1.0)


def _js_rows(p: Array, q: Array) -> Array:
    mid = 0.5 * (p + q)
    log_mid = jnp.log(jnp.where(mid > 0, mid, 1.0))  # mid > 0 wherever p > 0 or q > 0
    return jnp.maximum(0.5 * (_kl_rows(p, log_mid) + _kl_rows(q, log_mid)) / jnp.log(2.0), 0.0)


def _fidelity_one(p: Array, q: Array, mask: Array, top_k: Array):
    """p, q: (H, N, N) for one input -> cosine, js, top-k agreement, each (H,)."""
    m = mask.astype(p.dtype)
    pair = m[:, None] * m[None, :]
    p, q = p * pair, q * pair
    cosine = jnp.sum(p * q, (-2, -1)) / jnp.sqrt(jnp.sum(p * p, (-2, -1)) * jnp.sum(q * q, (-2, -1)) + 1e-30)
    js = jnp.sum(_js_rows(p, q) * m, -1) / m.sum()
    rank_p = jnp.argsort(jnp.argsort(-jnp.where(mask, p, -1.0), -1), -1)  # 0 = largest
    rank_q = jnp.argsort(jnp.argsort(-jnp.where(mask, q, -1.0), -1), -1)
    k = jnp.minimum(top_k, m.sum()).astype(jnp.int32)
    shared = jnp.sum((rank_p < k) & (rank_q < k), -1) / k  # (H, N)
    agreement = jnp.sum(shared * m, -1) / m.sum()
    return cosine, js, agreement


_fidelity_batch = jax.jit(jax.vmap(_fidelity_one, in_axes=(0, 0, 0, None)))


def attention_fidelity(reference, predicted, mask, top_k: int = 3) -> dict[str, np.ndarray]:
    """Per-input fidelity of ``predicted`` to ``reference`` maps.

    Args:
        reference, predicted: ``(L, B, H, N, N)`` probabilities; mask: ``(B, N)``.
    Returns:
        ``{"cosine", "js", "top_k"}`` each ``(L, B, H)``: cosine similarity of the maps over real tokens,
        mean row-wise Jensen–Shannon divergence (bits), and the mean fraction of each row's top-``k`` keys
        that the two maps share.
    """
    reference, predicted, mask = np.asarray(reference), np.asarray(predicted), np.asarray(mask, bool)
    if (reference.shape != predicted.shape or reference.ndim != 5
            or mask.shape != reference.shape[1:2] + reference.shape[-1:]):
        raise ValueError(f"need reference and predicted of one shape (L, B, H, N, N) and mask (B, N); got "
                         f"{reference.shape}, {predicted.shape}, {mask.shape}.")
    out = {name: np.zeros(reference.shape[:3]) for name in ("cosine", "js", "top_k")}
    for l in range(reference.shape[0]):
        if np.isnan(predicted[l]).any():  # no prediction for this block (e.g. the previous-layer baseline at 0)
            for name in out:
                out[name][l] = np.nan
            continue
        values = _fidelity_batch(reference[l], predicted[l], mask, top_k)
        for name, value in zip(("cosine", "js", "top_k"), values):
            out[name][l] = np.asarray(value)
    return out


def summarise(fidelity: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Average ``(L, B, H)`` fidelity over inputs and heads: per-layer lists (NaN layers stay NaN)."""
    return {name: [float(x) for x in value.mean(axis=(1, 2))] for name, value in fidelity.items()}


# ---- baselines ------------------------------------------------------------------------------------------


def uniform_maps(mask, num_layers: int, num_heads: int) -> np.ndarray:
    """Uniform attention over the real keys: ``(L, B, H, N, N)``."""
    m = np.asarray(mask, np.float32)
    rows = m / m.sum(-1, keepdims=True)  # (B, N)
    maps = np.broadcast_to(rows[:, None, None, :], (m.shape[0], num_heads, m.shape[1], m.shape[1]))
    return np.broadcast_to(maps[None], (num_layers,) + maps.shape).copy()


def previous_layer_maps(attention) -> np.ndarray:
    """Block ``l`` predicted by block ``l − 1``'s maps; block 0 has no predecessor and is NaN."""
    attention = np.asarray(attention)
    return np.concatenate([np.full_like(attention[:1], np.nan), attention[:-1]], axis=0)


def mean_attention(attention, mask) -> np.ndarray:
    """Mean map per block and head over training inputs, position by position: ``(L, H, N, N)``.
    Each query row is averaged over the inputs in which that query is real."""
    attention, m = np.asarray(attention), np.asarray(mask, np.float32)
    total = np.einsum("lbhij,bi->lhij", attention, m)
    return total / np.maximum(m.sum(0), 1.0)[None, None, :, None]


def mean_attention_maps(mean_map, mask) -> np.ndarray:
    """The mean training map cut to each input's real keys and renormalised: ``(L, B, H, N, N)``
    (a row with no mass on the real keys falls back to uniform)."""
    mean_map, m = np.asarray(mean_map), np.asarray(mask, np.float32)
    n = m.shape[1]
    if mean_map.shape[-1] < n:
        mean_map = np.pad(mean_map, [(0, 0)] * 2 + [(0, n - mean_map.shape[-2]), (0, n - mean_map.shape[-1])])
    maps = mean_map[:, None, :, :n, :n] * m[None, :, None, None, :]
    sums = maps.sum(-1, keepdims=True)
    uniform = np.broadcast_to(m[None, :, None, None, :] / m.sum(-1)[None, :, None, None, None], maps.shape)
    return np.where(sums > 1e-12, maps / np.maximum(sums, 1e-30), uniform)
