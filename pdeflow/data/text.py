"""Sentences from CPython's own documentation (``pydoc_data.topics``), which ships with every Python."""

from __future__ import annotations

import re
import textwrap

import numpy as np

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def _prose_paragraphs(text: str, indented: bool = False):
    """Paragraphs of running text, lines joined. ``indented``: only the paragraphs indented as a block (notes and
    descriptions set under a definition), dedented, instead of the unindented ones."""
    from pdeflow.data.pydoc_corpus import _CODE_LINE

    for paragraph in re.split(r"\n\s*\n", text):
        lines = paragraph.splitlines()
        if indented:
            if not lines or not any(line.startswith((" ", "\t")) for line in lines):
                continue
            lines = textwrap.dedent(paragraph).splitlines()
            if any(_CODE_LINE.match(line) for line in lines if line.strip()):
                continue
        if not lines or any(line.startswith((" ", "\t")) for line in lines):  # code, grammar, tables
            continue
        joined = " ".join(line.strip() for line in lines)
        if "::=" in joined or ">>>" in joined or joined.startswith(("*", "-", "=", "+")):
            continue
        yield joined


def split_sentences(text: str, min_words: int = 5, max_words: int = 40, indented: bool = False) -> list[str]:
    """Prose sentences of ``text`` with ``min_words..max_words`` words, in order, without duplicates
    (``indented``: of its block-indented prose instead, `_prose_paragraphs`)."""
    seen, sentences = set(), []
    for paragraph in _prose_paragraphs(text, indented):
        for sentence in _SENTENCE_END.split(paragraph):
            sentence = " ".join(sentence.split())
            words = len(sentence.split())
            if min_words <= words <= max_words and sentence.endswith(".") and sentence not in seen:
                seen.add(sentence)
                sentences.append(sentence)
    return sentences


def pydoc_sentences(min_words: int = 5, max_words: int = 40, indented: bool = False) -> list[str]:
    """All prose sentences of the pydoc topics, in a fixed order (topics sorted by name): those of the
    unindented paragraphs (about 1,100), or with ``indented`` those of the prose set under definitions (about
    600 more; none is also an unindented sentence)."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name] for name in sorted(topics))
    sentences = split_sentences(text, min_words, max_words, indented)
    if indented:
        plain = set(split_sentences(text, min_words, max_words))
        sentences = [s for s in sentences if s not in plain]
    return sentences


def split_indices(count: int, sizes: tuple[int, ...], seed: int) -> tuple[np.ndarray, ...]:
    """Disjoint random index sets of the given sizes from ``range(count)`` (seeded)."""
    if sum(sizes) > count:
        raise ValueError(f"asked for {sum(sizes)} inputs ({' + '.join(map(str, sizes))}) but only {count} are "
                         "available; lower the split sizes or widen the token-length range.")
    order = np.random.default_rng(seed).permutation(count)
    bounds = np.cumsum((0,) + tuple(sizes))
    return tuple(order[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
