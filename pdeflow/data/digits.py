"""scikit-learn's bundled 8×8 handwritten digits (1,797 images, no download), scaled to [0, 1]."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class DigitSplits(NamedTuple):
    """A fixed, stratified train/test split: images ``(B, 8, 8)`` float32 in [0, 1], labels ``(B,)`` int32."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits: images ``(1797, 8, 8)`` float32 in [0, 1] and labels ``(1797,)`` int32 in 0..9."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int32)


def digit_splits(test_fraction: float = 0.25, seed: int = 0) -> DigitSplits:
    """The train/test split every pdeflow run uses (stratified by label, seeded)."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}.")
    images, labels = digit_images()
    train_x, test_x, train_y, test_y = train_test_split(images, labels, test_size=test_fraction, random_state=seed,
                                                        stratify=labels)
    return DigitSplits(train_x, train_y, test_x, test_y)
