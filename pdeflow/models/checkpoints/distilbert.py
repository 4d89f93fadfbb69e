"""DistilBERT checkpoints (Hugging Face ``DistilBertModel`` layout): BERT's post-LayerNorm block without token
types, under other weight names; traced by `pdeflow.models.checkpoints.bert.PostNormEncoder`."""

from __future__ import annotations

from pathlib import Path

from pdeflow.models.bert import BertConfig
from pdeflow.models.checkpoints.bert import PostNormArchitecture
from pdeflow.models.checkpoints.folder import check_heads, config_value, refuse

# pdeflow's block parameter -> the Hugging Face DistilBERT name under ``transformer.layer.{i}.``
DISTILBERT_LAYER = {"query": "attention.q_lin", "key": "attention.k_lin", "value": "attention.v_lin",
                    "attention_out": "attention.out_lin", "attention_norm": "sa_layer_norm",
                    "intermediate": "ffn.lin1", "output": "ffn.lin2", "output_norm": "output_layer_norm"}
DISTILBERT_EMBEDDINGS = {"word_embeddings": "embeddings.word_embeddings",
                         "position_embeddings": "embeddings.position_embeddings",
                         "embeddings_norm": "embeddings.LayerNorm"}
LAYER_NORM_EPS = 1e-12  # fixed in Hugging Face's DistilBERT


def distilbert_architecture(config: dict, folder: Path, model_type: str = "distilbert") -> PostNormArchitecture:
    """The architecture of a ``distilbert`` config.json; ``ValueError`` for options pdeflow does not compute."""
    refuse(config, folder, "activation", ("gelu",), "gelu", "the exact GELU")
    value = lambda key, **kw: config_value(config, key, folder, **kw)  # noqa: E731
    shape = BertConfig(vocab_size=value("vocab_size"), hidden_size=value("dim"), num_layers=value("n_layers"),
                       num_heads=value("n_heads"), intermediate_size=value("hidden_dim"),
                       max_positions=value("max_position_embeddings"), type_vocab_size=1,
                       layer_norm_eps=LAYER_NORM_EPS)
    check_heads(shape.hidden_size, shape.num_heads, folder, "dim", "n_heads")
    return PostNormArchitecture(model_type, shape, token_types=False, layer_prefix="transformer.layer.{i}.",
                                layer_names=tuple(DISTILBERT_LAYER.items()),
                                embedding_names=tuple(DISTILBERT_EMBEDDINGS.items()))


PREFIXES = ("distilbert.",)
PROBE = "embeddings.word_embeddings.weight"
