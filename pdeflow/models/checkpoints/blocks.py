"""The pre-LayerNorm block that Hugging Face's ViT and GPT-2 share (``x + Attn(LN(x))``, then
``x + MLP(LN(x))``), with the parameter names of pdeflow's own ViT and GPT blocks (``attention_norm``,
``query``, ``key``, ``value``, ``attention_out``, ``mlp_norm``, ``mlp_in``, ``mlp_out``), and its `BlockWeights`."""

from __future__ import annotations

import flax.linen as nn
import jax

from pdeflow.models.attention import attend, attention_probabilities, merge_heads, split_heads
from pdeflow.models.block_weights import BlockWeights, from_dense


class PreNormBlock(nn.Module):
    """``(x (B, N, d), mask (B, N) or None) -> (x', probs (B, H, N, N))``.

    Attributes: num_heads; mlp_size (the MLP's hidden width); layer_norm_eps; causal (keys after the query are
    masked); tanh_gelu (the tanh approximation of GELU, GPT-2's ``gelu_new``, instead of the exact one). The
    logits are divided by ``√d_h``."""

    num_heads: int
    mlp_size: int
    layer_norm_eps: float
    causal: bool = False
    tanh_gelu: bool = False

    @nn.compact
    def __call__(self, x, mask=None):
        width = x.shape[-1]
        h = nn.LayerNorm(self.layer_norm_eps, name="attention_norm")(x)
        q, k, v = (split_heads(nn.Dense(width, name=name)(h), self.num_heads) for name in ("query", "key", "value"))
        probs = attention_probabilities(q, k, mask=mask, causal=self.causal)
        x = x + nn.Dense(width, name="attention_out")(merge_heads(attend(probs, v)))
        h = nn.LayerNorm(self.layer_norm_eps, name="mlp_norm")(x)
        h = jax.nn.gelu(nn.Dense(self.mlp_size, name="mlp_in")(h), approximate=self.tanh_gelu)
        return x + nn.Dense(width, name="mlp_out")(h), probs


def pre_norm_block_weights(params: dict, num_layers: int, num_heads: int) -> list[BlockWeights]:
    """Every `PreNormBlock`'s weights, its LayerNorms' gains and biases folded into the maps after them."""
    blocks = []
    for layer in range(num_layers):
        p = params["params"][f"layer_{layer}"]
        blocks.append(from_dense(p["query"], p["key"], p["value"], p["attention_out"], num_heads, "layer",
                                 norm=p["attention_norm"], mlp=(p["mlp_norm"], p["mlp_in"], p["mlp_out"])))
    return blocks
