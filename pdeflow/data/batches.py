"""Batch indices with static shapes, so a jit-compiled function compiles once."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def fixed_size_batches(total: int, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """``(index, keep)`` pairs covering ``range(total)`` in order: every ``index`` has ``batch_size`` entries
    (the last batch wraps around to the start), and its first ``keep`` entries are new."""
    for start in range(0, total, batch_size):
        yield np.arange(start, start + batch_size) % total, min(batch_size, total - start)


class ShuffledBatches:
    """Endless full batches from successive permutations of ``range(count)`` (each epoch reshuffled).

    An iterator whose position can be saved and restored exactly (`state` / `from_state`), so an
    interrupted fit resumes with the same data order."""

    def __init__(self, count: int, batch_size: int, rng: np.random.Generator):
        if count < 1 or batch_size < 1:
            raise ValueError(f"need count >= 1 and batch_size >= 1; got {count}, {batch_size}.")
        self.count, self.batch_size, self.rng = count, batch_size, rng
        self.order = np.empty(0, dtype=np.int64)

    def __iter__(self) -> ShuffledBatches:
        return self

    def __next__(self) -> np.ndarray:
        while self.order.size < self.batch_size:
            self.order = np.concatenate([self.order, self.rng.permutation(self.count)])
        batch, self.order = self.order[: self.batch_size], self.order[self.batch_size:]
        return batch

    def state(self) -> dict:
        """JSON-serialisable position: the generator's state and the rest of the current permutation."""
        return {"count": self.count, "batch_size": self.batch_size, "rng": self.rng.bit_generator.state,
                "order": self.order.tolist()}

    @classmethod
    def from_state(cls, state: dict) -> ShuffledBatches:
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        batches = cls(state["count"], state["batch_size"], rng)
        batches.order = np.asarray(state["order"], dtype=np.int64)
        return batches


def shuffled_batches(count: int, batch_size: int, rng: np.random.Generator) -> ShuffledBatches:
    """Endless full batches from successive permutations of ``range(count)``; see `ShuffledBatches`."""
    return ShuffledBatches(count, batch_size, rng)
