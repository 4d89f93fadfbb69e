"""Batch indices with static shapes, so a jit-compiled function compiles once."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def fixed_size_batches(total: int, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """``(index, keep)`` pairs covering ``range(total)`` in order: every ``index`` has ``batch_size`` entries
    (the last batch wraps around to the start), and its first ``keep`` entries are new."""
    for start in range(0, total, batch_size):
        yield np.arange(start, start + batch_size) % total, min(batch_size, total - start)


def shuffled_batches(count: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Endless full batches from successive permutations of ``range(count)`` (each epoch reshuffled)."""
    order = np.empty(0, dtype=np.int64)
    while True:
        while order.size < batch_size:
            order = np.concatenate([order, rng.permutation(count)])
        yield order[:batch_size]
        order = order[batch_size:]
