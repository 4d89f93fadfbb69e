"""Batch indices with static shapes, so a jit-compiled function compiles once (or once per length bucket)."""

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
        batches = cls(state["count"], state["batch_size"], _rng_from_state(state["rng"]))
        batches.order = np.asarray(state["order"], dtype=np.int64)
        return batches


def shuffled_batches(count: int, batch_size: int, rng: np.random.Generator) -> ShuffledBatches:
    """Endless full batches from successive permutations of ``range(count)``; see `ShuffledBatches`."""
    return ShuffledBatches(count, batch_size, rng)


def token_lengths(mask) -> np.ndarray:
    """``(B, N)`` mask -> ``(B,)``: one past the last real token of each input (the length it can be trimmed
    to without dropping a real token)."""
    mask = np.asarray(mask, bool)
    return np.where(mask.any(1), mask.shape[1] - np.argmax(mask[:, ::-1], axis=1), 0)


def bucket_lengths(lengths, num_buckets: int) -> tuple[int, ...]:
    """At most ``num_buckets`` padded lengths, ascending, that split ``lengths`` into groups of about equal
    size (quantiles); the last is ``max(lengths)``, so every input fits the last bucket."""
    lengths = np.sort(np.asarray(lengths, np.int64))
    if lengths.size == 0 or num_buckets < 1:
        raise ValueError(f"need at least one length and num_buckets >= 1; got {lengths.size}, {num_buckets}.")
    cuts = np.ceil(np.arange(1, num_buckets + 1) * lengths.size / num_buckets).astype(np.int64) - 1
    return tuple(int(x) for x in np.unique(lengths[cuts]))


class BucketedBatches:
    """Endless full batches grouped by length: each batch comes with the bucket length its inputs fit in,
    so a step can trim the padding beyond it (one compiled shape per bucket).

    Every epoch shuffles the inputs, deals each into the shortest bucket it fits, and cuts each bucket into
    full batches; the few left over in a bucket move up to the next (they fit any longer bucket), and those
    left over after the longest are topped up with other inputs of the epoch into one last full batch. So
    every input is seen once an epoch (a few twice, never twice in one batch). The epoch's batches are then
    served in a shuffled order, so short and long batches alternate rather than coming in runs. Like
    `ShuffledBatches` its position can be saved and restored exactly (`state` / `from_state`).
    """

    def __init__(self, lengths, buckets: tuple[int, ...], batch_size: int, rng: np.random.Generator):
        self.lengths = np.asarray(lengths, np.int64)
        self.buckets = tuple(int(b) for b in buckets)
        if batch_size < 1 or self.lengths.size < batch_size:
            raise ValueError(f"need 1 <= batch_size <= number of inputs; got {batch_size}, {self.lengths.size}.")
        if list(self.buckets) != sorted(set(self.buckets)) or self.lengths.max() > self.buckets[-1]:
            raise ValueError(f"buckets must be ascending and the last ({self.buckets[-1]}) must fit the longest "
                             f"input ({self.lengths.max()}); use bucket_lengths.")
        self.batch_size, self.rng = batch_size, rng
        self.pending: list[tuple[list[int], int]] = []  # the rest of this epoch's (index, length) batches

    def __iter__(self) -> BucketedBatches:
        return self

    def __next__(self) -> tuple[np.ndarray, int]:
        if not self.pending:
            self._deal_epoch()
        index, length = self.pending.pop(0)
        return np.asarray(index, np.int64), length

    def _deal_epoch(self) -> None:
        order = self.rng.permutation(self.lengths.size)
        bucket_of = np.searchsorted(self.buckets, self.lengths[order])
        batches, carry = [], []
        for b, length in enumerate(self.buckets):
            members = carry + order[bucket_of == b].tolist()
            full = len(members) // self.batch_size * self.batch_size
            batches += [(members[i:i + self.batch_size], length) for i in range(0, full, self.batch_size)]
            carry = members[full:]
        if carry:
            left = set(carry)
            others = [i for i in order.tolist() if i not in left]
            batches.append((carry + others[: self.batch_size - len(carry)], self.buckets[-1]))
        self.pending = [batches[i] for i in self.rng.permutation(len(batches))]

    def state(self) -> dict:
        """JSON-serialisable position: the generator's state and this epoch's remaining batches."""
        return {"kind": "bucketed", "lengths": self.lengths.tolist(), "buckets": list(self.buckets),
                "batch_size": self.batch_size, "rng": self.rng.bit_generator.state,
                "pending": [[list(map(int, index)), int(length)] for index, length in self.pending]}

    @classmethod
    def from_state(cls, state: dict) -> BucketedBatches:
        batches = cls(state["lengths"], tuple(state["buckets"]), state["batch_size"], _rng_from_state(state["rng"]))
        batches.pending = [(list(index), int(length)) for index, length in state["pending"]]
        return batches


def next_batch(batches: ShuffledBatches | BucketedBatches) -> tuple[np.ndarray, int | None]:
    """``(index, num_tokens)`` of the next batch: the bucket length to trim it to, or None (keep every token)."""
    batch = next(batches)
    return batch if isinstance(batches, BucketedBatches) else (batch, None)


def batches_from_state(state: dict) -> ShuffledBatches | BucketedBatches:
    """Restore whichever batch iterator saved ``state`` (`ShuffledBatches` or `BucketedBatches`)."""
    return (BucketedBatches if state.get("kind") == "bucketed" else ShuffledBatches).from_state(state)


def _rng_from_state(state: dict) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng
