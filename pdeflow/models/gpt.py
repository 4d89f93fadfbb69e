"""A small GPT-style causal language model in Flax that returns its next-token logits and a `Trace`.

Two block layouts (``norm``):

* ``"pre"``: ``x + Attn(LN(x))``, then ``+ MLP(LN(·))``; a final LayerNorm before the unembedding.
* ``"post"``: ``LN(x + Attn(x))``, then ``LN(· + MLP(·))``; the embeddings are normalised too, so every
  hidden state is already on the read-out's scale and there is no final norm.

The unembedding is either the token embedding transposed (``tie_embeddings``) or a separate linear map with a
bias. `lens_readout` returns exactly the map from a residual stream to logits that the model applies to its
last one, so the logit lens of the last layer is the model's own output distribution.
``Trace.hidden[l]`` is the stream entering block ``l`` (``hidden[L]`` the last block's output) and
``Trace.attention[l]`` block ``l``'s causal maps.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pdeflow.models.attention import attend, attention_probabilities, merge_heads, split_heads
from pdeflow.models.trace import Trace, run_in_batches

NORMS = ("pre", "post")
MASKED_LOGIT = -1e9  # what padded and future keys' logits are replaced by (the trained models' convention)


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Shape of the causal language model.

    Attributes:
        vocab_size: V, the number of token ids.
        context_size: the longest input, in tokens (learned position embeddings).
        hidden_size: d, the width of the residual stream.
        num_layers: L, transformer blocks.
        num_heads: H, attention heads (must divide hidden_size).
        mlp_ratio: the MLP's hidden width is ``mlp_ratio · hidden_size``.
        norm: "pre" (pre-LayerNorm blocks and a final norm) or "post" (post-LayerNorm blocks, no final norm).
        tie_embeddings: read out with the token embedding transposed (no bias) instead of a separate map.
        layer_norm_eps: epsilon of every LayerNorm.
    """

    vocab_size: int = 128
    context_size: int = 64
    hidden_size: int = 64
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: int = 4
    norm: str = "pre"
    tie_embeddings: bool = True
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        for name in ("vocab_size", "context_size", "hidden_size", "num_layers", "num_heads", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}.")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"num_heads {self.num_heads} must divide hidden_size {self.hidden_size}.")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}; got {self.norm!r}.")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


class Block(nn.Module):
    """One causal block; returns the new stream ``(B, N, d)`` and its maps ``(B, H, N, N)``."""

    config: GPTConfig

    @nn.compact
    def __call__(self, x, mask):
        c = self.config
        pre = c.norm == "pre"
        h = nn.LayerNorm(c.layer_norm_eps, name="attention_norm")(x) if pre else x
        q, k, v = (split_heads(nn.Dense(c.hidden_size, name=name)(h), c.num_heads)
                   for name in ("query", "key", "value"))
        probs = attention_probabilities(q, k, mask=mask, causal=True, masked_logit=MASKED_LOGIT)
        x = x + nn.Dense(c.hidden_size, name="attention_out")(merge_heads(attend(probs, v)))
        if not pre:
            x = nn.LayerNorm(c.layer_norm_eps, name="attention_norm")(x)
        h = nn.LayerNorm(c.layer_norm_eps, name="mlp_norm")(x) if pre else x
        h = nn.Dense(c.hidden_size, name="mlp_out")(jax.nn.gelu(nn.Dense(c.mlp_ratio * c.hidden_size,
                                                                         name="mlp_in")(h)))
        x = x + h
        if not pre:
            x = nn.LayerNorm(c.layer_norm_eps, name="mlp_norm")(x)
        return x, probs


class GPT(nn.Module):
    """``apply(params, tokens (B, N) int, mask (B, N) bool = all real) -> (logits (B, N, V), Trace)``.

    Position ``i``'s logits predict token ``i + 1``. Padding must come after the real tokens.
    """

    config: GPTConfig

    @nn.compact
    def __call__(self, tokens, mask=None) -> tuple[jax.Array, Trace]:
        c = self.config
        if tokens.ndim != 2 or not 1 <= tokens.shape[1] <= c.context_size:
            raise ValueError(f"tokens must have shape (B, N) with 1 <= N <= {c.context_size}; got {tokens.shape}.")
        mask = jnp.ones(tokens.shape, bool) if mask is None else jnp.asarray(mask, bool)
        embedding = nn.Embed(c.vocab_size, c.hidden_size, embedding_init=nn.initializers.normal(0.02),
                             name="token_embedding")
        positions = self.param("position_embeddings", nn.initializers.normal(0.02), (c.context_size, c.hidden_size))
        x = embedding(tokens) + positions[: tokens.shape[1]]
        if c.norm == "post":
            x = nn.LayerNorm(c.layer_norm_eps, name="embedding_norm")(x)
        hidden, attention = [x], []
        for layer in range(c.num_layers):
            x, probs = Block(c, name=f"layer_{layer}")(x, mask)
            hidden.append(x)
            attention.append(probs)
        if c.norm == "pre":
            x = nn.LayerNorm(c.layer_norm_eps, name="final_norm")(x)
        logits = embedding.attend(x) if c.tie_embeddings else nn.Dense(c.vocab_size, name="unembedding")(x)
        return logits, Trace(jnp.stack(hidden), jnp.stack(attention), mask)


def lens_readout(config: GPTConfig, params) -> tuple[Callable | None, jax.Array, jax.Array | None]:
    """``(norm, unembedding (d, V), bias (V,) or None)``: the model's map from a residual stream to logits,
    ``logits = norm(h) · unembedding + bias`` (``norm`` None for post-LN models), as `entropy_profile` takes it."""
    p = params["params"]
    norm = None
    if config.norm == "pre":
        final = p["final_norm"]
        norm = lambda h: nn.LayerNorm(config.layer_norm_eps).apply({"params": final}, h)  # noqa: E731
    if config.tie_embeddings:
        return norm, p["token_embedding"]["embedding"].T, None
    return norm, p["unembedding"]["kernel"], p["unembedding"]["bias"]


@functools.partial(jax.jit, static_argnums=0)
def gpt_forward(config: GPTConfig, params, tokens, mask):
    """``(logits (B, N, V), Trace)`` of token ids ``(B, N)`` (jitted; one compile per shape)."""
    return GPT(config).apply(params, tokens, mask)


def run_gpt(config: GPTConfig, params, tokens: np.ndarray, mask: np.ndarray | None = None,
            batch_size: int = 128) -> tuple[np.ndarray, Trace]:
    """``(logits (B, N, V), Trace)`` for token ids ``(B, N)`` (numpy; fixed-size batches, one compile)."""
    tokens = np.asarray(tokens, np.int32)
    mask = np.ones(tokens.shape, bool) if mask is None else np.asarray(mask, bool)
    if tokens.ndim != 2 or tokens.shape[0] == 0 or mask.shape != tokens.shape:
        raise ValueError(f"need tokens (B, N) with B >= 1 and a mask of the same shape; got {tokens.shape} and "
                         f"{mask.shape}.")
    return run_in_batches(lambda t, m: gpt_forward(config, params, t, m), (tokens, mask), batch_size)
