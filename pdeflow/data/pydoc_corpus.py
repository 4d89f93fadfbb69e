"""CPython's pydoc topics (``pydoc_data.topics``, shipped with every Python) as a character-level corpus whose
paragraphs are labelled by kind of text.

Kinds (`TEXT_KINDS`), decided from the paragraph's layout alone:

* ``grammar``: keyword definitions, grammar productions containing ``::=``;
* ``code``: indented blocks in which at least half of the lines look like Python (``>>>``, ``def``,
  assignments, ...);
* ``list``: paragraphs that open with a bullet (``*``, ``-``) or a number (``1.``);
* ``prose``: unindented running text (headings excluded).

Everything else (headings, indented notes, tables) is ``other``: it is part of the training text but is never
a prompt. Paragraphs are split into a training part (the language models learn from it) and a held-out part
(every profile and classifier reads only it), stratified by kind and seeded.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

TEXT_KINDS = ("prose", "code", "list", "grammar")
UNKNOWN = "\x00"  # character id 0: any character not in the vocabulary

_CODE_LINE = re.compile(r"^\s*(>>>|\.\.\.|def |class |for |if |elif |else:|import |from \S+ import|print\(|return |"
                        r"while |with |try:|except|raise |@|#|[A-Za-z_][\w.\[\]]* = )")
_NOTE = re.compile(r"^\s*(Note:|Changed in|Added in|Deprecated|See also|Warning:|New in)")
_UNDERLINE = re.compile(r"^[*=\-+^~]+$")


@dataclasses.dataclass(frozen=True)
class Paragraph:
    """One paragraph of a topic: ``topic`` name, ``kind`` (one of `TEXT_KINDS` or ``"other"``), ``text``."""

    topic: str
    kind: str
    text: str


def text_kind(paragraph: str) -> str:
    """The kind of a paragraph (see the module docstring)."""
    lines = [line for line in paragraph.splitlines() if line.strip()]
    if not lines:
        return "other"
    stripped = paragraph.strip()
    if "::=" in paragraph:
        return "grammar"
    if stripped.startswith(("* ", "- ")) or re.match(r"\d+\. ", stripped):
        return "list"
    if all(line.startswith("   ") for line in lines):
        code_lines = sum(bool(_CODE_LINE.match(line)) for line in lines)
        return "code" if not _NOTE.match(lines[0]) and 2 * code_lines >= len(lines) else "other"
    if paragraph.startswith(" ") or _UNDERLINE.match(lines[-1].strip()):
        return "other"
    return "prose"


def pydoc_paragraphs() -> list[Paragraph]:
    """Every distinct non-empty paragraph of the pydoc topics, topics in sorted order (a paragraph repeated
    verbatim, such as a recurring note, is kept once, so that no held-out text is also training text)."""
    from pydoc_data.topics import topics

    seen, paragraphs = set(), []
    for name in sorted(topics):
        for p in re.split(r"\n\s*\n", topics[name]):
            text = p.strip("\n")
            if text.strip() and text not in seen:
                seen.add(text)
                paragraphs.append(Paragraph(name, text_kind(text), text))
    return paragraphs


def corpus_vocabulary() -> str:
    """The characters of the pydoc topics, sorted, after `UNKNOWN` (id 0)."""
    from pydoc_data.topics import topics

    return UNKNOWN + "".join(sorted(set("".join(topics.values())) - {UNKNOWN}))


def encode(text: str, vocabulary: str) -> np.ndarray:
    """``str -> (len,) int32`` character ids (unknown characters -> 0)."""
    index = {c: i for i, c in enumerate(vocabulary)}
    return np.fromiter((index.get(c, 0) for c in text), np.int32, len(text))


def decode(ids, vocabulary: str) -> str:
    return "".join(vocabulary[i] for i in np.asarray(ids).ravel())


@dataclasses.dataclass(frozen=True)
class CorpusSplit:
    """Paragraphs split for training and measurement.

    Attributes:
        train: paragraphs the language models learn from.
        held_out: paragraphs no model sees in training; prompts come from here.
    """

    train: tuple[Paragraph, ...]
    held_out: tuple[Paragraph, ...]

    def train_text(self) -> str:
        return "\n\n".join(p.text for p in self.train)


def split_corpus(held_out_fraction: float = 0.3, seed: int = 0) -> CorpusSplit:
    """Hold out ``held_out_fraction`` of each kind's paragraphs (seeded, at least one per kind)."""
    if not 0 < held_out_fraction < 1:
        raise ValueError(f"held_out_fraction must be in (0, 1); got {held_out_fraction}.")
    paragraphs = pydoc_paragraphs()
    rng = np.random.default_rng(seed)
    held = np.zeros(len(paragraphs), bool)
    for kind in (*TEXT_KINDS, "other"):
        members = np.flatnonzero([p.kind == kind for p in paragraphs])
        count = max(1, round(held_out_fraction * len(members))) if len(members) else 0
        held[rng.permutation(members)[:count]] = True
    return CorpusSplit(tuple(p for p, h in zip(paragraphs, held) if not h),
                       tuple(p for p, h in zip(paragraphs, held) if h))


@dataclasses.dataclass(frozen=True)
class Prompts:
    """Fixed-length character windows from held-out paragraphs.

    Attributes:
        text: the windows, each ``length`` characters.
        kind: ``(P,)`` index into `TEXT_KINDS`.
        paragraph: ``(P,)`` the paragraph each window comes from (for grouped cross-validation: windows of
            one paragraph never sit on both sides of a split).
    """

    text: tuple[str, ...]
    kind: np.ndarray
    paragraph: np.ndarray

    def __len__(self) -> int:
        return len(self.text)


def kind_prompts(paragraphs, length: int = 48, per_paragraph: int = 3) -> Prompts:
    """Up to ``per_paragraph`` non-overlapping ``length``-character windows from the start of each paragraph of
    one of `TEXT_KINDS` (paragraphs shorter than ``length`` give none)."""
    if length < 2 or per_paragraph < 1:
        raise ValueError(f"need length >= 2 and per_paragraph >= 1; got {length} and {per_paragraph}.")
    texts, kinds, groups = [], [], []
    for i, p in enumerate(paragraphs):
        if p.kind not in TEXT_KINDS:
            continue
        for w in range(min(per_paragraph, len(p.text) // length)):
            texts.append(p.text[w * length:(w + 1) * length])
            kinds.append(TEXT_KINDS.index(p.kind))
            groups.append(i)
    if not texts:
        raise ValueError(f"no paragraph of kinds {TEXT_KINDS} has {length} characters; lower length.")
    return Prompts(tuple(texts), np.asarray(kinds), np.asarray(groups))
