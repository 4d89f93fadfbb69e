"""Traced transformers: each returns a `Trace` of hidden states and attention maps; the multi-head attention
maths and the relative-position families they (and the attention-PDE) share."""

from pdeflow.models.attention import (
    allowed_keys,
    attend,
    attention_logits,
    attention_probabilities,
    causal_mask,
    masked_softmax,
    merge_heads,
    split_heads,
)
from pdeflow.models.bert import BertConfig, BertEncoder, mean_pooled_embedding
from pdeflow.models.checkpoints import SUPPORTED_MODEL_TYPES, PretrainedModel, load_pretrained, read_shape
from pdeflow.models.gpt import GPT, GPTConfig, lens_readout
from pdeflow.models.minilm import PretrainedEncoder, Tokenized, load_minilm, load_pretrained_encoder
from pdeflow.models.parameters import parameter_count, transformer_parameters
from pdeflow.models.relative_position import RPE_FAMILIES, relative_bias, t5_buckets
from pdeflow.models.rpe_transformer import RPETransformer, RPETransformerConfig
from pdeflow.models.trace import Trace, check_trace

__all__ = ["GPT", "RPE_FAMILIES", "BertConfig", "BertEncoder", "GPTConfig", "PretrainedEncoder", "RPETransformer",
           "RPETransformerConfig", "Tokenized", "Trace", "allowed_keys", "attend", "attention_logits",
           "attention_probabilities", "causal_mask", "check_trace", "lens_readout", "load_minilm",
           "load_pretrained_encoder", "masked_softmax", "mean_pooled_embedding", "merge_heads", "parameter_count",
           "relative_bias", "split_heads", "t5_buckets", "transformer_parameters",
           "SUPPORTED_MODEL_TYPES", "PretrainedModel", "load_pretrained", "read_shape"]
