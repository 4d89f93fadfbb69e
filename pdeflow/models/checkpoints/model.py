"""`PretrainedModel`: a loaded checkpoint of any supported type, traced the same way whatever the type
(`pdeflow.models.trace.Trace`), with its tokenizer or image preprocessor, its blocks' weights and (GPT-2) its
language-model head for the logit lens; `CheckpointShape`: its shape, read from ``config.json`` alone."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pdeflow.models.block_weights import BlockWeights
from pdeflow.models.checkpoints.images import ImagePreprocessor
from pdeflow.models.checkpoints.text import tokenize_texts
from pdeflow.models.parameters import transformer_parameters
from pdeflow.models.tokenized import Tokenized
from pdeflow.models.trace import Trace, run_in_batches

MODALITIES = ("text", "image")


@dataclasses.dataclass(frozen=True)
class CheckpointShape:
    """A checkpoint's shape, read from ``config.json`` without its weights.

    Attributes:
        model_type: ``config.json``'s model_type, one of `SUPPORTED_MODEL_TYPES`.
        modality: ``"text"`` (a token chain) or ``"image"`` (a patch grid).
        causal: whether a token sees only earlier tokens (GPT-2).
        block_input_norm: ``"none"`` for post-LayerNorm blocks (BERT, RoBERTa, DistilBERT), ``"layer"`` for
            pre-LayerNorm blocks (ViT, GPT-2): what each block's attention reads (`BlockWeights.input_norm`).
        num_layers, num_heads, model_dim, head_dim: L blocks of H heads of width d_h on a stream of width d.
        grid: ``()`` for text, ``(h, w)`` patches for a ViT; prefix_tokens: tokens before the grid (a ViT's class
            token: 1, else 0).
        max_tokens: the most tokens the model accepts (its positions; a ViT's ``1 + h·w``).
        num_weights: the model's weights counted from the config (for the memory check before loading).
    """

    model_type: str
    modality: str
    causal: bool
    block_input_norm: str
    num_layers: int
    num_heads: int
    model_dim: int
    head_dim: int
    grid: tuple[int, ...]
    prefix_tokens: int
    max_tokens: int
    num_weights: int


_FORWARD: dict = {}


def _jitted(architecture, **options):
    """``jax.jit`` of the architecture's Flax module's ``apply`` with keyword ``options`` (one per architecture
    and options)."""
    key = (architecture, tuple(sorted(options.items())))
    if key not in _FORWARD:
        module = architecture.module()
        _FORWARD[key] = jax.jit(lambda params, *args: module.apply(params, *args, **options))
    return _FORWARD[key]


@dataclasses.dataclass(frozen=True, eq=False)
class PretrainedModel:
    """A Hugging Face-format checkpoint loaded for tracing (`pdeflow.models.checkpoints.load_pretrained`).

    The shape attributes are those of `CheckpointShape`; besides them:

    Attributes:
        folder: the checkpoint folder.
        config: ``config.json`` as read.
        architecture: the type's hashable description (its Flax module, block weights, read-out).
        params: the Flax variables ``{"params": {...}}`` (blocks under ``layer_0 … layer_{L-1}``).
        tokenizer: the ``tokenizers.Tokenizer`` (text models) or None.
        preprocessor: the `ImagePreprocessor` (ViT) or None.
        pad_token_id: the id padded positions get (config's pad_token_id, else 0).

    Text models: `tokenize`, `trace_tokens`, `trace_texts`; image models: `preprocess`, `trace_pixels`,
    `trace_images`; GPT-2: `logits`, `lens_logits`, `lens_readout`; all: `block_weights`, `parameters`.
    ``Trace.hidden[l]`` is the residual stream entering block ``l`` (``hidden[0]`` the embedding output,
    ``hidden[L]`` the last block's output before any final LayerNorm) and ``Trace.attention[l]`` block ``l``'s
    maps.
    """

    folder: Path
    model_type: str
    modality: str
    causal: bool
    block_input_norm: str
    num_layers: int
    num_heads: int
    model_dim: int
    head_dim: int
    grid: tuple[int, ...]
    prefix_tokens: int
    max_tokens: int
    config: dict
    architecture: Any
    params: dict
    tokenizer: Any = None
    preprocessor: ImagePreprocessor | None = None
    pad_token_id: int = 0

    @property
    def shape(self) -> CheckpointShape:
        return CheckpointShape(self.model_type, self.modality, self.causal, self.block_input_norm, self.num_layers,
                               self.num_heads, self.model_dim, self.head_dim, self.grid, self.prefix_tokens,
                               self.max_tokens, jax.tree_util.tree_reduce(lambda n, x: n + x.size, self.params, 0))

    def _needs(self, modality: str, what: str) -> None:
        if self.modality != modality:
            use = "tokenize / trace_texts" if self.modality == "text" else "preprocess / trace_images"
            raise ValueError(f"{what} is for {modality} models, but {self.folder} is a {self.model_type} "
                             f"({self.modality}) model; use {use}.")

    # text

    def tokenize(self, texts: Sequence[str], max_tokens: int, pad_to: int | None = None) -> Tokenized:
        """Tokenise ``texts`` with the checkpoint's tokenizer (its special tokens added), truncate each to
        ``max_tokens`` and right-pad to ``pad_to`` (default: the longest input) -> `Tokenized` ``(B, N)``."""
        self._needs("text", "tokenize")
        return tokenize_texts(self.tokenizer, texts, max_tokens, self.max_tokens, self.pad_token_id, pad_to)

    def _check_tokens(self, tokens: Tokenized) -> None:
        if not isinstance(tokens, Tokenized):
            raise TypeError(f"pass the Tokenized that tokenize() returns, not {type(tokens).__name__}.")
        ids = np.asarray(tokens.input_ids)
        if ids.ndim != 2 or ids.shape[0] == 0 or not 1 <= ids.shape[1] <= self.max_tokens:
            raise ValueError(f"tokens must be (B, N) with B >= 1 and 1 <= N <= {self.max_tokens} (the model's "
                             f"positions); got {ids.shape}.")
        if ids.min() < 0 or ids.max() >= self.architecture.vocab_size:
            raise ValueError(f"token ids must lie in 0..{self.architecture.vocab_size - 1} (config.json's "
                             f"vocab_size); got {ids.min()}..{ids.max()}: is the tokenizer the model's?")

    def trace_tokens(self, tokens: Tokenized, batch_size: int = 64) -> Trace:
        """The `Trace` of tokenised inputs (fixed-size batches: one compile per width): hidden
        ``(L+1, B, N, d)``, attention ``(L, B, H, N, N)``, mask ``(B, N)`` (numpy)."""
        self._needs("text", "trace_tokens")
        self._check_tokens(tokens)
        apply = _jitted(self.architecture)
        inputs = (np.asarray(tokens.input_ids, np.int32), np.asarray(tokens.token_type_ids, np.int32),
                  np.asarray(tokens.mask, bool))
        return run_in_batches(lambda ids, types, mask: apply(self.params, ids, types, mask), inputs, batch_size)[1]

    def trace_texts(self, texts: Sequence[str], max_tokens: int = 128) -> Trace:
        """`trace_tokens` of `tokenize` (``max_tokens`` capped at the model's positions)."""
        return self.trace_tokens(self.tokenize(texts, min(max_tokens, self.max_tokens)))

    # images

    def preprocess(self, images: Sequence) -> np.ndarray:
        """PIL images or ``(H, W, C)`` uint8 arrays -> pixels ``(B, C, H, W)`` float32, resized, rescaled and
        normalised as the checkpoint's ``preprocessor_config.json`` says."""
        self._needs("image", "preprocess")
        return self.preprocessor(images)

    def trace_pixels(self, pixels: np.ndarray, batch_size: int = 64) -> Trace:
        """The `Trace` of preprocessed ``pixels (B, C, H, W)``: ``1 + h·w`` tokens (class token, then the patches
        row by row), every token real."""
        self._needs("image", "trace_pixels")
        pixels = np.asarray(pixels, np.float32)
        expected = (self.architecture.num_channels, *self.architecture.image_size)
        if pixels.ndim != 4 or pixels.shape[0] == 0 or pixels.shape[1:] != expected:
            raise ValueError(f"pixels must have shape (B, {', '.join(map(str, expected))}) with B >= 1; got "
                             f"{pixels.shape}. Make them with preprocess(images).")
        apply = _jitted(self.architecture)
        return run_in_batches(lambda x: apply(self.params, x), (pixels,), batch_size)[1]

    def trace_images(self, images: Sequence, batch_size: int = 64) -> Trace:
        return self.trace_pixels(self.preprocess(images), batch_size)

    # language-model head (GPT-2)

    def _needs_head(self, what: str) -> None:
        if not hasattr(self.architecture, "readout"):
            raise ValueError(f"{what} needs a language-model head; {self.folder} is a {self.model_type}, only gpt2 "
                             "checkpoints have one here.")

    def lens_readout(self) -> tuple[Callable | None, jax.Array, jax.Array | None]:
        """``(norm, unembedding (d, V), bias or None)``: the model's map from a residual stream to logits,
        ``logits = unembedding·norm(h) (+ bias)``, as `pdeflow.information.entropy_profile` takes it."""
        self._needs_head("lens_readout")
        return self.architecture.readout(self.params)

    def lens_logits(self, hidden) -> jax.Array:
        """``(..., d) -> (..., V)``: the final LayerNorm, then the LM head, so any layer's stream
        (``Trace.hidden[l]``) can be read out; ``lens_logits(trace.hidden[L])`` are the model's logits."""
        norm, unembedding, bias = self.lens_readout()
        hidden = jnp.asarray(hidden, jnp.float32)
        if hidden.shape[-1:] != (self.model_dim,):
            raise ValueError(f"hidden states must end in the model width {self.model_dim}; got {hidden.shape}.")
        logits = norm(hidden) @ unembedding
        return logits if bias is None else logits + bias

    def logits(self, tokens: Tokenized, batch_size: int = 64) -> np.ndarray:
        """Next-token logits ``(B, N, V)`` (numpy) of tokenised inputs: position ``i`` predicts token ``i + 1``."""
        self._needs_head("logits")
        self._check_tokens(tokens)
        from pdeflow.data.batches import fixed_size_batches

        apply = _jitted(self.architecture, logits=True)
        ids, types, mask = (np.asarray(tokens.input_ids, np.int32), np.asarray(tokens.token_type_ids, np.int32),
                            np.asarray(tokens.mask, bool))
        out = []
        for index, keep in fixed_size_batches(len(ids), min(batch_size, len(ids))):
            out.append(np.asarray(apply(self.params, ids[index], types[index], mask[index]))[:keep])
        return np.concatenate(out)

    # weights

    def block_weights(self) -> list[BlockWeights]:
        """Each block's attention weights and read-in (`pdeflow.models.block_weights`), for a surrogate started
        from the transformer (``--init transformer``)."""
        return self.architecture.block_weights(self.params)

    def parameters(self) -> dict:
        """``{"transformer": every weight the traced model (and GPT-2's head) uses, "transformer_blocks": the
        blocks' weights}`` (poolers and task heads the checkpoint may hold are not loaded, nor counted)."""
        return transformer_parameters(self.params)
