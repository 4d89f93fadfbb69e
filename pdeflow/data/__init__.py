"""Inputs that ship with the machine (no downloads)."""

from pdeflow.data.text import pydoc_sentences, split_indices, split_sentences

__all__ = ["pydoc_sentences", "split_indices", "split_sentences"]
