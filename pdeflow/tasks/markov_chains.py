"""The hidden-Markov-chain classification task of the attention-path paper (Tiberi et al. 2024).

Each sequence is a two-state Markov chain of ``length`` steps whose class sets how often it stays in its
state: class +1 stays with probability ``stay[0]`` (0.7), class −1 with ``stay[1]`` (0.3); the first state
is a fair coin. State ``±1`` is shown as a fixed random token vector ``v±`` (``dim`` dimensions, unit
variance per component) plus Gaussian noise, preceded by a beginning-of-sequence token; every token also
carries a one-hot position. The label needs *pairs* of neighbouring tokens (same state or not), so a linear
readout of single tokens cannot solve it, while a head attending to the previous token can.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class MarkovChainTask:
    """Settings of the task.

    Attributes:
        length: chain steps T (the sequence has T + 1 tokens with the beginning token).
        dim: dimension of the state and beginning tokens.
        noise: standard deviation of the Gaussian noise on every state token.
        stay: stay probabilities of class +1 and class −1.
        seed: seeds the token vectors (shared by every split).
    """

    length: int = 30
    dim: int = 200
    noise: float = 0.5
    stay: tuple[float, float] = (0.7, 0.3)
    seed: int = 0

    def __post_init__(self):
        if self.length < 2 or self.dim < 1 or self.noise < 0:
            raise ValueError("need length >= 2, dim >= 1 and noise >= 0.")
        if not all(0 <= p <= 1 for p in self.stay):
            raise ValueError(f"stay probabilities must lie in [0, 1]; got {self.stay}.")

    @property
    def token_dim(self) -> int:
        """Per-token input dimension: the state part and the one-hot position."""
        return self.dim + self.length + 1

    def vocabulary(self) -> np.ndarray:
        """``(3, dim)``: ``v+``, ``v−`` and the beginning token."""
        return np.random.default_rng(self.seed).normal(size=(3, self.dim))

    def sample(self, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(x (count, T+1, token_dim), labels (count,) in {−1, +1}, states (count, T) in {−1, +1})``, half of
        each class (the first ⌈count/2⌉ are +1, then shuffled), reproducible from ``seed``."""
        rng = np.random.default_rng(seed)
        labels = np.where(rng.permutation(count) < (count + 1) // 2, 1, -1)
        stay = np.where(labels == 1, self.stay[0], self.stay[1])[:, None]
        first = rng.choice([-1, 1], size=(count, 1))
        flips = np.where(rng.random((count, self.length - 1)) < stay, 1, -1)
        states = np.cumprod(np.concatenate([first, flips], axis=1), axis=1)
        vocabulary = self.vocabulary()
        tokens = np.where(states[..., None] == 1, vocabulary[0], vocabulary[1])
        tokens = tokens + self.noise * rng.normal(size=tokens.shape)
        begin = np.broadcast_to(vocabulary[2], (count, 1, self.dim))
        content = np.concatenate([begin, tokens], axis=1)
        positions = np.broadcast_to(np.eye(self.length + 1), (count, self.length + 1, self.length + 1))
        return np.concatenate([content, positions], axis=-1).astype(np.float32), labels, states


def switch_detector(task: MarkovChainTask, sharpness: float = 4.0, position: float = 10.0) -> np.ndarray:
    """The hand-built "good" head for this task: a bilinear score ``W (token_dim, token_dim)``, ``score(s, t) =
    x_sᵀ W x_t``, with which every token attends to its predecessor when both are in the same state and to the
    beginning token when the state switched (and the beginning token to itself).

    Position part: ``position`` for key ``s − 1`` and for the beginning key; content part:
    ``sharpness · σ_s σ_t`` up to the noise, through a direction ``u`` with ``u · v± = ±1/2`` and
    ``u · v_begin = 0``. So the beginning token collects a share of attention equal to the
    fraction of switches, which separates the classes (0.3 vs 0.7 in expectation), and a linear readout of
    the head's output can read it."""
    v = task.vocabulary()
    # the shortest u with u · v+ = 1/2, u · v− = −1/2 and u · v_begin = 0 (the beginning token scores no content)
    u = v.T @ np.linalg.solve(v @ v.T, np.array([0.5, -0.5, 0.0]))
    w = np.zeros((task.token_dim, task.token_dim))
    w[:task.dim, :task.dim] = 4.0 * sharpness * np.outer(u, u)
    positions = slice(task.dim, task.token_dim)
    block = np.zeros((task.length + 1, task.length + 1))
    block[0, 0] = position
    for s in range(1, task.length + 1):
        block[s, s - 1] += position
        block[s, 0] += position if s > 1 else 0.0
    w[positions, positions] = block
    return w
