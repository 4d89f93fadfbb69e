"""`load_pretrained` and `read_shape`: a checkpoint folder's ``config.json`` picks the loader by its model_type."""

from __future__ import annotations

from pathlib import Path

from pdeflow.models.checkpoints import bert, distilbert, gpt2, vit
from pdeflow.models.checkpoints.folder import (
    WeightReader,
    check_memory,
    checkpoint_folder,
    read_config,
    read_tokenizer,
    read_weights,
)
from pdeflow.models.checkpoints.images import read_preprocessor
from pdeflow.models.checkpoints.model import CheckpointShape, PretrainedModel

# model_type -> (the architecture read from config.json, the head-model prefixes of its weights, a weight it has)
LOADERS = {
    "bert": (bert.bert_architecture, bert.PREFIXES["bert"], bert.PROBE),
    "roberta": (bert.bert_architecture, bert.PREFIXES["roberta"], bert.PROBE),
    "distilbert": (distilbert.distilbert_architecture, distilbert.PREFIXES, distilbert.PROBE),
    "vit": (vit.vit_architecture, vit.PREFIXES, vit.PROBE),
    "gpt2": (gpt2.gpt2_architecture, gpt2.PREFIXES, gpt2.PROBE),
}


def _architecture(folder: str | Path):
    folder = checkpoint_folder(folder)
    config, model_type = read_config(folder)
    return folder, config, model_type, LOADERS[model_type][0](config, folder, model_type)


def read_shape(folder: str | Path) -> CheckpointShape:
    """The checkpoint's `CheckpointShape` (layers, heads, widths, grid, prefix tokens, modality, causal, …) from
    its ``config.json`` alone: no weights are read. Raises the errors `load_pretrained` raises for the folder
    and its config."""
    return _architecture(folder)[3].shape()


def load_pretrained(folder: str | Path) -> PretrainedModel:
    """Load the Hugging Face-format checkpoint in ``folder`` for tracing.

    The folder holds ``config.json`` (its ``model_type`` one of `SUPPORTED_MODEL_TYPES`), the weights as
    ``model.safetensors`` (or shards listed in ``model.safetensors.index.json``), and ``tokenizer.json`` (text
    models) or ``preprocessor_config.json`` (ViT). Nothing is downloaded. Options pdeflow does not compute, weights
    missing or of the wrong shape, and models beyond 8 GiB of float32 weights are refused with a ``ValueError``
    that names the file and the fix; missing files raise ``FileNotFoundError``."""
    folder, config, model_type, architecture = _architecture(folder)
    shape = architecture.shape()
    check_memory(shape.num_weights, folder)
    tokenizer = preprocessor = None
    if shape.modality == "text":
        tokenizer = read_tokenizer(folder)
        if tokenizer.get_vocab_size() > architecture.vocab_size:
            raise ValueError(f"{folder / 'tokenizer.json'} has {tokenizer.get_vocab_size()} tokens but "
                             f"{folder / 'config.json'} a vocab_size of {architecture.vocab_size}; the tokenizer "
                             "is not this model's.")
    else:
        preprocessor = read_preprocessor(folder, architecture.image_size, architecture.num_channels)
    _, prefixes, probe = LOADERS[model_type]
    params = architecture.load_params(WeightReader(read_weights(folder), folder, prefixes, probe))
    pad = config.get("pad_token_id")
    vocab = getattr(architecture, "vocab_size", 0)
    pad = pad if isinstance(pad, int) and not isinstance(pad, bool) and 0 <= pad < vocab else 0
    fields = {k: getattr(shape, k) for k in ("model_type", "modality", "causal", "block_input_norm", "num_layers",
                                             "num_heads", "model_dim", "head_dim", "grid", "prefix_tokens",
                                             "max_tokens")}
    return PretrainedModel(folder=folder, **fields, config=config, architecture=architecture, params=params,
                           tokenizer=tokenizer, preprocessor=preprocessor, pad_token_id=pad)
