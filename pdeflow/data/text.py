"""Sentences from CPython's own documentation (``pydoc_data.topics``), which ships with every Python."""

from __future__ import annotations

import re

import numpy as np

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _prose_paragraphs(text: str):
    for paragraph in re.split(r"\n\s*\n", text):
        lines = paragraph.splitlines()
        if not lines or any(line.startswith((" ", "\t")) for line in lines):  # code, grammar, tables
            continue
        joined = " ".join(line.strip() for line in lines)
        if "::=" in joined or ">>>" in joined or joined.startswith(("*", "-", "=", "+")):
            continue
        yield joined


def split_sentences(text: str, min_words: int = 5, max_words: int = 40) -> list[str]:
    """Prose sentences of ``text`` with ``min_words..max_words`` words, in order, without duplicates."""
    seen, sentences = set(), []
    for paragraph in _prose_paragraphs(text):
        for sentence in _SENTENCE_END.split(paragraph):
            sentence = " ".join(sentence.split())
            words = len(sentence.split())
            if min_words <= words <= max_words and sentence.endswith(".") and sentence not in seen:
                seen.add(sentence)
                sentences.append(sentence)
    return sentences


def pydoc_sentences(min_words: int = 5, max_words: int = 40) -> list[str]:
    """All prose sentences of the pydoc topics, in a fixed order (topics sorted by name)."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name] for name in sorted(topics))
    return split_sentences(text, min_words, max_words)


def split_indices(count: int, sizes: tuple[int, ...], seed: int) -> tuple[np.ndarray, ...]:
    """Disjoint random index sets of the given sizes from ``range(count)`` (seeded)."""
    if sum(sizes) > count:
        raise ValueError(f"asked for {sum(sizes)} inputs ({' + '.join(map(str, sizes))}) but only {count} are "
                         "available; lower the split sizes or widen the token-length range.")
    order = np.random.default_rng(seed).permutation(count)
    bounds = np.cumsum((0,) + tuple(sizes))
    return tuple(order[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
