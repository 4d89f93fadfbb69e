"""Model sources: the transformers pdeflow fits, each with the inputs it is traced on (`ModelSource`).

The registry maps a name (``pdeflow fit --model NAME``, `pdeflow.pipeline.RunConfig.model`) to a factory of
sources. To add a transformer, subclass `ModelSource` (its shape, its traced splits, its blocks' weights, its
description) and `register_source` it; the pipeline, the CLI and the presets need nothing else. A user's
checkpoint folder, traced on the user's texts or images, is a `CheckpointSource` (`model_source_for` takes either).
"""

from __future__ import annotations

from collections.abc import Callable

from pdeflow.sources.base import MODALITIES, DataConfig, ModelShape, ModelSource, Splits
from pdeflow.sources.checkpoint import CheckpointSource, model_source_for
from pdeflow.sources.minilm import MiniLMSource, trace_sentence_splits
from pdeflow.sources.vit_digits import ViTDigitsSource, trace_digit_splits

SOURCES: dict[str, Callable[[], ModelSource]] = {MiniLMSource.name: MiniLMSource,
                                                 ViTDigitsSource.name: ViTDigitsSource}


def register_source(name: str, factory: Callable[[], ModelSource], overwrite: bool = False) -> None:
    """Make ``factory()`` (a `ModelSource`) available as model ``name``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a model source needs a non-empty name; got {name!r}.")
    if name in SOURCES and not overwrite:
        raise ValueError(f"model source {name!r} is already registered; pass overwrite=True to replace it.")
    SOURCES[name] = factory


def source_names() -> tuple[str, ...]:
    """The registered model names."""
    return tuple(SOURCES)


def model_source(name: str) -> ModelSource:
    """A fresh source of the registered model ``name``."""
    if name not in SOURCES:
        raise ValueError(f"unknown model {name!r}; choose from {list(SOURCES)}.")
    source = SOURCES[name]()
    if source.modality not in MODALITIES:
        raise ValueError(f"model source {name!r} has modality {source.modality!r}; use one of {list(MODALITIES)}.")
    return source


__all__ = ["MODALITIES", "SOURCES", "CheckpointSource", "DataConfig", "MiniLMSource", "ModelShape", "ModelSource",
           "Splits", "ViTDigitsSource", "model_source", "model_source_for", "register_source", "source_names",
           "trace_digit_splits", "trace_sentence_splits"]
