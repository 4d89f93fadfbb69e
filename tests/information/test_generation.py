"""Lens entropies along generation (Entropy-Lens's profile) on a tiny random GPT."""

import math

import jax
import numpy as np
import pytest

from pdeflow.information.entropy import renyi_entropy_from_logits
from pdeflow.information.generation import _generate, generate_with_lens, windowed_profile
from pdeflow.models.gpt import GPT, GPTConfig, gpt_forward

ALPHAS = (0.0, 1.0, math.inf)


@pytest.fixture(scope="module")
def tiny():
    config = GPTConfig(vocab_size=11, context_size=12, hidden_size=16, num_layers=2, num_heads=2)
    params = GPT(config).init(jax.random.PRNGKey(0), np.zeros((1, 4), np.int32))
    return config, params


def test_greedy_generation_and_entropies_match_a_step_by_step_reference(tiny):
    config, params = tiny
    prompts = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 0, 0]], np.int32)
    lengths = np.array([5, 3])
    out = generate_with_lens(config, params, prompts, lengths, 4, ALPHAS, support_threshold=1e-20)
    assert out.tokens.shape == (2, 4) and out.entropy.shape == (3, 4, 2, 2)  # (A, T, L, B)
    for b in range(2):  # the reference: one plain forward per step on the sequence so far (one padded shape)
        sequence = list(prompts[b, :lengths[b]])
        for t in range(4):
            n = len(sequence)
            padded = np.zeros((1, 9), np.int32)
            padded[0, :n] = sequence
            logits, _ = gpt_forward(config, params, padded, np.arange(9)[None] < n)
            # the last block's lens is the model's own output: its entropy is that of the next-token distribution
            final = np.asarray(renyi_entropy_from_logits(logits[0, n - 1], 1.0))
            np.testing.assert_allclose(out.entropy[1, t, -1, b], final, rtol=1e-4, atol=1e-5)
            assert int(out.tokens[b, t]) == int(np.argmax(logits[0, n - 1]))
            sequence.append(int(np.argmax(logits[0, n - 1])))
    # Rényi orders do not increase; H_0 of a tiny model's softmax is log V (nothing below 1e-20)
    assert np.all(np.diff(np.asarray(out.entropy), axis=0) <= 1e-5)
    np.testing.assert_allclose(out.entropy[0], math.log2(11), rtol=1e-6)


def test_sampling_is_seeded_and_one_compile_serves_every_batch_of_a_shape(tiny):
    config, params = tiny
    prompts, lengths = np.array([[1, 2, 3, 4]] * 3, np.int32), np.array([4, 4, 2])
    key = jax.random.PRNGKey(7)
    a = generate_with_lens(config, params, prompts, lengths, 5, temperature=1.0, key=key)
    b = generate_with_lens(config, params, prompts, lengths, 5, temperature=1.0, key=key)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    compiled = _generate._cache_size()
    generate_with_lens(config, params, prompts[::-1] % 5, lengths, 5, temperature=1.0, key=jax.random.PRNGKey(1))
    assert _generate._cache_size() == compiled
    with pytest.raises(ValueError, match="context"):
        generate_with_lens(config, params, prompts, lengths, 9)
    with pytest.raises(ValueError, match="key"):
        generate_with_lens(config, params, prompts, lengths, 2, temperature=1.0)


def test_windowed_profile_averages_consecutive_tokens():
    entropy = np.arange(2 * 4 * 3 * 5, dtype=float).reshape(2, 4, 3, 5)  # (A, T, L, B)
    one = windowed_profile(entropy)
    assert one.shape == (2, 5, 3)
    np.testing.assert_allclose(one, entropy.mean(1).transpose(0, 2, 1))
    two = windowed_profile(entropy, 2)
    np.testing.assert_allclose(two[0, 1, 3:], entropy[0, 2:, :, 1].mean(0))  # second window, prompt 1
    with pytest.raises(ValueError, match="divide"):
        windowed_profile(entropy, 3)
