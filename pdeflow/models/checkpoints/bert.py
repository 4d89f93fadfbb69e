"""BERT and RoBERTa checkpoints (Hugging Face ``BertModel`` / ``RobertaModel`` layouts): post-LayerNorm
encoders with learned absolute positions, token types and exact GELU, on `pdeflow.models.bert.Block`.

RoBERTa differs only in its positions: as Hugging Face computes them, real tokens take positions
``padding_idx + 1, padding_idx + 2, …`` and padding takes ``padding_idx`` (here from the mask, so padding must
come after the real tokens; a real token whose id is the pad id is still counted as real).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import flax.linen as nn
import jax.numpy as jnp

from pdeflow.models.bert import BertConfig, Block, bert_block_weights
from pdeflow.models.checkpoints.folder import WeightReader, check_heads, config_value, refuse
from pdeflow.models.checkpoints.model import CheckpointShape
from pdeflow.models.trace import Trace

# pdeflow's block parameter -> the Hugging Face BERT name under ``encoder.layer.{i}.``
BERT_LAYER = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
              "attention_out": "attention.output.dense", "attention_norm": "attention.output.LayerNorm",
              "intermediate": "intermediate.dense", "output": "output.dense", "output_norm": "output.LayerNorm"}
BERT_EMBEDDINGS = {"word_embeddings": "embeddings.word_embeddings", "position_embeddings":
                   "embeddings.position_embeddings", "token_type_embeddings": "embeddings.token_type_embeddings",
                   "embeddings_norm": "embeddings.LayerNorm"}


@dataclasses.dataclass(frozen=True)
class PostNormArchitecture:
    """A post-LayerNorm encoder checkpoint (bert, roberta, distilbert).

    Attributes:
        model_type: config.json's model_type.
        bert: the shape, as pdeflow's `BertConfig`.
        token_types: whether token-type embeddings are added (not DistilBERT's).
        padding_idx: RoBERTa's padding index (positions start after it), None for absolute positions from 0.
        layer_prefix: the checkpoint's name of layer ``{i}`` (``encoder.layer.{i}.`` / ``transformer.layer.{i}.``).
        layer_names, embedding_names: pdeflow parameter -> checkpoint weight name (without ``.weight``).
    """

    model_type: str
    bert: BertConfig
    token_types: bool = True
    padding_idx: int | None = None
    layer_prefix: str = "encoder.layer.{i}."
    layer_names: tuple[tuple[str, str], ...] = tuple(BERT_LAYER.items())
    embedding_names: tuple[tuple[str, str], ...] = tuple(BERT_EMBEDDINGS.items())

    @property
    def vocab_size(self) -> int:
        return self.bert.vocab_size

    @property
    def max_tokens(self) -> int:
        return self.bert.max_positions - (0 if self.padding_idx is None else self.padding_idx + 1)

    def shape(self) -> CheckpointShape:
        c = self.bert
        d, m = c.hidden_size, c.intermediate_size
        embeddings = (c.vocab_size + c.max_positions + (c.type_vocab_size if self.token_types else 0) + 2) * d
        blocks = c.num_layers * (4 * d * d + 4 * d + 2 * d * m + m + d + 4 * d)
        return CheckpointShape(self.model_type, "text", False, "none", c.num_layers, c.num_heads, d, c.head_dim, (),
                               0, self.max_tokens, embeddings + blocks)

    def module(self) -> nn.Module:
        return PostNormEncoder(self)

    def load_params(self, read: WeightReader) -> dict:
        c = self.bert
        d, m = c.hidden_size, c.intermediate_size
        embeddings = dict(self.embedding_names)

        def dense(name, out, into):
            return {"kernel": read(f"{name}.weight", (out, into)).T, "bias": read(f"{name}.bias", (out,))}

        def norm(name):
            return {"scale": read(f"{name}.weight", (d,)), "bias": read(f"{name}.bias", (d,))}

        params = {"word_embeddings": {"embedding": read(embeddings["word_embeddings"] + ".weight",
                                                        (c.vocab_size, d))},
                  "position_embeddings": {"embedding": read(embeddings["position_embeddings"] + ".weight",
                                                            (c.max_positions, d))},
                  "embeddings_norm": norm(embeddings["embeddings_norm"])}
        if self.token_types:
            params["token_type_embeddings"] = {"embedding": read(embeddings["token_type_embeddings"] + ".weight",
                                                                 (c.type_vocab_size, d))}
        for layer in range(c.num_layers):
            names = {k: self.layer_prefix.format(i=layer) + v for k, v in self.layer_names}
            params[f"layer_{layer}"] = {
                "attention": {k: dense(names[k], d, d) for k in ("query", "key", "value")},
                "attention_out": dense(names["attention_out"], d, d),
                "attention_norm": norm(names["attention_norm"]),
                "intermediate": dense(names["intermediate"], m, d),
                "output": dense(names["output"], d, m),
                "output_norm": norm(names["output_norm"]),
            }
        return {"params": params}

    def block_weights(self, params: dict):
        return bert_block_weights(params, self.bert)


class PostNormEncoder(nn.Module):
    """``apply(params, input_ids, token_type_ids, mask) -> Trace`` for int arrays ``(B, N)``; for BERT it is
    `pdeflow.models.bert.BertEncoder` exactly (same parameters, same operations)."""

    architecture: PostNormArchitecture

    @nn.compact
    def __call__(self, input_ids, token_type_ids, mask) -> Trace:
        a, c = self.architecture, self.architecture.bert
        if input_ids.shape[1] > a.max_tokens:
            raise ValueError(f"inputs have {input_ids.shape[1]} tokens but the model takes at most {a.max_tokens}; "
                             "truncate the inputs (max_tokens).")
        mask = mask.astype(bool)
        if a.padding_idx is None:
            positions = jnp.arange(input_ids.shape[1])[None, :]
        else:
            positions = jnp.where(mask, a.padding_idx + jnp.cumsum(mask, axis=1), a.padding_idx)
        x = (nn.Embed(c.vocab_size, c.hidden_size, name="word_embeddings")(input_ids)
             + nn.Embed(c.max_positions, c.hidden_size, name="position_embeddings")(positions))
        if a.token_types:
            x = x + nn.Embed(c.type_vocab_size, c.hidden_size, name="token_type_embeddings")(token_type_ids)
        x = nn.LayerNorm(c.layer_norm_eps, name="embeddings_norm")(x)
        hidden, attention = [x], []
        for layer in range(c.num_layers):
            x, probs = Block(c, name=f"layer_{layer}")(x, mask)
            hidden.append(x)
            attention.append(probs)
        return Trace(jnp.stack(hidden), jnp.stack(attention), mask)


def bert_architecture(config: dict, folder: Path, model_type: str) -> PostNormArchitecture:
    """The architecture of a ``bert`` or ``roberta`` config.json; ``ValueError`` for options pdeflow does not
    compute."""
    refuse(config, folder, "hidden_act", ("gelu",), "gelu", "the exact GELU")
    refuse(config, folder, "position_embedding_type", ("absolute",), "absolute", "learned absolute positions")
    refuse(config, folder, "add_cross_attention", (False,), False, "an encoder without cross-attention")
    refuse(config, folder, "is_decoder", (False,), False, "a bidirectional encoder")
    value = lambda key, **kw: config_value(config, key, folder, **kw)  # noqa: E731
    shape = BertConfig(vocab_size=value("vocab_size"), hidden_size=value("hidden_size"),
                       num_layers=value("num_hidden_layers"), num_heads=value("num_attention_heads"),
                       intermediate_size=value("intermediate_size"), max_positions=value("max_position_embeddings"),
                       type_vocab_size=value("type_vocab_size", default=2),
                       layer_norm_eps=value("layer_norm_eps", default=1e-12, kind=float))
    check_heads(shape.hidden_size, shape.num_heads, folder, "hidden_size", "num_attention_heads")
    padding_idx = None
    if model_type == "roberta":
        padding_idx = config.get("pad_token_id", 1)
        if not isinstance(padding_idx, int) or isinstance(padding_idx, bool) or \
                not 0 <= padding_idx < shape.max_positions - 1:
            raise ValueError(f"{folder / 'config.json'}: pad_token_id must be an integer below "
                             f"max_position_embeddings - 1 (RoBERTa's positions start after it); got {padding_idx!r}.")
    return PostNormArchitecture(model_type, shape, padding_idx=padding_idx)


PREFIXES = {"bert": ("bert.",), "roberta": ("roberta.",)}
PROBE = "embeddings.word_embeddings.weight"
