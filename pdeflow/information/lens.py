"""The logit lens and entropy profiles: how much each layer's residual stream already says about the output.

The lens applies the model's own read-out (final norm, then unembedding) to every layer's hidden state, giving
a distribution over the vocabulary per layer and token; the entropy profile is its Shannon and Rényi
entropies along depth. For a post-LayerNorm encoder such as MiniLM every hidden state is already normalised,
so the read-out is the unembedding alone; MiniLM's checkpoint has no masked-LM head, so its tied word
embeddings serve as the unembedding (``logits = h · Eᵀ``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from pdeflow.information.entropy import renyi_entropy_from_logits

DEFAULT_ALPHAS = (0.5, 1.0, 2.0, math.inf)


class EntropyProfile(NamedTuple):
    """Entropies (bits) of the lens distribution per Rényi order, layer and token.

    Attributes:
        alphas: the Rényi orders (1.0 is Shannon).
        entropy: ``(A, L+1, B, N)``; padded tokens are NaN.
        mask: ``(B, N)`` real tokens.
    """

    alphas: tuple[float, ...]
    entropy: Array
    mask: Array

    @property
    def depth(self) -> Array:
        """Normalised depth of each layer, ``l / L`` for ``l = 0..L`` (profiles of models of different depth
        share this axis)."""
        layers = self.entropy.shape[1]
        return jnp.linspace(0.0, 1.0, layers)

    def mean_over_tokens(self) -> Array:
        """``(A, L+1, B)``: each input's profile, averaged over its real tokens."""
        m = self.mask.astype(self.entropy.dtype)
        return jnp.nansum(self.entropy * m, axis=-1) / m.sum(-1)


def lens_logits(hidden: Array, unembedding: Array, norm: Callable[[Array], Array] | None = None,
                bias: Array | None = None) -> Array:
    """``(..., d) -> (..., V)``: ``norm(h) · W (+ b)`` with ``unembedding W`` of shape ``(d, V)``."""
    states = hidden if norm is None else norm(hidden)
    logits = states @ unembedding
    return logits if bias is None else logits + bias


def entropy_profile(hidden: Array, mask: Array, unembedding: Array, norm: Callable[[Array], Array] | None = None,
                    bias: Array | None = None, alphas: Sequence[float] = DEFAULT_ALPHAS) -> EntropyProfile:
    """Entropy profile of a traced model under the logit lens.

    Args:
        hidden: ``(L+1, B, N, d)`` hidden states (``Trace.hidden``).
        mask: ``(B, N)`` real tokens.
        unembedding: ``(d, V)`` read-out matrix (for tied embeddings, the embedding matrix transposed).
        norm: the model's final normalisation, applied before the unembedding (None: none, as for post-LN
            encoders).
        bias: optional ``(V,)`` output bias.
        alphas: Rényi orders; 1.0 is Shannon, ``math.inf`` the min-entropy.
    Returns:
        `EntropyProfile` with entropies ``(A, L+1, B, N)``. One layer's ``(B, N, V)`` logits are held at a time
        (``lax.map`` over layers), so large vocabularies fit in memory.
    """
    hidden, mask = jnp.asarray(hidden), jnp.asarray(mask, bool)
    if hidden.ndim != 4 or mask.shape != hidden.shape[1:3]:
        raise ValueError(f"need hidden (L+1, B, N, d) and mask (B, N); got {hidden.shape} and {mask.shape}.")
    if unembedding.ndim != 2 or unembedding.shape[0] != hidden.shape[-1]:
        raise ValueError(f"unembedding must have shape (d={hidden.shape[-1]}, V); got {unembedding.shape}. For tied "
                         "embeddings pass the (V, d) embedding matrix transposed.")
    alphas = tuple(float(a) for a in alphas)

    def one_layer(states):
        logits = lens_logits(states, unembedding, norm, bias)
        return jnp.stack([renyi_entropy_from_logits(logits, a) for a in alphas])  # (A, B, N)

    entropy = jax.lax.map(one_layer, hidden).transpose(1, 0, 2, 3)  # (A, L+1, B, N)
    return EntropyProfile(alphas, jnp.where(mask[None, None], entropy, jnp.nan), mask)
