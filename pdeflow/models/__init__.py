"""Traced transformers: each returns a `Trace` of hidden states and attention maps."""

from pdeflow.models.bert import BertConfig, BertEncoder, mean_pooled_embedding, parameter_count
from pdeflow.models.gpt import GPT, GPTConfig, lens_readout
from pdeflow.models.minilm import PretrainedEncoder, Tokenized, load_minilm, load_pretrained_encoder
from pdeflow.models.trace import Trace, check_trace

__all__ = ["GPT", "BertConfig", "BertEncoder", "GPTConfig", "PretrainedEncoder", "Tokenized", "Trace", "check_trace",
           "lens_readout", "load_minilm", "load_pretrained_encoder", "mean_pooled_embedding", "parameter_count"]
