"""Inputs that ship with the machine (no downloads)."""

from pdeflow.data.batches import bucket_lengths, fixed_size_batches, shuffled_batches, token_lengths
from pdeflow.data.text import pydoc_sentences, split_indices, split_sentences

__all__ = ["bucket_lengths", "fixed_size_batches", "pydoc_sentences", "shuffled_batches", "split_indices",
           "split_sentences", "token_lengths"]
