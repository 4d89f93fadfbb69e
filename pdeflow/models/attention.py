"""Multi-head scaled dot-product attention: the maths the traced models share, as pure functions.

Each model keeps its own projections (Dense layers, names, parameter trees) and calls these for the rest:

    q, k, v = split_heads(W_Q x, H), split_heads(W_K x, H), split_heads(W_V x, H)    # (B, N, H, d_h)
    probs = attention_probabilities(q, k, mask=..., causal=..., bias=...)          # (B, H, N, N)
    out = W_O merge_heads(attend(probs, v))                                        # (B, N, H·d_h)

Shapes: ``B`` batch, ``N`` tokens, ``H`` heads, ``d_h`` head width. Heads stay on axis 2 of the token-major
layout ``(B, N, H, d_h)`` (a reshape, no transpose); maps are ``(B, H, N, N)`` with queries on axis 2 and keys on
axis 3, so each row sums to one over the keys it may see.

Disallowed logits (padded keys, future keys) are *replaced* by ``masked_logit`` before the softmax, so they get
probability exactly zero as long as a row has one allowed key. The default is the lowest finite value of the
logits' dtype; models trained with another value pass it explicitly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def split_heads(x: jax.Array, num_heads: int) -> jax.Array:
    """``(B, N, H·d_h) -> (B, N, H, d_h)``: head ``h`` is the ``h``-th block of ``d_h`` features."""
    *lead, width = x.shape
    if width % num_heads:
        raise ValueError(f"num_heads {num_heads} must divide the feature width {width}.")
    return x.reshape(*lead, num_heads, width // num_heads)


def merge_heads(x: jax.Array) -> jax.Array:
    """``(B, N, H, d_h) -> (B, N, H·d_h)``; the inverse of `split_heads`."""
    return x.reshape(*x.shape[:-2], x.shape[-2] * x.shape[-1])


def causal_mask(num_tokens: int) -> jax.Array:
    """``(N, N)`` bool, True where key ``j <= `` query ``i`` (lower triangle with the diagonal)."""
    return jnp.tril(jnp.ones((num_tokens, num_tokens), bool))


def attention_logits(q: jax.Array, k: jax.Array, temperature: float | None = None) -> jax.Array:
    """``q, k (B, N, H, d_h) -> (B, H, N, N)``: ``q_i·k_j / temperature`` per head; ``temperature`` defaults to
    ``√d_h`` (the usual scale ``1/√d_h``). Division, not multiplication by the inverse, so that the logits equal
    ``q·k / √d_h`` bit for bit."""
    if temperature is None:
        temperature = math.sqrt(q.shape[-1])
    return jnp.einsum("bihd,bjhd->bhij", q, k) / temperature


def allowed_keys(mask: jax.Array | None, causal: bool, num_tokens: int) -> jax.Array | None:
    """Which logits are kept, broadcastable to ``(B, H, N, N)``: the real keys of ``mask (B, N)`` (``(B, 1, 1, N)``)
    and, if ``causal``, keys no later than the query (``(1, 1, N, N)``); ``None`` when every key is allowed."""
    allowed = None
    if causal:
        allowed = causal_mask(num_tokens)[None, None]
    if mask is not None:
        keys = jnp.asarray(mask, bool)[:, None, None, :]
        allowed = keys if allowed is None else allowed & keys
    return allowed


def masked_softmax(logits: jax.Array, allowed: jax.Array | None = None,
                   masked_logit: float | None = None) -> jax.Array:
    """Softmax over the last axis (keys) of ``logits (..., N, N)`` after replacing the logits where ``allowed``
    (broadcastable bool) is False by ``masked_logit`` (default: the lowest finite value of the logits' dtype)."""
    if allowed is not None:
        if masked_logit is None:
            masked_logit = jnp.finfo(logits.dtype).min
        logits = jnp.where(allowed, logits, masked_logit)
    return jax.nn.softmax(logits, axis=-1)


def attention_probabilities(q: jax.Array, k: jax.Array, mask: jax.Array | None = None, causal: bool = False,
                            bias: jax.Array | None = None, temperature: float | None = None,
                            masked_logit: float | None = None) -> jax.Array:
    """Attention maps ``(B, H, N, N)`` of ``q, k (B, N, H, d_h)``: ``softmax_j(q_i·k_j / temperature + bias)``
    over the allowed keys.

    Args:
        q, k: queries and keys, ``(B, N, H, d_h)``.
        mask: ``(B, N)`` bool, the real (unpadded) keys; None: all real.
        causal: whether query ``i`` sees only keys ``j <= i``.
        bias: added to the scaled logits before masking, broadcastable to ``(B, H, N, N)`` (e.g. a relative
            position bias ``(H, N, N)``).
        temperature: the logits' divisor; default ``√d_h``.
        masked_logit: the value disallowed logits are replaced by (see `masked_softmax`).
    """
    logits = attention_logits(q, k, temperature)
    if bias is not None:
        logits = logits + bias
    return masked_softmax(logits, allowed_keys(mask, causal, q.shape[1]), masked_logit)


def attend(probs: jax.Array, v: jax.Array) -> jax.Array:
    """Each query's probability-weighted sum of the values: ``probs (B, H, N, N)`` (or ``(H, N, N)``, one set of
    maps for the whole batch), ``v (B, N, H, d_h)`` -> ``(B, N, H, d_h)``."""
    if probs.ndim == 3:
        return jnp.einsum("hij,bjhd->bihd", probs, v)
    return jnp.einsum("bhij,bjhd->bihd", probs, v)
