"""A real task that ships with the machine, as token sequences: scikit-learn's 8×8 digits cut into a 4×4 grid
of 2×2-pixel patches, read in row-major order after a beginning token. Each token is its patch's pixels
(scaled to [0, 1]) placed where they sit in the 64-pixel image (zeros elsewhere, so a token says where its
pixels are and the token average is the image), a beginning flag and a one-hot position; labels ±1 for two
chosen digit classes. The train and test
sequences come from the digits' fixed stratified split (`pdeflow.data.digits.digit_splits`), so test
sequences are held out."""

from __future__ import annotations

import numpy as np

from pdeflow.data.digits import digit_splits
from pdeflow.models.vit import image_patches


def digit_sequences(images: np.ndarray, patch_size: int = 2) -> np.ndarray:
    """``(B, S, S)`` images -> ``(B, 1 + g², S² + 1 + 1 + g²)`` token sequences (beginning token first)."""
    import jax.numpy as jnp

    batch, size, _ = images.shape
    pixels = size * size
    # which image pixel each (patch, offset) is: image_patches of the pixel indices
    where = np.asarray(image_patches(jnp.arange(pixels, dtype=jnp.float32).reshape(1, size, size),
                                     patch_size))[0].astype(int)  # (g², p²)
    patches = np.asarray(image_patches(jnp.asarray(images, jnp.float32), patch_size)) / 16.0  # (B, g², p²)
    count = patches.shape[1]
    tokens = np.zeros((batch, count + 1, pixels + 1 + count + 1), np.float32)
    for patch in range(count):
        tokens[:, patch + 1, where[patch]] = patches[:, patch]
    tokens[:, 0, pixels] = 1.0  # the beginning flag
    tokens[:, :, pixels + 1:] = np.eye(count + 1)
    return tokens


def digit_pair_task(classes: tuple[int, int] = (3, 8), num_train: int = 100,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` for telling ``classes[0]`` (+1) from ``classes[1]`` (−1):
    ``num_train`` sequences drawn (seeded, balanced) from the training split, every test-split image of the
    two classes as the held-out set."""
    splits = digit_splits()
    rng = np.random.default_rng(seed)

    def pick(images, labels, count=None):
        chosen = []
        for c in classes:
            members = np.flatnonzero(labels == c)
            chosen.append(members if count is None else rng.choice(members, count // 2, replace=False))
        index = np.concatenate(chosen)
        return digit_sequences(images[index]), np.where(labels[index] == classes[0], 1, -1)

    x_train, y_train = pick(splits.train_images, splits.train_labels, num_train)
    x_test, y_test = pick(splits.test_images, splits.test_labels)
    return x_train, y_train, x_test, y_test
