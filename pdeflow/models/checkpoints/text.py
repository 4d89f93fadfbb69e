"""Tokenising texts for a checkpoint's text model with its ``tokenizer.json`` (the ``tokenizers`` library): the
special tokens its post-processor adds, truncation to a token budget and right-padding to one width."""

from __future__ import annotations

from collections.abc import Sequence

from pdeflow.models.tokenized import Tokenized, check_max_tokens, check_texts, encode_padded


def special_tokens(tokenizer) -> int:
    """How many special tokens the tokenizer's post-processor adds to one text (BERT's [CLS] and [SEP]: 2;
    GPT-2: 0)."""
    processor = tokenizer.post_processor
    return 0 if processor is None else int(processor.num_special_tokens_to_add(False))


def tokenize_texts(tokenizer, texts: Sequence[str], max_tokens: int, max_positions: int, pad_id: int = 0,
                   pad_to: int | None = None) -> Tokenized:
    """Tokenise ``texts`` (with the post-processor's special tokens), truncate each to ``max_tokens`` tokens and
    pad on the right with ``pad_id`` to ``pad_to`` (default: the longest input), with
    `pdeflow.models.tokenized` as `pdeflow.models.minilm.PretrainedEncoder.tokenize` does; a text that gives no
    tokens is an error.

    ``max_tokens``: an integer from ``max(1, special tokens)`` to the model's ``max_positions``; ``pad_to``: None
    or an integer at least the longest input. Returns `Tokenized` ids, token types, mask ``(B, N)`` and tokens."""
    texts = check_texts(texts, "texts")
    specials = special_tokens(tokenizer)
    check_max_tokens(max_tokens, max(1, specials), max_positions,
                     f" (the {specials} special tokens count)" if specials else "")
    return encode_padded(tokenizer, texts, int(max_tokens), pad_to, pad_id, require_tokens=True)
