"""Tokenising texts for a checkpoint's text model with its ``tokenizer.json`` (the ``tokenizers`` library): the
special tokens its post-processor adds, truncation to a token budget and right-padding to one width."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from pdeflow.models.minilm import Tokenized


def special_tokens(tokenizer) -> int:
    """How many special tokens the tokenizer's post-processor adds to one text (BERT's [CLS] and [SEP]: 2;
    GPT-2: 0)."""
    processor = tokenizer.post_processor
    return 0 if processor is None else int(processor.num_special_tokens_to_add(False))


def tokenize_texts(tokenizer, texts: Sequence[str], max_tokens: int, max_positions: int, pad_id: int = 0,
                   pad_to: int | None = None) -> Tokenized:
    """Tokenise ``texts`` (with the post-processor's special tokens), truncate each to ``max_tokens`` tokens and
    pad on the right with ``pad_id`` to ``pad_to`` (default: the longest input), as
    `pdeflow.models.minilm.PretrainedEncoder.tokenize` does.

    ``max_tokens``: an integer from ``max(1, special tokens)`` to the model's ``max_positions``; ``pad_to``: None
    or an integer at least the longest input. Returns `Tokenized` ids, token types, mask ``(B, N)`` and tokens."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        raise TypeError(f"pass a list of texts (strings), not {type(texts).__name__}.")
    texts = list(texts)
    if len(texts) == 0:
        raise ValueError("no texts to tokenise; give at least one.")
    wrong = [i for i, s in enumerate(texts) if not isinstance(s, str)]
    if wrong:
        raise TypeError(f"texts must be strings; item {wrong[0]} is {type(texts[wrong[0]]).__name__}.")
    specials = special_tokens(tokenizer)
    least = max(1, specials)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) or \
            not least <= max_tokens <= max_positions:
        counted = f" (the {specials} special tokens count)" if specials else ""
        raise ValueError(f"max_tokens must be an integer from {least}{counted} to the model's {max_positions} "
                         f"positions; got {max_tokens!r}.")
    tokenizer.enable_truncation(int(max_tokens))
    tokenizer.no_padding()
    encodings = tokenizer.encode_batch(texts)
    empty = [i for i, e in enumerate(encodings) if len(e.ids) == 0]
    if empty:
        raise ValueError(f"texts {empty[:5]} give no tokens (empty?); every text needs at least one token.")
    longest = max(len(e.ids) for e in encodings)
    if pad_to is not None and (isinstance(pad_to, bool) or not isinstance(pad_to, (int, np.integer))
                               or pad_to < longest):
        raise ValueError(f"pad_to must be None or an integer >= the longest input ({longest} tokens); got "
                         f"{pad_to!r}.")
    width = longest if pad_to is None else int(pad_to)
    ids = np.full((len(encodings), width), pad_id, np.int32)
    types, mask = np.zeros((len(encodings), width), np.int32), np.zeros((len(encodings), width), bool)
    for row, e in enumerate(encodings):
        n = len(e.ids)
        ids[row, :n], types[row, :n], mask[row, :n] = e.ids, e.type_ids, True
    return Tokenized(ids, types, mask, tuple(tuple(e.tokens) for e in encodings))
