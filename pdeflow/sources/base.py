"""What a model source is: a transformer to fit, the inputs it is traced on, and how its token grid looks.

A source answers everything the pipeline (`pdeflow.pipeline.fit_and_measure`) needs to know about one model,
so that fitting and measuring never branch on a model's name: its shape (cheap, without loading weights), the
surrogate's geometry, the traced train / validation / held-out splits, its blocks' weights (for a surrogate
started from the transformer) and a description for the report.
"""

from __future__ import annotations

import abc
import dataclasses

from pdeflow.models.block_weights import BlockWeights
from pdeflow.models.trace import Trace

MODALITIES = ("text", "image")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which inputs are used.

    Attributes:
        num_train: training inputs.
        num_validation: validation inputs (early stopping only).
        num_test: held-out inputs every reported figure is measured on.
        min_tokens: shortest sentence kept, in tokens including [CLS] and [SEP] (text only).
        max_tokens: longest sentence kept; every input is padded to this length (one compiled shape; text only).
        split_seed: seeds which inputs land in which split (independent of the fit's seed).
        extra_training_sentences: text only: add to the training split every kept sentence that no split took
            and the sentences of pydoc's block-indented prose (notes and descriptions set under a definition;
            `pdeflow.data.text.pydoc_sentences`), about 2.5x ``num_train`` at the defaults. Validation and test
            sentences are the same as without (drawn from the unindented prose as always).
    """

    num_train: int = 512
    num_validation: int = 64
    num_test: int = 128
    min_tokens: int = 8
    max_tokens: int = 48
    split_seed: int = 0
    extra_training_sentences: bool = False

    def __post_init__(self):
        if min(self.num_train, self.num_validation, self.num_test) < 1:
            raise ValueError("num_train, num_validation and num_test must each be at least 1.")
        if not 2 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"need 2 <= min_tokens <= max_tokens; got {self.min_tokens}, {self.max_tokens}.")


@dataclasses.dataclass(frozen=True)
class Splits:
    """Traced splits: the surrogate fits ``train``, stops on ``validation`` and is measured on ``test``, whose
    inputs are also kept as token strings (``test_tokens``) and a readable description each (``test_sentences``)."""

    train: Trace
    validation: Trace
    test: Trace
    test_tokens: tuple[tuple[str, ...], ...]
    test_sentences: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """A transformer's shape: ``num_layers`` blocks of ``num_heads`` heads of width ``head_dim`` over a
    residual stream of width ``model_dim``; ``grid`` is ``()`` for a token chain or ``(h, w)`` for a patch grid
    after ``prefix_tokens`` tokens (a ViT's class token); ``causal``: each token attends to itself and earlier
    tokens only (a GPT's chain)."""

    num_layers: int
    num_heads: int
    model_dim: int
    head_dim: int
    grid: tuple[int, ...] = ()
    prefix_tokens: int = 0
    causal: bool = False


class ModelSource(abc.ABC):
    """A transformer and the inputs it is traced on (register a subclass with `pdeflow.sources.register_source`).

    Attributes (class level):
        name: the registry name (``pdeflow fit --model NAME``).
        modality: ``"text"`` (a token chain) or ``"image"`` (a patch grid).
        block_input_norm: how the model's blocks read their stream, which a surrogate started from its weights
            copies (`pdeflow.pde.attention_pde.SurrogateConfig.state_norm`): ``"none"`` for post-LayerNorm
            blocks (their stream is LayerNorm outputs already), ``"layer"`` for pre-LayerNorm blocks.
    """

    name: str
    modality: str
    block_input_norm: str

    @abc.abstractmethod
    def shape(self) -> ModelShape:
        """The transformer's shape, read without loading (or training) its weights."""

    @abc.abstractmethod
    def trace_splits(self, data: DataConfig, progress: bool = False) -> Splits:
        """Choose the train / validation / held-out inputs as ``data`` says and trace the transformer on them."""

    @abc.abstractmethod
    def block_weights(self) -> list[BlockWeights]:
        """Each block's attention weights and read-in, for a surrogate started from the transformer."""

    @abc.abstractmethod
    def describe(self) -> dict:
        """For the report: ``{"model": str, "inputs": str, "parameters": {"transformer", "transformer_blocks"}}``
        and anything else the source wants recorded (kept under its own keys)."""

    def check_data(self, data: DataConfig) -> None:
        """Raise ``ValueError`` (saying what to change) if ``data`` asks for something this source cannot give
        (every setting is fine by default)."""
        return None

    def default_data(self) -> DataConfig:
        """The data settings of the default preset (`DataConfig`'s defaults unless the source's inputs call for
        others, e.g. a user's file of a few dozen texts)."""
        return DataConfig()

    def all_training_data(self) -> DataConfig:
        """The data settings that train on every input that is not held out (the faithful preset's)."""
        return DataConfig()
