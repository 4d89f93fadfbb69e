"""Lens entropies along generation: the profile Entropy-Lens (Ali et al. 2025) reads from a causal LM.

At every generation step the model runs on its prompt plus what it has generated so far; the logit lens of
every block's output (``Trace.hidden[1:]``, the anchor's ``hook_resid_post``) at the **last position** gives
one distribution per layer, and its Rényi entropies are recorded; the next token is then the argmax of the
model's own logits there (greedy) or a draw from ``softmax(logits / temperature)`` (the anchor samples at
temperature 1 in its task-identification runs). The steps run as one `jax.lax.scan` over a fixed-size token
buffer (prompt and generated tokens, right-padded), so a whole generation compiles once per
``(batch, buffer, steps)`` shape.

One loop serves every causal LM; what differs is the model's step, a hashable `LensDecoder`: `GPTDecoder`
(pdeflow's own `pdeflow.models.gpt.GPT`) or `CheckpointDecoder` (a user's GPT-2-format checkpoint,
`pdeflow.models.checkpoints.PretrainedModel`). Prompts are right-padded and each keeps its own length, so
every real token sits at its own position (learned absolute positions see no shift) and, the attention being
causal, the padding after a prompt never reaches its last position: a padded batch gives each prompt what it
gives alone.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pdeflow.information.entropy import renyi_entropy_from_logits
from pdeflow.information.lens import lens_logits


class GeneratedLens(NamedTuple):
    """What `generate_with_lens` returns.

    Attributes:
        tokens: ``(B, T)`` the generated token ids.
        entropy: ``(A, T, L, B)`` lens entropies (bits) of blocks ``1..L`` at the last position of each step
            (step ``t`` reads the distribution that predicts generated token ``t``).
    """

    tokens: Array
    entropy: Array


class LensDecoder(Protocol):
    """One causal LM's step, as `generate_with_lens` runs it (hashable: it keys the compile cache).

    Attributes:
        context_size: the most tokens it reads; vocab_size: V.
    ``readout(params) -> (norm, unembedding (d, V), bias)``: its map from a residual stream to logits.
    ``__call__(params, tokens (B, N), mask (B, N)) -> (logits (B, N, V) or None, hidden (L+1, B, N, d))``:
    None where the last layer's lens *is* the model's output (then it is used for the next token).
    """

    context_size: int
    vocab_size: int

    def readout(self, params) -> tuple[Callable | None, Array, Array | None]: ...

    def __call__(self, params, tokens, mask) -> tuple[Array | None, Array]: ...


@dataclasses.dataclass(frozen=True)
class GPTDecoder:
    """pdeflow's own `pdeflow.models.gpt.GPT` with ``config`` as a `LensDecoder`."""

    config: Any  # GPTConfig

    @property
    def context_size(self) -> int:
        return self.config.context_size

    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def readout(self, params):
        from pdeflow.models.gpt import lens_readout

        return lens_readout(self.config, params)

    def __call__(self, params, tokens, mask):
        from pdeflow.models.gpt import GPT

        logits, trace = GPT(self.config).apply(params, tokens, mask)
        return logits, trace.hidden


@dataclasses.dataclass(frozen=True)
class CheckpointDecoder:
    """A GPT-2-format checkpoint's decoder (``PretrainedModel.architecture``, a
    `pdeflow.models.checkpoints.gpt2.GPT2Architecture`) as a `LensDecoder`: its traced forward, whose last
    layer read through ``readout`` (final LayerNorm, LM head) is the model's own logits."""

    architecture: Any

    @property
    def context_size(self) -> int:
        return self.architecture.context_size

    @property
    def vocab_size(self) -> int:
        return self.architecture.vocab_size

    def readout(self, params):
        return self.architecture.readout(params)

    def __call__(self, params, tokens, mask):
        trace = self.architecture.module().apply(params, tokens, jnp.zeros_like(tokens), mask)
        return None, trace.hidden


def lens_decoder(model, params=None) -> tuple[LensDecoder, Any]:
    """``(decoder, params)`` for `generate_with_lens`: a `GPTConfig` with its ``params``, a GPT-2-format
    `PretrainedModel` (its own parameters), or a `LensDecoder` with its ``params``."""
    from pdeflow.models.gpt import GPTConfig

    if isinstance(model, GPTConfig):
        return GPTDecoder(model), params
    if hasattr(model, "architecture") and hasattr(model, "params"):  # a PretrainedModel
        if not hasattr(model.architecture, "readout") or not model.causal:
            raise ValueError(f"generation reads a causal language model's next-token head; {model.folder} is a "
                             f"{model.model_type}, only gpt2 checkpoints have one here.")
        return CheckpointDecoder(model.architecture), model.params if params is None else params
    if all(hasattr(model, a) for a in ("context_size", "vocab_size", "readout")) and callable(model):
        return model, params
    raise TypeError(f"pass a GPTConfig, a gpt2 PretrainedModel or a LensDecoder; got {type(model).__name__}.")


