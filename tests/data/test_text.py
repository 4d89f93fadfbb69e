import numpy as np
import pytest

from pdeflow.data import pydoc_sentences, split_indices, split_sentences

TEXT = """The first sentence is here. And a second one follows it.

    code = "indented blocks are skipped. Even with Sentences."

* A bullet line is skipped too.
Short one.
The first sentence is here."""


def test_split_sentences_keeps_prose_in_order_without_duplicates():
    assert split_sentences(TEXT, min_words=3, max_words=10) == ["The first sentence is here.",
                                                                 "And a second one follows it."]


def test_pydoc_sentences_are_deterministic_and_plentiful():
    sentences = pydoc_sentences()
    assert len(sentences) > 500
    assert sentences == pydoc_sentences()
    assert all(s.endswith(".") for s in sentences)


def test_split_indices_are_disjoint_seeded_and_checked():
    a = split_indices(100, (50, 20, 30), seed=3)
    assert [len(x) for x in a] == [50, 20, 30]
    assert len(set(np.concatenate(a).tolist())) == 100
    assert all((x == y).all() for x, y in zip(a, split_indices(100, (50, 20, 30), seed=3)))
    assert not (a[0] == split_indices(100, (50, 20, 30), seed=4)[0]).all()
    with pytest.raises(ValueError, match="only 100 are available"):
        split_indices(100, (80, 30), seed=0)


def test_indented_prose_is_more_text_and_none_of_it_is_code_or_a_repeat():
    plain, indented = pydoc_sentences(), pydoc_sentences(indented=True)
    assert len(indented) > 400 and not set(indented) & set(plain)
    assert not [s for s in indented if ">>>" in s or "::=" in s or s != s.strip()]
