"""Transformers trained here, on data that ships with the machine; each saves with its config and loads back."""

from pdeflow.train.vit import (
    TrainedViT,
    ViTTrainConfig,
    default_vit_folder,
    load_or_train_vit,
    load_vit,
    save_vit,
    train_vit,
)

__all__ = ["TrainedViT", "ViTTrainConfig", "default_vit_folder", "load_or_train_vit", "load_vit", "save_vit",
           "train_vit"]
