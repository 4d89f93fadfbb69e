"""GPT-2 checkpoints (Hugging Face ``GPT2Model`` / ``GPT2LMHeadModel`` layouts): a causal decoder of
pre-LayerNorm blocks (`pdeflow.models.checkpoints.blocks.PreNormBlock`, ``gelu_new``), learned positions, a final
LayerNorm and the language-model head (the token embedding transposed, or ``lm_head`` if untied).

``Conv1D`` weights are stored ``(in, out)`` (Flax's kernel layout); ``c_attn`` holds the query, key and value
maps side by side. ``Trace.hidden[L]`` is the last block's output *before* ``ln_f`` (Hugging Face's last
``hidden_states`` entry is after it): the logit lens reads every layer the same way, ``lm_head(ln_f(h))``.
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

TANH_GELU = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")  # the tanh approximation (up to round-off)


@dataclasses.dataclass(frozen=True)
class GPT2Architecture:
    """A GPT-2 checkpoint's shape: ``num_layers`` causal blocks of ``num_heads`` heads over width
    ``hidden_size``, MLP width ``mlp_size``, ``context_size`` positions, ``vocab_size`` tokens; ``tanh_gelu``
    (``gelu_new``) or the exact GELU; ``tied``: the LM head is the token embedding transposed."""

    vocab_size: int
    context_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_size: int
    layer_norm_eps: float
    tanh_gelu: bool = True
    tied: bool = True
    model_type: str = "gpt2"

    def shape(self) -> CheckpointShape:
        d, m = self.hidden_size, self.mlp_size
        weights = (self.vocab_size * (1 if self.tied else 2) + self.context_size + 2) * d + \
            self.num_layers * (4 * d * d + 4 * d + 2 * d * m + m + d + 4 * d)
        return CheckpointShape(self.model_type, "text", True, "layer", self.num_layers, self.num_heads, d,
                               d // self.num_heads, (), 0, self.context_size, weights)

    def module(self) -> nn.Module:
        return GPT2Decoder(self)

    def load_params(self, read: WeightReader) -> dict:
        d, m, v = self.hidden_size, self.mlp_size, self.vocab_size

        def conv(name, into, out):
            return {"kernel": read(f"{name}.weight", (into, out)), "bias": read(f"{name}.bias", (out,))}

        def norm(name):
            return {"scale": read(f"{name}.weight", (d,)), "bias": read(f"{name}.bias", (d,))}

        params = {"token_embedding": {"embedding": read("wte.weight", (v, d))},
                  "position_embeddings": read("wpe.weight", (self.context_size, d)), "final_norm": norm("ln_f")}
        for layer in range(self.num_layers):
            p = f"h.{layer}."
            qkv = conv(p + "attn.c_attn", d, 3 * d)
            params[f"layer_{layer}"] = {
                "attention_norm": norm(p + "ln_1"), "mlp_norm": norm(p + "ln_2"),
                **{name: {"kernel": qkv["kernel"][:, i * d:(i + 1) * d], "bias": qkv["bias"][i * d:(i + 1) * d]}
                   for i, name in enumerate(("query", "key", "value"))},
                "attention_out": conv(p + "attn.c_proj", d, d),
                "mlp_in": conv(p + "mlp.c_fc", d, m), "mlp_out": conv(p + "mlp.c_proj", m, d)}
        if not self.tied:
            head = read.unprefixed()  # the head sits outside the trunk (``transformer.``)
            params["unembedding"] = {"kernel": head("lm_head.weight", (v, d)).T}
        return {"params": params}

    def block_weights(self, params: dict):
        return pre_norm_block_weights(params, self.num_layers, self.num_heads)

    def readout(self, params: dict):
        """``(norm, unembedding (d, V), None)``: ``logits = norm(h) · unembedding``."""
        p = params["params"]
        final = p["final_norm"]
        norm = lambda h: nn.LayerNorm(self.layer_norm_eps).apply({"params": final}, h)  # noqa: E731
        unembedding = p["token_embedding"]["embedding"].T if self.tied else p["unembedding"]["kernel"]
        return norm, jnp.asarray(unembedding), None


class GPT2Decoder(nn.Module):
    """``apply(params, input_ids, token_type_ids, mask) -> Trace`` (token types are ignored), or with
    ``logits=True`` the next-token logits ``(B, N, V)``. Padding must come after the real tokens."""

    architecture: GPT2Architecture

    @nn.compact
    def __call__(self, input_ids, token_type_ids, mask, logits: bool = False):
        a = self.architecture
        if input_ids.shape[1] > a.context_size:
            raise ValueError(f"inputs have {input_ids.shape[1]} tokens but the model has only {a.context_size} "
                             "positions; truncate the inputs (max_tokens).")
        mask = mask.astype(bool)
        embedding = nn.Embed(a.vocab_size, a.hidden_size, name="token_embedding")
        positions = self.param("position_embeddings", nn.initializers.zeros, (a.context_size, a.hidden_size))
        x = embedding(input_ids) + positions[: input_ids.shape[1]]
        hidden, attention = [x], []
        for layer in range(a.num_layers):
            x, probs = PreNormBlock(a.num_heads, a.mlp_size, a.layer_norm_eps, causal=True, tanh_gelu=a.tanh_gelu,
                                    name=f"layer_{layer}")(x, mask)
            hidden.append(x)
            attention.append(probs)
        if not logits:
            return Trace(jnp.stack(hidden), jnp.stack(attention), mask)
        x = nn.LayerNorm(a.layer_norm_eps, name="final_norm")(x)
        return embedding.attend(x) if a.tied else nn.Dense(a.vocab_size, use_bias=False, name="unembedding")(x)


def gpt2_architecture(config: dict, folder: Path, model_type: str = "gpt2") -> GPT2Architecture:
    """The architecture of a ``gpt2`` config.json; ``ValueError`` for options pdeflow does not compute."""
    refuse(config, folder, "activation_function", (*TANH_GELU, "gelu"), "gelu_new",
           "GELU, its tanh approximation or the exact one")
    refuse(config, folder, "scale_attn_weights", (True,), True, "logits divided by the square root of the head width")
    refuse(config, folder, "scale_attn_by_inverse_layer_idx", (False,), False, "the same logit scale in every block")
    refuse(config, folder, "add_cross_attention", (False,), False, "a decoder without cross-attention")
    value = lambda key, **kw: config_value(config, key, folder, **kw)  # noqa: E731
    d = value("n_embd")
    arch = GPT2Architecture(value("vocab_size"), value("n_positions"), d, value("n_layer"), value("n_head"),
                            value("n_inner", default=4 * d), value("layer_norm_epsilon", default=1e-5, kind=float),
                            config.get("activation_function", "gelu_new") in TANH_GELU,
                            bool(config.get("tie_word_embeddings", True)), model_type)
    check_heads(d, arch.num_heads, folder, "n_embd", "n_head")
    return arch


PREFIXES = ("transformer.",)
PROBE = "wte.weight"
