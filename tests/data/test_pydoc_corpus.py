"""The pydoc topics as a labelled character corpus."""

import numpy as np
import pytest

from pdeflow.data.pydoc_corpus import (
    TEXT_KINDS,
    Paragraph,
    corpus_vocabulary,
    decode,
    encode,
    kind_prompts,
    split_corpus,
    text_kind,
)


@pytest.mark.parametrize("paragraph, kind", [
    ("The \"for\" statement is used to iterate over the elements of a\nsequence.", "prose"),
    ("   for_stmt ::= \"for\" target_list \"in\" starred_list \":\" suite", "grammar"),
    ("   >>> d = {\"one\": 1}\n   >>> list(d)\n   ['one']", "code"),
    ("   def func(): pass\n   func = f1(arg)(f2(func))", "code"),
    ("* If the target is an identifier (name):\n  the name is bound.", "list"),
    ("1. The subject expression is evaluated.", "list"),
    ("The \"for\" statement\n*******************", "other"),  # a heading
    ("   Note: the right-hand side is evaluated first,\n   and then assigned.", "other"),  # an indented note
])
def test_text_kind_reads_the_layout(paragraph, kind):
    assert text_kind(paragraph) == kind


def test_split_is_disjoint_stratified_and_seeded():
    split = split_corpus(0.3, seed=0)
    train = {p.text for p in split.train}
    held = {p.text for p in split.held_out}
    assert not train & held and len(held) == len(split.held_out)  # no text on both sides, none repeated
    for kind in TEXT_KINDS:
        n_held = sum(p.kind == kind for p in split.held_out)
        n_all = n_held + sum(p.kind == kind for p in split.train)
        assert n_held == max(1, round(0.3 * n_all)), kind
    assert split_corpus(0.3, seed=0) == split
    assert split_corpus(0.3, seed=1).held_out != split.held_out
    with pytest.raises(ValueError, match="held_out_fraction"):
        split_corpus(1.0)


def test_prompts_are_windows_of_held_out_paragraphs_grouped_by_paragraph():
    paragraphs = [Paragraph("t", "prose", "a" * 100), Paragraph("t", "other", "b" * 100),
                  Paragraph("t", "code", "   x = 1\n" * 3), Paragraph("t", "grammar", "g ::= h")]
    prompts = kind_prompts(paragraphs, length=10, per_paragraph=3)
    assert all(len(t) == 10 for t in prompts.text)
    assert prompts.kind.tolist() == [0, 0, 0, 1, 1]  # 3 windows of prose, 2 of code, none of other or short grammar
    assert prompts.paragraph.tolist() == [0, 0, 0, 2, 2]
    with pytest.raises(ValueError, match="lower length"):
        kind_prompts(paragraphs[3:], length=50)


def test_encoding_round_trips_and_unknown_characters_map_to_zero():
    vocabulary = corpus_vocabulary()
    assert vocabulary[0] == "\x00" and len(set(vocabulary)) == len(vocabulary)
    text = "for x in range(10):"
    assert decode(encode(text, vocabulary), vocabulary) == text
    assert encode("\u2603", vocabulary).tolist() == [0]
    assert encode(text, vocabulary).dtype == np.int32
