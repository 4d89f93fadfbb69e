"""Tiny checkpoint folders for the loader tests, built without downloading: tokenizers trained here on a few
sentences, and (without transformers) a random BERT in Hugging Face's layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A transformer maps a sequence of tokens to a sequence of hidden states.",
    "Attention weights every token by how well its key matches the query.",
    "Partial differential equations describe how a field changes in time and space.",
    "Short one.",
    "Numbers like 3.14 and 42 appear too, with punctuation: commas, dots; and dashes - here.",
]
TEXTS = ["Hi.", "The lazy dog jumps over the quick brown fox.", "Attention maps tokens",
         "A field of hidden states changes in time, and the query matches its key well."]


def wordpiece_tokenizer(vocab_size: int = 200):
    """A BERT-style WordPiece tokenizer ([PAD] 0, [UNK] 1, [CLS] 2, [SEP] 3, [MASK] 4) adding [CLS] … [SEP]."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.train_from_iterator(CORPUS, trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tokenizer


def byte_level_tokenizer(specials: list[str], roberta: bool, vocab_size: int = 300):
    """A byte-level BPE tokenizer (GPT-2's kind); ``roberta`` adds <s> … </s> as RoBERTa's post-processor does."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(CORPUS, trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.post_processor = (processors.RobertaProcessing(("</s>", 2), ("<s>", 0)) if roberta
                                else processors.ByteLevel(trim_offsets=False))
    return tokenizer


BERT_CONFIG = {"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 200, "hidden_size": 32,
               "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
               "max_position_embeddings": 40, "type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu",
               "pad_token_id": 0, "position_embedding_type": "absolute"}


def bert_state_dict(config: dict, seed: int = 0, prefix: str = "") -> dict[str, np.ndarray]:
    """Random weights of a ``BertModel`` with ``config`` under Hugging Face's names (torch ``(out, in)`` layout)."""
    rng = np.random.default_rng(seed)
    d, m = config["hidden_size"], config["intermediate_size"]

    def w(*shape):
        return (0.2 * rng.standard_normal(shape)).astype(np.float32)

    weights = {"embeddings.word_embeddings.weight": w(config["vocab_size"], d),
               "embeddings.position_embeddings.weight": w(config["max_position_embeddings"], d),
               "embeddings.token_type_embeddings.weight": w(config["type_vocab_size"], d),
               "embeddings.LayerNorm.weight": 1 + w(d), "embeddings.LayerNorm.bias": w(d),
               "pooler.dense.weight": w(d, d), "pooler.dense.bias": w(d)}
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}."
        for name, shape in (("attention.self.query", (d, d)), ("attention.self.key", (d, d)),
                            ("attention.self.value", (d, d)), ("attention.output.dense", (d, d)),
                            ("intermediate.dense", (m, d)), ("output.dense", (d, m))):
            weights[p + name + ".weight"], weights[p + name + ".bias"] = w(*shape), w(shape[0])
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            weights[p + name + ".weight"], weights[p + name + ".bias"] = 1 + w(d), w(d)
    return {prefix + k: v for k, v in weights.items()}


def write_tiny_bert(folder: Path, config: dict | None = None, weights: dict | None = None) -> Path:
    """A complete BERT checkpoint folder (config.json, model.safetensors, tokenizer.json) made without
    transformers."""
    from safetensors.numpy import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = dict(BERT_CONFIG if config is None else config)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(bert_state_dict(config) if weights is None else weights, str(folder / "model.safetensors"))
    wordpiece_tokenizer(config["vocab_size"]).save(str(folder / "tokenizer.json"))
    return folder
