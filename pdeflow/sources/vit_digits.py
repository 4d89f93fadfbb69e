"""The ViT trained here on scikit-learn's digits (pre-LayerNorm, class token, 4 × 4 patch grid), traced on
digits from its own training split (to fit) and its held-out test split (to measure)."""

from __future__ import annotations

import dataclasses

from pdeflow.data.digits import digit_splits
from pdeflow.data.text import split_indices
from pdeflow.models.parameters import transformer_parameters
from pdeflow.models.vit import vit_block_weights
from pdeflow.sources.base import DataConfig, ModelShape, ModelSource, Splits
from pdeflow.train.vit import TrainedViT, ViTTrainConfig, load_or_train_vit


def trace_digit_splits(vit: TrainedViT, config: DataConfig) -> Splits:
    """Surrogate train and validation images from the ViT's own training split, held-out test images from its
    test split (seen neither by the ViT nor by the surrogate's fit), traced."""
    digits = digit_splits(vit.config.test_fraction, vit.config.split_seed)
    fit_i, val_i = split_indices(len(digits.train_labels), (config.num_train, config.num_validation),
                                 config.split_seed)
    (test_i,) = split_indices(len(digits.test_labels), (config.num_test,), config.split_seed)
    g = vit.config.model.grid_size
    tokens = ("[CLS]",) + tuple(f"{i},{j}" for i in range(g) for j in range(g))
    return Splits(vit.trace(digits.train_images[fit_i]), vit.trace(digits.train_images[val_i]),
                  vit.trace(digits.test_images[test_i]), (tokens,) * len(test_i),
                  tuple(f"digit {digits.test_labels[i]} (test image {i})" for i in test_i))


class ViTDigitsSource(ModelSource):
    """The ViT of `pdeflow.train.vit` (trained on first use and cached; or ``vit``) on scikit-learn's digits."""

    name = "vit-digits"
    modality = "image"
    block_input_norm = "layer"

    def __init__(self, vit: TrainedViT | None = None):
        self._vit = vit

    def load(self, progress: bool = False) -> TrainedViT:
        """The ViT: the one given, else the cached one (trained now if there is none, with a progress bar if
        ``progress``)."""
        if self._vit is None:
            self._vit = load_or_train_vit(progress=progress)
        return self._vit

    @property
    def vit(self) -> TrainedViT:
        return self.load()

    def shape(self) -> ModelShape:
        m = self._vit.config.model if self._vit is not None else ViTTrainConfig().model
        return ModelShape(m.num_layers, m.num_heads, m.hidden_size, m.head_dim, grid=(m.grid_size, m.grid_size),
                          prefix_tokens=1)

    def check_data(self, data: DataConfig) -> None:
        if data.extra_training_sentences:
            raise ValueError("extra_training_sentences adds pydoc sentences, for text models; the ViT fits digits: "
                             "leave it off (--no-extra-training-sentences).")

    def trace_splits(self, data: DataConfig, progress: bool = False) -> Splits:
        return trace_digit_splits(self.load(progress), data)

    def block_weights(self):
        return vit_block_weights(self.vit.params, self.vit.config.model)

    def describe(self) -> dict:
        return {"model": f"ViT on scikit-learn digits (test accuracy {self.vit.test_accuracy:.4f})",
                "inputs": "scikit-learn digits, 8x8", "parameters": transformer_parameters(self.vit.params),
                "vit": {"config": dataclasses.asdict(self.vit.config), "test_accuracy": self.vit.test_accuracy}}

    def all_training_data(self) -> DataConfig:
        digits = ViTTrainConfig()  # every training digit of the ViT's split but the validation ones
        count = len(digit_splits(digits.test_fraction, digits.split_seed).train_labels)
        return DataConfig(num_train=count - DataConfig.num_validation)
