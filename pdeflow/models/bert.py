"""A BERT-style encoder in Flax (post-LayerNorm, GELU, absolute + token-type embeddings) that returns a Trace.

The layout of the parameters mirrors the Hugging Face BERT checkpoint so that pretrained weights load one
to one (see `pdeflow.models.minilm`).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from pdeflow.models.attention import attention_probabilities, merge_heads, split_heads
from pdeflow.models.block_weights import BlockWeights, from_dense
from pdeflow.models.parameters import parameter_count  # noqa: F401 (re-exported)
from pdeflow.models.trace import Trace


@dataclasses.dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @classmethod
    def from_hf_config(cls, config: dict) -> BertConfig:
        """Build from a Hugging Face ``config.json`` dictionary of a BERT model."""
        if config.get("model_type", "bert") != "bert" or config.get("hidden_act", "gelu") != "gelu":
            raise ValueError("only BERT models with exact GELU are supported; got "
                             f"model_type={config.get('model_type')!r}, hidden_act={config.get('hidden_act')!r}.")
        return cls(
            vocab_size=config["vocab_size"],
            hidden_size=config["hidden_size"],
            num_layers=config["num_hidden_layers"],
            num_heads=config["num_attention_heads"],
            intermediate_size=config["intermediate_size"],
            max_positions=config["max_position_embeddings"],
            type_vocab_size=config["type_vocab_size"],
            layer_norm_eps=config["layer_norm_eps"],
        )


class SelfAttention(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, mask):
        """x: (B, N, d); mask: (B, N) -> output (B, N, d), probabilities (B, H, N, N)."""
        c = self.config
        q, k, v = (split_heads(nn.Dense(c.hidden_size, name=name)(x), c.num_heads)
                   for name in ("query", "key", "value"))
        # padded keys' logits become the lowest finite value of their dtype (the Hugging Face convention)
        probs = attention_probabilities(q, k, mask=mask)
        return merge_heads(weighted_values(probs, v)), probs


def weighted_values(probs: jax.Array, v: jax.Array) -> jax.Array:
    """`pdeflow.models.attention.attend` summed in this encoder's own order: ``probs (B, H, N, N)`` times the
    head-major values ``(B, H, N, d_h)`` (probabilities the left operand), back to ``(B, N, H, d_h)``. ``attend``
    contracts with the values as the left operand, which differs at round-off (~1e-6); this keeps the encoder's
    outputs bit for bit what they were (pretrained parity, golden values)."""
    return jnp.einsum("bhij,bhjd->bhid", probs, v.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)


class Block(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x, mask):
        c = self.config
        context, probs = SelfAttention(c, name="attention")(x, mask)
        attended = nn.Dense(c.hidden_size, name="attention_out")(context)
        x = nn.LayerNorm(c.layer_norm_eps, name="attention_norm")(x + attended)
        y = nn.Dense(c.intermediate_size, name="intermediate")(x)
        y = nn.Dense(c.hidden_size, name="output")(jax.nn.gelu(y, approximate=False))
        return nn.LayerNorm(c.layer_norm_eps, name="output_norm")(x + y), probs


class BertEncoder(nn.Module):
    """``apply(params, input_ids, token_type_ids, mask) -> Trace`` for int arrays of shape (B, N)."""

    config: BertConfig

    @nn.compact
    def __call__(self, input_ids, token_type_ids, mask) -> Trace:
        c = self.config
        if input_ids.shape[1] > c.max_positions:
            raise ValueError(f"inputs have {input_ids.shape[1]} tokens but the model has only {c.max_positions} "
                             "positions; truncate the inputs (max_tokens).")
        mask = mask.astype(bool)
        positions = jnp.arange(input_ids.shape[1])[None, :]
        x = (nn.Embed(c.vocab_size, c.hidden_size, name="word_embeddings")(input_ids)
             + nn.Embed(c.max_positions, c.hidden_size, name="position_embeddings")(positions)
             + nn.Embed(c.type_vocab_size, c.hidden_size, name="token_type_embeddings")(token_type_ids))
        x = nn.LayerNorm(c.layer_norm_eps, name="embeddings_norm")(x)
        hidden, attention = [x], []
        for layer in range(c.num_layers):
            x, probs = Block(c, name=f"layer_{layer}")(x, mask)
            hidden.append(x)
            attention.append(probs)
        return Trace(jnp.stack(hidden), jnp.stack(attention), mask)


def mean_pooled_embedding(trace: Trace) -> jax.Array:
    """Sentence embeddings as sentence-transformers makes them: mean of the last layer over real tokens,
    L2-normalised. Returns shape (B, d)."""
    mask = trace.mask.astype(trace.hidden.dtype)[..., None]
    pooled = (trace.hidden[-1] * mask).sum(1) / jnp.maximum(mask.sum(1), 1e-9)
    return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def bert_block_weights(params: dict, config: BertConfig) -> list[BlockWeights]:
    """Every block's weights (`pdeflow.models.block_weights`): post-LayerNorm blocks' attention reads the input
    stream as it is; the feed-forward network reads the attention LayerNorm's output."""
    blocks = []
    for layer in range(config.num_layers):
        p = params["params"][f"layer_{layer}"]
        a = p["attention"]
        blocks.append(from_dense(a["query"], a["key"], a["value"], p["attention_out"], config.num_heads, "none",
                                 mlp=(p["attention_norm"], p["intermediate"], p["output"])))
    return blocks
