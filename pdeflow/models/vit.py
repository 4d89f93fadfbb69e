"""A small Vision Transformer in Flax (pre-LayerNorm blocks, a class token, learned position embeddings) that
returns its class logits and a `Trace`, traced exactly like the text encoder.

Images are split into ``patch_size × patch_size`` patches in row-major order, so token ``1 + i·g + j`` is the
patch in grid row ``i``, column ``j`` of the ``g × g`` patch grid (``g = image_size / patch_size``); token 0
is the class token. ``Trace.hidden[l]`` is the residual stream entering block ``l`` and ``Trace.attention[l]``
the maps block ``l`` computes from it (after its LayerNorm), as for the text encoder.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from pdeflow.models.attention import attend, attention_probabilities, merge_heads, split_heads
from pdeflow.models.block_weights import BlockWeights, from_dense
from pdeflow.models.trace import Trace, run_in_batches


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Shape of the ViT.

    Attributes:
        image_size: side of the square, single-channel input images, in pixels.
        patch_size: side of a patch; must divide ``image_size``.
        hidden_size: d, the width of the residual stream.
        num_layers: L, transformer blocks.
        num_heads: H, attention heads (must divide ``hidden_size``).
        mlp_size: hidden width of each block's MLP.
        num_classes: outputs of the classification head (read from the class token).
        layer_norm_eps: epsilon of every LayerNorm.
    """

    image_size: int = 8
    patch_size: int = 2
    hidden_size: int = 96
    num_layers: int = 6
    num_heads: int = 4
    mlp_size: int = 192
    num_classes: int = 10
    layer_norm_eps: float = 1e-6

    def __post_init__(self):
        for name in ("image_size", "patch_size", "hidden_size", "num_layers", "num_heads", "mlp_size",
                     "num_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}.")
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} must divide image_size {self.image_size}.")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"num_heads {self.num_heads} must divide hidden_size {self.hidden_size}.")

    @property
    def grid_size(self) -> int:
        """g: the patch grid is ``g × g``."""
        return self.image_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        """``1 + g²``: the class token, then the patches in row-major order."""
        return 1 + self.grid_size**2

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def image_patches(images: jax.Array, patch_size: int) -> jax.Array:
    """``(B, S, S) -> (B, g², p²)``: non-overlapping patches in row-major grid order, each flattened row-major."""
    batch, size, _ = images.shape
    g = size // patch_size
    return (images.reshape(batch, g, patch_size, g, patch_size).transpose(0, 1, 3, 2, 4)
            .reshape(batch, g * g, patch_size * patch_size))


class Block(nn.Module):
    """``x + Attn(LN(x))`` then ``+ MLP(LN(·))``; returns the new stream and the maps ``(B, H, N, N)``."""

    config: ViTConfig

    @nn.compact
    def __call__(self, x, head_mask=None):
        c = self.config
        h = nn.LayerNorm(c.layer_norm_eps, name="attention_norm")(x)
        q, k, v = (split_heads(nn.Dense(c.hidden_size, name=name)(h), c.num_heads)
                   for name in ("query", "key", "value"))
        probs = attention_probabilities(q, k)
        context = attend(probs, v)  # (B, N, H, d_h)
        if head_mask is not None:  # pruning: a removed head adds nothing to the block's output
            context = context * head_mask[None, None, :, None]
        x = x + nn.Dense(c.hidden_size, name="attention_out")(merge_heads(context))
        h = nn.LayerNorm(c.layer_norm_eps, name="mlp_norm")(x)
        h = nn.Dense(c.hidden_size, name="mlp_out")(jax.nn.gelu(nn.Dense(c.mlp_size, name="mlp_in")(h)))
        return x + h, probs


class ViT(nn.Module):
    """``apply(params, images (B, S, S), head_mask (L, H) = None) -> (logits (B, C), Trace)``; every token is
    real (mask all True). ``head_mask`` scales each head's output (0 removes a head, as in head pruning)."""

    config: ViTConfig

    @nn.compact
    def __call__(self, images, head_mask=None) -> tuple[jax.Array, Trace]:
        c = self.config
        if images.ndim != 3 or images.shape[1:] != (c.image_size, c.image_size):
            raise ValueError(f"images must have shape (B, {c.image_size}, {c.image_size}); got {images.shape}.")
        x = nn.Dense(c.hidden_size, name="patch_embedding")(image_patches(images, c.patch_size))
        cls = self.param("class_token", nn.initializers.normal(0.02), (1, 1, c.hidden_size))
        positions = self.param("position_embeddings", nn.initializers.normal(0.02), (1, c.num_tokens, c.hidden_size))
        x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, c.hidden_size)), x], axis=1) + positions
        hidden, attention = [x], []
        for layer in range(c.num_layers):
            x, probs = Block(c, name=f"layer_{layer}")(x, None if head_mask is None else head_mask[layer])
            hidden.append(x)
            attention.append(probs)
        logits = nn.Dense(c.num_classes, name="head")(nn.LayerNorm(c.layer_norm_eps, name="final_norm")(x[:, 0]))
        mask = jnp.ones(x.shape[:2], bool)
        return logits, Trace(jnp.stack(hidden), jnp.stack(attention), mask)


def vit_block_weights(params: dict, config: ViTConfig) -> list[BlockWeights]:
    """Every block's weights (`pdeflow.models.block_weights`), each pre-LayerNorm's gain and bias folded into
    the maps after it."""
    blocks = []
    for layer in range(config.num_layers):
        p = params["params"][f"layer_{layer}"]
        blocks.append(from_dense(p["query"], p["key"], p["value"], p["attention_out"], config.num_heads, "layer",
                                 norm=p["attention_norm"], mlp=(p["mlp_norm"], p["mlp_in"], p["mlp_out"])))
    return blocks


@functools.partial(jax.jit, static_argnums=0)
def vit_forward(config: ViTConfig, params, images):
    """``(logits (B, classes), Trace)`` of ``images (B, S, S)`` (jitted; one compile per shape)."""
    return ViT(config).apply(params, images)


def run_vit(config: ViTConfig, params, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, Trace]:
    """``(logits (B, classes), Trace)`` of ``images (B, S, S)``: hidden ``(L+1, B, 1+g², d)``, attention
    ``(L, B, H, N, N)`` (numpy; fixed-size batches, one compile)."""
    images = np.asarray(images, np.float32)
    if images.ndim != 3 or images.shape[0] == 0:
        raise ValueError(f"images must have shape (B, S, S) with B >= 1; got {images.shape}.")
    return run_in_batches(lambda x: vit_forward(config, params, x), (images,), batch_size)
