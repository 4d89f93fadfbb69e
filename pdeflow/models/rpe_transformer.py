"""A small causal sequence-to-sequence transformer with a choice of relative-position bias (RPE).

Inputs ``x (B, N, d_in)`` are embedded linearly (no absolute positions: position enters only through the
RPE), pass ``L`` pre-LayerNorm blocks, and a linear head gives one prediction per token ``(B, N)``. Each head's
logits are ``q_i·k_j/√d_h + b_h(i − j)`` over keys ``j ≤ i`` with ``b`` from
`pdeflow.models.relative_position`; with ``dot_product=False`` the ``q·k`` term is dropped, so attention
depends on positions only (a learned memory kernel per head). The knobs of the memory study are the depth
L, the heads H (of width ``head_dim`` each, so attention has ``4·d·H·head_dim`` weights per layer) and the
FFN width m.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from pdeflow.models import relative_position as rpe
from pdeflow.models.attention import (
    attend,
    attention_probabilities,
    causal_mask,
    masked_softmax,
    merge_heads,
    split_heads,
)
from pdeflow.models.trace import Trace

MASKED_LOGIT = -1e9  # what future keys' logits are replaced by (the trained models' convention)


@dataclasses.dataclass(frozen=True)
class RPETransformerConfig:
    """Shape of the model.

    Attributes:
        input_dim: width of each input token.
        model_dim: d, width of the residual stream.
        num_layers: L.
        num_heads: H.
        head_dim: width of each head's queries, keys and values.
        ffn_width: m, hidden width of each block's MLP (0: no MLP).
        rpe: the position bias family (`pdeflow.models.relative_position.RPE_FAMILIES`).
        dot_product: whether logits include ``q·k`` (False: position-only attention).
        num_buckets, max_distance: the T5 buckets (and ``max_distance`` for the table family).
    """

    input_dim: int = 1
    model_dim: int = 32
    num_layers: int = 1
    num_heads: int = 2
    head_dim: int = 16
    ffn_width: int = 64
    rpe: str = "t5"
    dot_product: bool = True
    num_buckets: int = 64
    max_distance: int = 128

    def __post_init__(self):
        rpe.check_family(self.rpe)
        for name in ("input_dim", "model_dim", "num_layers", "num_heads", "head_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}.")
        if self.ffn_width < 0:
            raise ValueError(f"ffn_width must be >= 0; got {self.ffn_width}.")
        if self.rpe == "t5":
            rpe.t5_buckets(0, self.num_buckets, self.max_distance)  # validates the bucket settings


class Block(nn.Module):
    """One pre-LN causal block: ``(B, N, d) -> ((B, N, d), maps (B, H, N, N))``."""

    config: RPETransformerConfig

    @nn.compact
    def __call__(self, x):
        c = self.config
        batch, n, _ = x.shape
        h = nn.LayerNorm(name="attention_norm")(x)

        def heads(name):
            return split_heads(nn.Dense(c.num_heads * c.head_dim, name=name)(h), c.num_heads)

        q_k = (heads("query"), heads("key")) if c.dot_product else None
        bias = None
        if c.rpe != "none":
            init = rpe.initial_weights(c.rpe, c.num_heads, c.num_buckets, c.max_distance)
            weights = self.param("position_bias", lambda _: jnp.asarray(init))
            bias = rpe.relative_bias(c.rpe, weights, n, c.num_buckets, c.max_distance)[None]  # (1, H, N, N)
        if c.dot_product:
            probs = attention_probabilities(*q_k, causal=True, bias=bias, masked_logit=MASKED_LOGIT)
        else:  # position-only maps are one (1, H, N, N) array for the whole batch: no per-input softmax
            logits = jnp.zeros((1, 1, n, n)) if bias is None else jnp.zeros((1, 1, n, n)) + bias
            probs = masked_softmax(logits, causal_mask(n), MASKED_LOGIT)
            probs = jnp.broadcast_to(probs, (1, c.num_heads, n, n))
        v = heads("value")
        context = attend(probs if c.dot_product else probs[0], v)
        probs = jnp.broadcast_to(probs, (batch, c.num_heads, n, n))
        x = x + nn.Dense(c.model_dim, name="attention_out")(merge_heads(context))
        if c.ffn_width:
            h = nn.LayerNorm(name="mlp_norm")(x)
            x = x + nn.Dense(c.model_dim, name="mlp_out")(jax.nn.gelu(nn.Dense(c.ffn_width, name="mlp_in")(h)))
        return x, probs


class RPETransformer(nn.Module):
    """``apply(params, x (B, N, input_dim)) -> (predictions (B, N), Trace)``; ``Trace.hidden[l]`` is the stream
    entering block ``l`` and ``Trace.attention[l]`` its causal maps."""

    config: RPETransformerConfig

    @nn.compact
    def __call__(self, x) -> tuple[jax.Array, Trace]:
        c = self.config
        if x.ndim != 3 or x.shape[-1] != c.input_dim:
            raise ValueError(f"inputs must have shape (B, N, {c.input_dim}); got {x.shape}.")
        x = nn.Dense(c.model_dim, name="embedding")(x)
        hidden, attention = [x], []
        for layer in range(c.num_layers):
            x, probs = Block(c, name=f"layer_{layer}")(x)
            hidden.append(x)
            attention.append(probs)
        out = nn.Dense(1, name="head")(nn.LayerNorm(name="final_norm")(x))[..., 0]
        mask = jnp.ones(x.shape[:2], bool)
        return out, Trace(jnp.stack(hidden), jnp.stack(attention), mask)

