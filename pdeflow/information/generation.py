"""Lens entropies along generation: the profile Entropy-Lens (Ali et al. 2025) reads from a causal LM.

At every generation step the model runs on its prompt plus what it has generated so far; the logit lens of
every block's output (``Trace.hidden[1:]``, the anchor's ``hook_resid_post``) at the **last position** gives
one distribution per layer, and its Rényi entropies are recorded; the next token is then the argmax of the
model's own logits there (greedy) or a draw from ``softmax(logits / temperature)`` (the anchor samples at
temperature 1 in its task-identification runs). The steps run as one `jax.lax.scan` over a fixed-size token
buffer (prompt and generated tokens, right-padded), so a whole generation compiles once per
``(batch, buffer, steps)`` shape.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

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


def generate_with_lens(config, params, prompts, lengths, steps: int, alphas: Sequence[float] = (1.0,),
                       temperature: float = 0.0, key: Array | None = None,
                       support_threshold: float = 0.0) -> GeneratedLens:
    """Generate ``steps`` tokens after each prompt with a `pdeflow.models.gpt.GPT`, recording lens entropies.

    Args:
        config: the model's `GPTConfig`.
        params: its parameters.
        prompts: ``(B, P)`` token ids, each prompt right-padded after its ``lengths[b]`` real tokens.
        lengths: ``(B,)`` real prompt lengths, each at least 1.
        steps: tokens to generate (``P + steps`` must fit the context).
        alphas: Rényi orders (1.0 Shannon, ``math.inf`` min-entropy, 0.0 log support).
        temperature: 0 for greedy decoding; above 0, sample from ``softmax(logits / temperature)`` with ``key``.
        key: PRNG key for sampling (required when ``temperature > 0``).
        support_threshold: what counts as support for α = 0 (`renyi_entropy_from_logits`).
    Returns:
        `GeneratedLens`: tokens ``(B, T)`` and entropies ``(A, T, L, B)``.
    """
    prompts, lengths = np.asarray(prompts, np.int32), np.asarray(lengths, np.int32)
    if prompts.ndim != 2 or lengths.shape != prompts.shape[:1]:
        raise ValueError(f"need prompts (B, P) and lengths (B,); got {prompts.shape} and {lengths.shape}.")
    if steps < 1 or lengths.min(initial=1) < 1 or lengths.max(initial=0) > prompts.shape[1]:
        raise ValueError(f"need steps >= 1 and 1 <= lengths <= {prompts.shape[1]}; got steps {steps} and lengths "
                         f"from {lengths.min(initial=0)} to {lengths.max(initial=0)}.")
    if prompts.shape[1] + steps > config.context_size:
        raise ValueError(f"prompts of {prompts.shape[1]} tokens plus {steps} generated exceed the context "
                         f"({config.context_size}); shorten the prompts or generate fewer tokens.")
    if temperature < 0 or (temperature > 0 and key is None):
        raise ValueError(f"temperature must be >= 0 (0: greedy), and sampling (> 0) needs a key; got "
                         f"{temperature} and key {key}.")
    alphas = tuple(float(a) for a in alphas)
    key = jax.random.PRNGKey(0) if key is None else key
    buffer = np.zeros((len(prompts), prompts.shape[1] + steps), np.int32)
    buffer[:, :prompts.shape[1]] = prompts
    tokens, entropy = _generate(config, steps, alphas, float(temperature), float(support_threshold), params,
                                jnp.asarray(buffer), jnp.asarray(lengths), key)
    return GeneratedLens(tokens, entropy)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3, 4))
def _generate(config, steps, alphas, temperature, support_threshold, params, buffer, lengths, key):
    from pdeflow.models.gpt import GPT, lens_readout

    norm, unembedding, bias = lens_readout(config, params)
    rows = jnp.arange(buffer.shape[0])
    positions = jnp.arange(buffer.shape[1])

    def step(buffer, inputs):
        t, step_key = inputs
        last = lengths + t - 1  # (B,) the position whose output predicts the next token
        logits, trace = GPT(config).apply(params, buffer, positions[None] <= last[:, None])
        states = trace.hidden[1:, rows, last]  # (L, B, d): every block's output at the last position
        lens = lens_logits(states, unembedding, norm, bias)  # (L, B, V)
        entropy = jnp.stack([renyi_entropy_from_logits(lens, a, support_threshold=support_threshold)
                             for a in alphas])  # (A, L, B)
        final = logits[rows, last]  # (B, V)
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