def generate_with_lens(model, params, prompts, lengths, steps: int, alphas: Sequence[float] = (1.0,),
                       temperature: float = 0.0, key: Array | None = None,
                       support_threshold: float = 0.0) -> GeneratedLens:
    """Generate ``steps`` tokens after each prompt with a causal LM, recording lens entropies.

    Args:
        model: pdeflow's `GPTConfig` (with ``params``), a gpt2 `PretrainedModel` (``params`` None: its own) or a
            `LensDecoder` (`lens_decoder`).
        params: the model's parameters.
        prompts: ``(B, P)`` token ids, each prompt right-padded after its ``lengths[b]`` real tokens.
        lengths: ``(B,)`` real prompt lengths, each at least 1.
        steps: tokens to generate (``P + steps`` must fit the context; pad every batch to one ``P`` so that one
            compile serves them all).
        alphas: Rényi orders (1.0 Shannon, ``math.inf`` min-entropy, 0.0 log support).
        temperature: 0 for greedy decoding; above 0, sample from ``softmax(logits / temperature)`` with ``key``.
        key: PRNG key for sampling (required when ``temperature > 0``).
        support_threshold: what counts as support for α = 0 (`renyi_entropy_from_logits`).
    Returns:
        `GeneratedLens`: tokens ``(B, T)`` and entropies ``(A, T, L, B)``.
    """
    decoder, params = lens_decoder(model, params)
    prompts, lengths = np.asarray(prompts, np.int32), np.asarray(lengths, np.int32)
    if prompts.ndim != 2 or lengths.shape != prompts.shape[:1]:
        raise ValueError(f"need prompts (B, P) and lengths (B,); got {prompts.shape} and {lengths.shape}.")
    if steps < 1 or lengths.min(initial=1) < 1 or lengths.max(initial=0) > prompts.shape[1]:
        raise ValueError(f"need steps >= 1 and 1 <= lengths <= {prompts.shape[1]}; got steps {steps} and lengths "
                         f"from {lengths.min(initial=0)} to {lengths.max(initial=0)}.")
    if prompts.shape[1] + steps > decoder.context_size:
        raise ValueError(f"prompts of {prompts.shape[1]} tokens plus {steps} generated exceed the context "
                         f"({decoder.context_size}); shorten the prompts or generate fewer tokens.")
    if prompts.size and (prompts.min() < 0 or prompts.max() >= decoder.vocab_size):
        raise ValueError(f"token ids must lie in 0..{decoder.vocab_size - 1}; got {prompts.min()}..{prompts.max()}.")
    if temperature < 0 or (temperature > 0 and key is None):
        raise ValueError(f"temperature must be >= 0 (0: greedy), and sampling (> 0) needs a key; got "
                         f"{temperature} and key {key}.")
    alphas = tuple(float(a) for a in alphas)
    key = jax.random.PRNGKey(0) if key is None else key
    buffer = np.zeros((len(prompts), prompts.shape[1] + steps), np.int32)
    buffer[:, :prompts.shape[1]] = prompts
    tokens, entropy = _generate(decoder, steps, alphas, float(temperature), float(support_threshold), params,
                                jnp.asarray(buffer), jnp.asarray(lengths), key)
    return GeneratedLens(tokens, entropy)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _generate(decoder, steps, alphas, temperature, support_threshold, params, buffer, lengths, key):
    norm, unembedding, bias = decoder.readout(params)
    rows = jnp.arange(buffer.shape[0])
    positions = jnp.arange(buffer.shape[1])

    def step(buffer, inputs):
        t, step_key = inputs
        last = lengths + t - 1  # (B,) the position whose output predicts the next token
        logits, hidden = decoder(params, buffer, positions[None] <= last[:, None])
        states = hidden[1:, rows, last]  # (L, B, d): every block's output at the last position
        lens = lens_logits(states, unembedding, norm, bias)  # (L, B, V)
        entropy = jnp.stack([renyi_entropy_from_logits(lens, a, support_threshold=support_threshold)
                             for a in alphas])  # (A, L, B)
        final = lens[-1] if logits is None else logits[rows, last]  # (B, V): the model's own next-token logits
        if temperature > 0:
            chosen = jax.random.categorical(step_key, final / temperature, axis=-1)
        else:
            chosen = jnp.argmax(final, axis=-1)
        chosen = chosen.astype(buffer.dtype)
        return buffer.at[rows, last + 1].set(chosen), (chosen, entropy)

    _, (tokens, entropy) = jax.lax.scan(step, buffer, (jnp.arange(steps), jax.random.split(key, steps)))
    return tokens.T, entropy.transpose(1, 0, 2, 3)  # (B, T), (A, T, L, B)


def windowed_profile(entropy, windows: int = 1) -> np.ndarray:
    """``(A, T, L, B) -> (A, B, windows·L)``: entropies averaged over the generated tokens in ``windows``
    consecutive equal windows (Entropy-Lens's ``num_windows``; it must divide T), flattened window-major."""
    entropy = np.asarray(entropy)
    a, t, layers, b = entropy.shape
    if windows < 1 or t % windows:
        raise ValueError(f"windows ({windows}) must divide the number of generated tokens ({t}).")
    means = entropy.reshape(a, windows, t // windows, layers, b).mean(2)  # (A, W, L, B)
    return means.transpose(0, 3, 1, 2).reshape(a, b, windows * layers)

