"""Sequence-to-sequence tasks with long but sparse memory (after Wang & E 2024), seeded and jit-friendly.

Every task maps inputs ``x (B, N, d)`` to targets ``y (B, N)`` and a mask ``valid (B, N)`` of the positions
whose target is fully defined (every token it names lies inside the sequence). A task is a frozen dataclass
(hashable, so it is a static argument of jitted code) with

* ``inputs(key, batch) -> x``: random inputs, pure JAX;
* ``targets(x) -> (y, valid)``: the target as a pure function of the inputs, so that a test can perturb a
  token and see which targets move;

and `sample` / `batches` draw ``MemoryBatch`` es from them (`batches` streams a fresh batch per step from one
seed). The tasks:

* `FixedMemory`: ``y_t = f(x_{t−T₁}, …, x_{t−T_M})`` with fixed lags ``T_k``;
* `AdaptiveMemory`: the lag is chosen by the tokens: token ``t`` carries a key, and ``s₁(t)`` is the most
  recent earlier token with the same key, ``y_t = f(v_t, v_{s₁})``; nested: the token at ``s₁`` carries a
  pointer key and ``s₂`` is the most recent token before ``t`` whose key is that pointer, ``y_t = f(v_t,
  v_{s₁}, v_{s₂})`` (one fetched token sets the next lag, so one attention layer cannot find ``s₂``);
* `SmoothMemory` ("essentially sparse"): ``y_t = f((x₁∗ρ₁)(t), …, (x_M∗ρ_M)(t))`` with causal memory
  kernels ``ρ_k`` on ``[0, support)``, power-law (heavy-tailed) or exponential-type (light-tailed);
* `SparseBoolean`: ``x_t ∈ {−1, +1}`` and ``y_t = g(x_{t−T₁}, …, x_{t−T_k})`` with ``g`` one of
  `BOOLEAN_TARGETS` (parity, AND, majority), in ``{−1, +1}``.

The read-out ``f`` is one of `READOUTS`; inputs are standard normal (values) so every read-out has an O(1)
target. Errors are reported as the MSE over valid positions divided by the targets' variance (`normalised_mse`),
so predicting the targets' mean scores 1 (for a balanced Boolean target that is predicting 0, and a normalised
MSE of 1 is the same failure as a sign error of 0.5, `sign_error`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


def _tanh(z: Array) -> Array:
    return jnp.tanh(2.0 * z).sum(-1)


def _product(z: Array) -> Array:
    return jnp.prod(z, axis=-1)


def _complex(z: Array) -> Array:
    return (jnp.sin(2.0 * z) * jnp.cos(jnp.roll(z, -1, axis=-1))).sum(-1)


READOUTS = {
    "linear": lambda z: z.sum(-1) / math.sqrt(z.shape[-1]),
    "tanh": _tanh,  # Σ_k tanh(2 z_k)
    "product": _product,  # ∏_k z_k
    "complex": _complex,  # Σ_k sin(2 z_k) cos(z_{k+1 mod M})
}
"""Read-outs ``f: (..., M) -> (...)`` of the memory values."""


class MemoryBatch(NamedTuple):
    """Inputs ``(B, N, d)``, targets ``(B, N)`` and the mask ``(B, N)`` of positions with a defined target."""

    inputs: Array
    targets: Array
    valid: Array


def _check_readout(readout: str) -> None:
    if readout not in READOUTS:
        raise ValueError(f"unknown readout {readout!r}; choose from {sorted(READOUTS)}.")


def _shifted(x: Array, lag: int) -> Array:
    """``x_{t−lag}`` along axis 1 (zeros before the start)."""
    if lag == 0:
        return x
    pad = jnp.zeros_like(x[:, :lag])
    return jnp.concatenate([pad, x[:, :-lag]], axis=1)


def _checked_lags(lags, length: int) -> tuple[int, ...]:
    """``lags`` as a tuple of ints, after checking they are distinct, non-negative and inside the sequence."""
    lags = tuple(int(t) for t in lags)
    if not lags or min(lags) < 0 or len(set(lags)) != len(lags):
        raise ValueError(f"lags must be distinct non-negative integers; got {lags}.")
    if length <= max(lags):
        raise ValueError(f"length {length} must exceed the largest lag {max(lags)}.")
    return lags


def _lagged_targets(x: Array, lags: tuple[int, ...], f) -> tuple[Array, Array]:
    """``f(x_{t−T₁}, …)`` of scalar tokens ``x (B, N, 1)`` for ``f: (..., M) -> (...)``, valid from the largest
    lag on."""
    z = jnp.stack([_shifted(x[..., 0], lag) for lag in lags], axis=-1)
    valid = jnp.broadcast_to(jnp.arange(x.shape[1]) >= max(lags), x.shape[:2])
    return f(z), valid


@dataclasses.dataclass(frozen=True)
class FixedMemory:
    """``y_t = f(x_{t−T₁}, …, x_{t−T_M})``, scalar standard-normal tokens.

    Attributes:
        lags: the memory lags ``T_k ≥ 0`` (distinct).
        readout: the read-out ``f`` (`READOUTS`).
        length: N, tokens per sequence (must exceed the largest lag).
    """

    lags: tuple[int, ...] = (4, 12, 28)
    readout: str = "complex"
    length: int = 64

    def __post_init__(self):
        object.__setattr__(self, "lags", _checked_lags(self.lags, self.length))
        _check_readout(self.readout)

    input_dim = 1

    def inputs(self, key: Array, batch: int) -> Array:
        return jax.random.normal(key, (batch, self.length, 1))

    def targets(self, x: Array) -> tuple[Array, Array]:
        return _lagged_targets(x, self.lags, READOUTS[self.readout])


def _parity(z: Array) -> Array:
    return jnp.prod(z, axis=-1)


def _and(z: Array) -> Array:
    return jnp.where(jnp.all(z > 0, axis=-1), 1.0, -1.0).astype(z.dtype)


def _majority(z: Array) -> Array:
    return jnp.sign(z.sum(-1))  # the number of bits is odd, so the sum is never 0


BOOLEAN_TARGETS = {
    "parity": _parity,  # ∏_k z_k: +1 iff an even number of −1s; balanced; every lower-order correlation is 0
    "and": _and,  # +1 iff every z_k = +1: +1 with probability 2^−k; correlated with each bit alone
    "majority": _majority,  # the sign of Σ_k z_k (odd k): balanced; correlated with each bit alone
}
"""Boolean functions ``g: {−1, +1}^(..., k) -> {−1, +1}^(...)`` of the lagged bits."""


@dataclasses.dataclass(frozen=True)
class SparseBoolean:
    """``x_t ∈ {−1, +1}`` uniform and ``y_t = g(x_{t−T₁}, …, x_{t−T_k}) ∈ {−1, +1}``: a sparse Boolean function
    of fixed lags.

    Attributes:
        lags: the lags ``T_k`` (distinct, non-negative).
        length: N (must exceed the largest lag).
        target: ``g``, one of `BOOLEAN_TARGETS`: ``"parity"`` (``∏_k x_{t−T_k}``), ``"and"`` (+1 iff every lagged
            bit is +1) or ``"majority"`` (the sign of their sum; needs an odd number of lags).
    """

    lags: tuple[int, ...] = (2, 9, 21)
    length: int = 64
    target: str = "parity"

    def __post_init__(self):
        object.__setattr__(self, "lags", _checked_lags(self.lags, self.length))
        if self.target not in BOOLEAN_TARGETS:
            raise ValueError(f"unknown Boolean target {self.target!r}; choose from {sorted(BOOLEAN_TARGETS)}.")
        if self.target == "majority" and len(self.lags) % 2 == 0:
            raise ValueError(f"majority needs an odd number of lags (no ties); got {len(self.lags)}: {self.lags}.")

    input_dim = 1

    def inputs(self, key: Array, batch: int) -> Array:
        return jax.random.rademacher(key, (batch, self.length, 1), dtype=jnp.float32)

    def targets(self, x: Array) -> tuple[Array, Array]:
        return _lagged_targets(x, self.lags, BOOLEAN_TARGETS[self.target])


def most_recent_match(keys: Array, query: Array, before: Array) -> Array:
    """For each ``t``: the largest ``s < before[t]`` with ``keys[s] == query[t]``, or −1 if there is none.

    ``keys (B, N)`` and ``query (B, N)`` integer ids, ``before (B, N)`` exclusive upper bounds.
    Returns ``(B, N)`` int32.
    """
    n = keys.shape[1]
    s = jnp.arange(n)
    match = (keys[:, None, :] == query[:, :, None]) & (s[None, None, :] < before[:, :, None])  # (B, t, s)
    return jnp.max(jnp.where(match, s, -1), axis=-1).astype(jnp.int32)


def _gather(values: Array, positions: Array) -> Array:
    """``values (B, N)`` at ``positions (B, N)`` (0 where the position is −1)."""
    taken = jnp.take_along_axis(values, jnp.maximum(positions, 0), axis=1)
    return jnp.where(positions >= 0, taken, 0.0)


@dataclasses.dataclass(frozen=True)
class AdaptiveMemory:
    """Memory whose lags the tokens choose.

    Token ``t`` is ``[one-hot key k_t (K), value v_t]`` (plus ``[one-hot pointer p_t (K)]`` when nested), with
    keys and pointers uniform over K ids and values standard normal. ``s₁(t)`` is the most recent ``s < t``
    with ``k_s = k_t``; nested, ``s₂(t)`` is the most recent ``s < t`` with ``k_s = p_{s₁(t)}``. The target is
    ``f(v_t, v_{s₁})`` or, nested, ``f(v_t, v_{s₁}, v_{s₂})``; it is valid where every ``s`` exists.

    So ``y_t`` depends on the values at ``t`` and the fetched positions, on the keys from the earliest fetched
    position to ``t`` (they decide which match is the most recent), and on the pointer at ``s₁``: nothing else.

    Attributes:
        num_keys: K; the lags are then roughly geometric with mean K.
        nested: whether a second, pointer-chosen memory is read.
        readout: ``f`` (`READOUTS`).
        length: N.
    """

    num_keys: int = 16
    nested: bool = False
    readout: str = "product"
    length: int = 64

    def __post_init__(self):
        _check_readout(self.readout)
        if self.num_keys < 1 or self.length < 2:
            raise ValueError(f"need num_keys >= 1 and length >= 2; got {self.num_keys}, {self.length}.")

    @property
    def input_dim(self) -> int:
        return (2 if self.nested else 1) * self.num_keys + 1

    def inputs(self, key: Array, batch: int) -> Array:
        k_key, k_value, k_pointer = jax.random.split(key, 3)
        shape = (batch, self.length)
        parts = [jax.nn.one_hot(jax.random.randint(k_key, shape, 0, self.num_keys), self.num_keys),
                 jax.random.normal(k_value, shape + (1,))]
        if self.nested:
            parts.append(jax.nn.one_hot(jax.random.randint(k_pointer, shape, 0, self.num_keys), self.num_keys))
        return jnp.concatenate(parts, axis=-1)

    def memory_positions(self, x: Array) -> Array:
        """``(B, N, M)`` the fetched positions ``s₁`` (and ``s₂``), −1 where there is no match."""
        k = self.num_keys
        keys = jnp.argmax(x[..., :k], axis=-1)
        t = jnp.broadcast_to(jnp.arange(self.length), keys.shape)
        first = most_recent_match(keys, keys, t)
        if not self.nested:
            return first[..., None]
        pointers = jnp.argmax(x[..., k + 1:], axis=-1)
        second = most_recent_match(keys, jnp.take_along_axis(pointers, jnp.maximum(first, 0), axis=1), t)
        second = jnp.where(first >= 0, second, -1)
        return jnp.stack([first, second], axis=-1)

    def targets(self, x: Array) -> tuple[Array, Array]:
        values = x[..., self.num_keys]
        positions = self.memory_positions(x)
        fetched = [_gather(values, positions[..., m]) for m in range(positions.shape[-1])]
        z = jnp.stack([values] + fetched, axis=-1)
        return READOUTS[self.readout](z), jnp.all(positions >= 0, axis=-1)


KERNELS = ("power", "exponential", "matern")


def memory_kernel(shape: str, scale: float, exponent: float, support: int) -> np.ndarray:
    """``ρ(s)`` for ``s = 0 … support−1``, scaled to unit Euclidean norm (so ``x∗ρ`` of white noise has unit
    variance).

    * ``"power"`` (heavy-tailed): ``(1 + s/scale)^(−exponent)``;
    * ``"exponential"`` (light-tailed): ``exp(−s/scale)``;
    * ``"matern"`` (light-tailed, not a single exponential): ``(1 + s/scale)·exp(−s/scale)``.
    """
    s = np.arange(support, dtype=np.float64)
    if shape == "power":
        rho = (1.0 + s / scale) ** (-exponent)
    elif shape == "exponential":
        rho = np.exp(-s / scale)
    elif shape == "matern":
        rho = (1.0 + s / scale) * np.exp(-s / scale)
    else:
        raise ValueError(f"unknown kernel shape {shape!r}; choose from {KERNELS}.")
    return rho / np.linalg.norm(rho)


@dataclasses.dataclass(frozen=True)
class SmoothMemory:
    """"Essentially sparse" memory: ``y_t = f(z_t)`` with ``z_{t,k} = Σ_{s<support} ρ_k(s) x_{t−s,k}``.

    One standard-normal input channel per kernel. The target is valid from ``t = support − 1`` on.

    Attributes:
        kernels: per channel ``(shape, scale, exponent)`` (`memory_kernel`; ``exponent`` only for power laws).
        support: the kernels' length S.
        readout: ``f`` (`READOUTS`).
        length: N (at least S).
    """

    kernels: tuple[tuple[str, float, float], ...] = (("power", 2.0, 1.5),)
    support: int = 48
    readout: str = "tanh"
    length: int = 96

    def __post_init__(self):
        object.__setattr__(self, "kernels", tuple((str(a), float(b), float(c)) for a, b, c in self.kernels))
        _check_readout(self.readout)
        if not self.kernels or self.support < 1 or self.length < self.support:
            raise ValueError("need at least one kernel, support >= 1 and length >= support.")
        for shape, scale, _ in self.kernels:
            if shape not in KERNELS or scale <= 0:
                raise ValueError(f"kernel ({shape!r}, {scale}) needs a shape from {KERNELS} and a scale > 0.")

    @property
    def input_dim(self) -> int:
        return len(self.kernels)

    def kernel_matrix(self) -> np.ndarray:
        """``(M, support)`` the kernels ``ρ_k(s)``."""
        return np.stack([memory_kernel(shape, scale, exponent, self.support)
                         for shape, scale, exponent in self.kernels])

    def inputs(self, key: Array, batch: int) -> Array:
        return jax.random.normal(key, (batch, self.length, self.input_dim))

    def targets(self, x: Array) -> tuple[Array, Array]:
        rho = jnp.asarray(self.kernel_matrix(), x.dtype)  # (M, S)
        z = sum(rho[:, s] * _shifted(x, s) for s in range(self.support))  # (B, N, M)
        valid = jnp.broadcast_to(jnp.arange(self.length) >= self.support - 1, x.shape[:2])
        return READOUTS[self.readout](z), valid


def heavy_tailed_memory(support: int = 48, length: int = 96) -> SmoothMemory:
    """A power-law kernel ``(1 + s/2)^(−1.5)``: the default heavy-tailed memory."""
    return SmoothMemory((("power", 2.0, 1.5),), support, "tanh", length)


def light_tailed_memory(support: int = 48, length: int = 96) -> SmoothMemory:
    """A Matérn-type kernel ``(1 + s/4)·e^(−s/4)``: the default light-tailed memory (not one exponential)."""
    return SmoothMemory((("matern", 4.0, 0.0),), support, "tanh", length)


MemoryTask = FixedMemory | SparseBoolean | AdaptiveMemory | SmoothMemory


@functools.partial(jax.jit, static_argnums=(0, 2))
def sample(task: MemoryTask, key: Array, batch: int) -> MemoryBatch:
    """One batch of ``batch`` sequences drawn with ``key``."""
    x = task.inputs(key, batch)
    y, valid = task.targets(x)
    return MemoryBatch(x, y, valid)


def batches(task: MemoryTask, seed: int, batch: int) -> Iterator[MemoryBatch]:
    """An endless stream of batches: step ``i`` is ``sample(task, fold_in(PRNGKey(seed), i), batch)``, so a
    stream is reproducible from its seed and any step can be regenerated alone."""
    key = jax.random.PRNGKey(seed)
    step = 0
    while True:
        yield sample(task, jax.random.fold_in(key, step), batch)
        step += 1


def normalised_mse(predictions: Array, targets: Array, valid: Array) -> Array:
    """MSE over the valid positions divided by the targets' variance there (predicting the mean scores 1).

    Leading axes of ``predictions`` beyond the targets' (e.g. seeds) are kept: ``(..., B, N) -> (...)``."""
    w = valid.astype(predictions.dtype)
    count = w.sum()
    mean = (targets * w).sum() / count
    variance = (((targets - mean) ** 2) * w).sum() / count
    return (((predictions - targets) ** 2) * w).sum(axis=(-2, -1)) / count / variance


def sign_error(predictions: Array, targets: Array, valid: Array) -> Array:
    """The fraction of valid positions where ``sign(prediction)`` is not the ``±1`` target (0.5 is chance for a
    balanced target; a prediction of exactly 0 counts as wrong). ``(..., B, N) -> (...)`` like `normalised_mse`."""
    wrong = (jnp.sign(predictions) != targets) & valid
    return wrong.sum(axis=(-2, -1)) / valid.sum()
