"""Tokenised texts: the `Tokenized` record (ids, token types, mask, token strings) and building it with a
``tokenizers.Tokenizer``: checking the texts and the token budget, truncating, right-padding to one width.

MiniLM (`pdeflow.models.minilm.PretrainedEncoder.tokenize`) and users' checkpoints
(`pdeflow.models.checkpoints.text.tokenize_texts`) both tokenise with these; each passes its own wording."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Tokenized:
    """Token ids ``(B, N)``, token types ``(B, N)``, mask ``(B, N)`` and the token strings per input."""

    input_ids: np.ndarray
    token_type_ids: np.ndarray
    mask: np.ndarray
    tokens: tuple[tuple[str, ...], ...]


def check_texts(texts, noun: str = "texts") -> list[str]:
    """``texts`` as a list: any iterable of strings (not one ``str`` or ``bytes``) with at least one item; a
    TypeError or ValueError that names them ``noun`` (e.g. "texts", "sentences") otherwise."""
    if isinstance(texts, (str, bytes)) or not isinstance(texts, Iterable):
        raise TypeError(f"pass a list of {noun} (strings), not {type(texts).__name__}.")
    texts = list(texts)
    if len(texts) == 0:
        raise ValueError(f"no {noun} to tokenise; give at least one.")
    wrong = [i for i, s in enumerate(texts) if not isinstance(s, str)]
    if wrong:
        raise TypeError(f"{noun} must be strings; item {wrong[0]} is {type(texts[wrong[0]]).__name__}.")
    return texts


def check_max_tokens(max_tokens, least: int, max_positions: int, counted: str = "") -> None:
    """A ValueError unless ``max_tokens`` is an integer (not a bool) from ``least`` to ``max_positions``; the
    message says ``counted`` after ``least`` (e.g. " (the [CLS] and [SEP] tokens count)")."""
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, (int, np.integer)) or \
            not least <= max_tokens <= max_positions:
        raise ValueError(f"max_tokens must be an integer from {least}{counted} to the model's {max_positions} "
                         f"positions; got {max_tokens!r}.")


def encode_padded(tokenizer, texts: list[str], max_tokens: int, pad_to: int | None = None, pad_id: int = 0,
                  require_tokens: bool = False) -> Tokenized:
    """Encode the B ``texts`` (checked: `check_texts`) with ``tokenizer`` (its post-processor's special tokens
    added), each truncated to ``max_tokens`` (checked: `check_max_tokens`), and right-pad to width N = ``pad_to``
    (default: the longest input; otherwise an integer at least that, else a ValueError).

    Returns `Tokenized`: ids ``(B, N)`` int32 (``pad_id`` past each input's end), token types ``(B, N)`` int32 (0
    there), mask ``(B, N)`` bool (True on the input's tokens) and each input's token strings. With
    ``require_tokens`` a text that gives no tokens at all is a ValueError. Sets the tokenizer's truncation to
    ``max_tokens`` and turns its padding off."""
    tokenizer.enable_truncation(max_tokens)
    tokenizer.no_padding()
    encodings = tokenizer.encode_batch(texts)
    if require_tokens:
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
