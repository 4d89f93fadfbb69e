"""Transformers trained here, on data that ships with the machine (the ViT on digits, character language
models on the pydoc topics); each saves with its config and loads back."""

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
from pdeflow.train.vit import (
    TrainedViT,
    ViTTrainConfig,
    default_vit_folder,
    load_or_train_vit,
    load_vit,
    save_vit,
    train_vit,
)

__all__ = ["LM_FAMILIES", "LMTrainConfig", "TrainedLM", "TrainedViT", "ViTTrainConfig", "default_lm_folder",
           "default_vit_folder", "family_configs", "load_lm", "load_or_train_lm", "load_or_train_vit", "load_vit",
           "save_lm", "save_vit", "train_lm", "train_vit"]
