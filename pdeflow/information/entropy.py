"""Entropies of discrete distributions along an axis, in bits by default.

Rényi entropy of order α: ``H_α(p) = log(Σ p_i^α) / (1 − α)``; α = 0 is the log of the support size
(Hartley), α → 1 is Shannon's ``−Σ p log p``, α = 2 the collision entropy ``−log Σ p²``, α = ∞ the
min-entropy ``−log max p``. ``H_α`` does not increase with α. Every function is pure jnp (jit/vmap-able).

The support of α = 0 is the number of probabilities above ``support_threshold`` (default 0: every nonzero
one; a softmax has full support, so its H₀ is ``log V``). Entropy-Lens (Ali et al. 2025, ``utils.py``,
``get_renyi_entropy``) counts ``p > 1e-20`` on float32 softmaxes, so that probabilities that underflow or
are negligible do not count: `ENTROPY_LENS_SUPPORT_THRESHOLD`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import Array

ENTROPY_LENS_SUPPORT_THRESHOLD = 1e-20


def _per_unit(base: float) -> float:
    return 1.0 / math.log(base)


def shannon_entropy(p: Array, axis: int = -1, base: float = 2.0) -> Array:
    """``−Σ p log p`` along ``axis`` (``0 log 0 = 0``)."""
    p = jnp.asarray(p)
    return -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), axis=axis) * _per_unit(base)


def _check_order(alpha: float, support_threshold: float) -> None:
    if alpha < 0:
        raise ValueError(f"Rényi order alpha must be >= 0; got {alpha}.")
    if not 0 <= support_threshold < 1:
        raise ValueError(f"support_threshold must be in [0, 1); got {support_threshold}.")


def renyi_entropy(p: Array, alpha: float, axis: int = -1, base: float = 2.0, support_threshold: float = 0.0) -> Array:
    """Rényi entropy of order ``alpha ≥ 0`` (``alpha`` a Python number: ``1`` gives Shannon, ``inf`` the
    min-entropy) along ``axis``; for ``alpha = 0`` the support counts the ``p > support_threshold``."""
    p = jnp.asarray(p)
    _check_order(alpha, support_threshold)
    if alpha == 1:
        return shannon_entropy(p, axis, base)
    if math.isinf(alpha):
        return -jnp.log(jnp.max(p, axis=axis)) * _per_unit(base)
    if alpha == 0:
        return jnp.log(jnp.sum(p > support_threshold, axis=axis).astype(p.dtype)) * _per_unit(base)
    powered = jnp.where(p > 0, jnp.where(p > 0, p, 1.0) ** alpha, 0.0)
    return jnp.log(jnp.sum(powered, axis=axis)) / (1.0 - alpha) * _per_unit(base)


def renyi_entropy_from_logits(logits: Array, alpha: float, axis: int = -1, base: float = 2.0,
                              support_threshold: float = 0.0) -> Array:
    """`renyi_entropy` of ``softmax(logits)``, computed in log space (stable for large vocabularies and
    peaked distributions): ``log Σ p^α = logsumexp(α log p)``. For ``alpha = 0`` with ``support_threshold``
    0 the support is the whole axis (``log V``), else the count of ``log p > log support_threshold``."""
    logp = jax.nn.log_softmax(jnp.asarray(logits), axis=axis)
    _check_order(alpha, support_threshold)
    if alpha == 1:
        return -jnp.sum(jnp.exp(logp) * logp, axis=axis) * _per_unit(base)
    if math.isinf(alpha):
        return -jnp.max(logp, axis=axis) * _per_unit(base)
    if alpha == 0:
        if support_threshold == 0:
            support = jnp.full(jnp.sum(logp, axis=axis).shape, logp.shape[axis], logp.dtype)
        else:
            support = jnp.sum(logp > math.log(support_threshold), axis=axis).astype(logp.dtype)
        return jnp.log(support) * _per_unit(base)
    return jax.nn.logsumexp(alpha * logp, axis=axis) / (1.0 - alpha) * _per_unit(base)


def attention_entropy(attention: Array, mask: Array, alpha: float = 1.0, base: float = 2.0) -> Array:
    """Entropy of every real query row of attention maps, over the real keys.

    Args:
        attention: ``(..., B, H, N, N)`` row-stochastic maps (e.g. ``Trace.attention``, ``(L, B, H, N, N)``).
        mask: ``(B, N)`` real tokens.
    Returns:
        ``(..., B, H, N)`` entropies; padded query rows are NaN. Divide by ``log(n)`` of each input's real
        length for a normalised entropy (uniform attention = 1).
    """
    attention, mask = jnp.asarray(attention), jnp.asarray(mask, bool)
    keys = mask[:, None, None, :]
    rows = jnp.where(keys, attention, 0.0)
    entropy = renyi_entropy(rows, alpha, axis=-1, base=base)
    return jnp.where(mask[:, None, :], entropy, jnp.nan)
