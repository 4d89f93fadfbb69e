"""Transformers trained here, on data that ships with the machine (the ViT on digits, character language
models on the pydoc topics, each saved with its config and loaded back; RPE transformers on sparse-memory
tasks, several seeds at once)."""

from pdeflow.train.lm import (
    LM_FAMILIES,
    LMTrainConfig,
    TrainedLM,
    default_lm_folder,
    family_configs,
    load_lm,
    load_or_train_lm,
    save_lm,
    train_lm,
)
from pdeflow.train.memory import MemoryTrainConfig, held_out_errors, train_memory_models
from pdeflow.train.vit import (
    TrainedViT,
    ViTTrainConfig,
    default_vit_folder,
    load_or_train_vit,
    load_vit,
    save_vit,
    train_vit,
)

__all__ = ["LMTrainConfig", "LM_FAMILIES", "MemoryTrainConfig", "TrainedLM", "TrainedViT", "ViTTrainConfig",
           "default_lm_folder", "default_vit_folder", "family_configs", "held_out_errors", "load_lm",
           "load_or_train_lm", "load_or_train_vit", "load_vit", "save_lm", "save_vit", "train_lm",
           "train_memory_models", "train_vit"]
