"""ViT checkpoints (Hugging Face ``ViTModel`` layout): patches of ``num_channels`` images embedded by a
strided convolution (a dense map of each flattened patch here), a class token, learned positions and
pre-LayerNorm blocks with exact GELU (`pdeflow.models.checkpoints.blocks.PreNormBlock`).

Token 0 is the class token and token ``1 + i·w + j`` the patch in grid row ``i``, column ``j``, as in
`pdeflow.models.vit`. ``Trace.hidden[L]`` is the last block's output before the final LayerNorm (loaded, as
``final_norm``, but not applied); the pooler and any classifier are not loaded.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import flax.linen as nn
import jax.numpy as jnp

from pdeflow.models.checkpoints.blocks import PreNormBlock, pre_norm_block_weights
from pdeflow.models.checkpoints.folder import WeightReader, check_heads, config_value, refuse
from pdeflow.models.checkpoints.model import CheckpointShape
from pdeflow.models.trace import Trace

VIT_LAYER = {"attention_norm": "layernorm_before", "query": "attention.attention.query",
             "key": "attention.attention.key", "value": "attention.attention.value",
             "attention_out": "attention.output.dense", "mlp_norm": "layernorm_after", "mlp_in": "intermediate.dense",
             "mlp_out": "output.dense"}


@dataclasses.dataclass(frozen=True)
class ViTArchitecture:
    """A ViT checkpoint's shape: images ``image_size = (H, W)`` of ``num_channels`` channels cut into
    ``patch_size = (p_h, p_w)`` patches; ``num_layers`` blocks of ``num_heads`` heads over width ``hidden_size``,
    MLP width ``mlp_size``."""

    image_size: tuple[int, int]
    patch_size: tuple[int, int]
    num_channels: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_size: int
    layer_norm_eps: float
    model_type: str = "vit"

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1]

    @property
    def num_tokens(self) -> int:
        return 1 + self.grid[0] * self.grid[1]

    @property
    def patch_width(self) -> int:
        """``C·p_h·p_w``: the length of a flattened patch."""
        return self.num_channels * self.patch_size[0] * self.patch_size[1]

    def shape(self) -> CheckpointShape:
        d, m = self.hidden_size, self.mlp_size
        weights = (self.patch_width + 1) * d + (1 + self.num_tokens) * d + 2 * d + \
            self.num_layers * (4 * d * d + 4 * d + 2 * d * m + m + d + 4 * d)
        return CheckpointShape(self.model_type, "image", False, "layer", self.num_layers, self.num_heads, d,
                               d // self.num_heads, self.grid, 1, self.num_tokens, weights)

    def module(self) -> nn.Module:
        return ViTEncoder(self)

    def load_params(self, read: WeightReader) -> dict:
        d, m = self.hidden_size, self.mlp_size

        def dense(name, out, into):
            return {"kernel": read(f"{name}.weight", (out, into)).T, "bias": read(f"{name}.bias", (out,))}

        def norm(name):
            return {"scale": read(f"{name}.weight", (d,)), "bias": read(f"{name}.bias", (d,))}

        conv = read("embeddings.patch_embeddings.projection.weight", (d, self.num_channels, *self.patch_size))
        params = {"patch_embedding": {"kernel": conv.reshape(d, self.patch_width).T,
                                      "bias": read("embeddings.patch_embeddings.projection.bias", (d,))},
                  "class_token": read("embeddings.cls_token", (1, 1, d)),
                  "position_embeddings": read("embeddings.position_embeddings", (1, self.num_tokens, d)),
                  "final_norm": norm("layernorm")}
        shapes = {"query": (d, d), "key": (d, d), "value": (d, d), "attention_out": (d, d), "mlp_in": (m, d),
                  "mlp_out": (d, m)}
        for layer in range(self.num_layers):
            prefix = f"encoder.layer.{layer}."
            params[f"layer_{layer}"] = {k: norm(prefix + v) if k.endswith("norm") else
                                        dense(prefix + v, *shapes[k]) for k, v in VIT_LAYER.items()}
        return {"params": params}

    def block_weights(self, params: dict):
        return pre_norm_block_weights(params, self.num_layers, self.num_heads)


class ViTEncoder(nn.Module):
    """``apply(params, pixels (B, C, H, W)) -> Trace`` (every token real)."""

    architecture: ViTArchitecture

    @nn.compact
    def __call__(self, pixels) -> Trace:
        a = self.architecture
        batch = pixels.shape[0]
        (gh, gw), (ph, pw), d = a.grid, a.patch_size, a.hidden_size
        patches = (pixels.reshape(batch, a.num_channels, gh, ph, gw, pw).transpose(0, 2, 4, 1, 3, 5)
                   .reshape(batch, gh * gw, a.patch_width))  # each patch flattened (channel, row, column)
        x = nn.Dense(d, name="patch_embedding")(patches)
        cls = self.param("class_token", nn.initializers.zeros, (1, 1, d))
        positions = self.param("position_embeddings", nn.initializers.zeros, (1, a.num_tokens, d))
        x = jnp.concatenate([jnp.broadcast_to(cls, (batch, 1, d)), x], axis=1) + positions
        hidden, attention = [x], []
        for layer in range(a.num_layers):
            x, probs = PreNormBlock(a.num_heads, a.mlp_size, a.layer_norm_eps, name=f"layer_{layer}")(x)
            hidden.append(x)
            attention.append(probs)
        nn.LayerNorm(a.layer_norm_eps, name="final_norm")(x)  # the model's final norm: a parameter, unused here
        return Trace(jnp.stack(hidden), jnp.stack(attention), jnp.ones((batch, a.num_tokens), bool))


def pair(config: dict, key: str, folder: Path) -> tuple[int, int]:
    value = config.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v >= 1 for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"{folder / 'config.json'}: {key} must be a positive integer or [height, width]; got {value!r}.")


def vit_architecture(config: dict, folder: Path, model_type: str = "vit") -> ViTArchitecture:
    """The architecture of a ``vit`` config.json; ``ValueError`` for options pdeflow does not compute."""
    refuse(config, folder, "hidden_act", ("gelu",), "gelu", "the exact GELU")
    refuse(config, folder, "qkv_bias", (True,), True, "query, key and value maps with biases")
    value = lambda key, **kw: config_value(config, key, folder, **kw)  # noqa: E731
    image_size, patch_size = pair(config, "image_size", folder), pair(config, "patch_size", folder)
    if image_size[0] % patch_size[0] or image_size[1] % patch_size[1]:
        raise ValueError(f"{folder / 'config.json'}: patch_size {patch_size} must divide image_size {image_size}.")
    arch = ViTArchitecture(image_size, patch_size, value("num_channels", default=3), value("hidden_size"),
                           value("num_hidden_layers"), value("num_attention_heads"), value("intermediate_size"),
                           value("layer_norm_eps", default=1e-12, kind=float), model_type)
    check_heads(arch.hidden_size, arch.num_heads, folder, "hidden_size", "num_attention_heads")
    return arch


PREFIXES = ("vit.",)
PROBE = "embeddings.cls_token"
