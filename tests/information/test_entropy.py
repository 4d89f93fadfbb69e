import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.information import attention_entropy, renyi_entropy, renyi_entropy_from_logits, shannon_entropy

ALPHAS = [0.0, 0.5, 1.0, 2.0, 3.0, math.inf]


@pytest.mark.parametrize("alpha", ALPHAS)
def test_closed_forms_uniform_and_one_hot(alpha):
    for n in (1, 2, 7, 64):
        np.testing.assert_allclose(renyi_entropy(jnp.full(n, 1.0 / n), alpha), math.log2(n), atol=1e-5)
    one_hot = jnp.zeros(9).at[4].set(1.0)
    np.testing.assert_allclose(renyi_entropy(one_hot, alpha), 0.0, atol=1e-6)


def test_two_point_distribution():
    p = 0.2
    q = jnp.array([p, 1 - p, 0.0])
    np.testing.assert_allclose(shannon_entropy(q), -(p * math.log2(p) + (1 - p) * math.log2(1 - p)), rtol=1e-6)
    np.testing.assert_allclose(renyi_entropy(q, 2.0), -math.log2(p**2 + (1 - p) ** 2), rtol=1e-6)
    np.testing.assert_allclose(renyi_entropy(q, math.inf), -math.log2(1 - p), rtol=1e-6)
    np.testing.assert_allclose(renyi_entropy(q, 0.0), 1.0, rtol=1e-6)  # support of two points
    np.testing.assert_allclose(shannon_entropy(q, base=math.e), -(p * math.log(p) + (1 - p) * math.log(1 - p)),
                               rtol=1e-6)


def test_renyi_tends_to_shannon_and_does_not_increase_with_alpha():
    p = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(0), (5, 30)) * 2.0)
    shannon = shannon_entropy(p)
    for eps in (1e-2, 1e-3):
        np.testing.assert_allclose(renyi_entropy(p, 1 - eps), shannon, rtol=2 * eps * 10)
        np.testing.assert_allclose(renyi_entropy(p, 1 + eps), shannon, rtol=2 * eps * 10)
    values = np.stack([np.asarray(renyi_entropy(p, a)) for a in ALPHAS])
    assert np.all(np.diff(values, axis=0) <= 1e-5)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_log_space_version_agrees(alpha):
    logits = jax.random.normal(jax.random.PRNGKey(1), (4, 50)) * 3.0
    np.testing.assert_allclose(renyi_entropy_from_logits(logits, alpha), renyi_entropy(jax.nn.softmax(logits), alpha),
                               rtol=1e-4, atol=1e-5)
    assert np.all(np.isfinite(renyi_entropy_from_logits(logits * 1e3, alpha)))  # extreme logits stay finite
    with pytest.raises(ValueError, match="alpha"):
        renyi_entropy_from_logits(logits, -1.0)


def test_attention_entropy_over_real_keys():
    mask = jnp.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
    uniform = mask[:, None, None, :] / mask.sum(-1)[:, None, None, None]  # (B, 1, N, N) uniform over real keys
    maps = jnp.broadcast_to(uniform, (2, 3, 4, 4))[None]  # (L=1, B, H, N, N)
    entropy = np.asarray(attention_entropy(maps, mask))
    assert entropy.shape == (1, 2, 3, 4)
    np.testing.assert_allclose(entropy[0, 0], 2.0, rtol=1e-6)
    np.testing.assert_allclose(entropy[0, 1, :, :2], 1.0, rtol=1e-6)
    assert np.all(np.isnan(entropy[0, 1, :, 2:]))  # padded query rows


def test_thresholded_support_as_entropy_lens_counts_it():
    # H_0 counts p > threshold: the two tiny probabilities of q fall below 1e-20 and are not counted
    q = jnp.array([0.5, 0.25, 0.25 - 2e-30, 1e-30, 1e-30])
    np.testing.assert_allclose(renyi_entropy(q, 0.0), math.log2(5), rtol=1e-6)
    np.testing.assert_allclose(renyi_entropy(q, 0.0, support_threshold=1e-20), math.log2(3), rtol=1e-6)
    logits = jnp.array([[0.0, 0.0, -100.0, 3.0], [1.0, 2.0, 3.0, 4.0]])  # e^-100 / Σ < 1e-20 in the first row
    np.testing.assert_allclose(renyi_entropy_from_logits(logits, 0.0), [2.0, 2.0], rtol=1e-6)  # log2 V
    np.testing.assert_allclose(renyi_entropy_from_logits(logits, 0.0, support_threshold=1e-20),
                               [math.log2(3), 2.0], rtol=1e-6)
    np.testing.assert_allclose(renyi_entropy_from_logits(logits, 0.0, support_threshold=1e-20),
                               renyi_entropy(jax.nn.softmax(logits), 0.0, support_threshold=1e-20), rtol=1e-6)
    with pytest.raises(ValueError, match="support_threshold"):
        renyi_entropy(q, 0.0, support_threshold=1.0)


@pytest.mark.parametrize("threshold", [0.0, 1e-20])
def test_log_space_limits_uniform_delta_and_order(threshold):
    alphas = [0.0, 0.5, 1.0, 5.0, math.inf]
    entropy = lambda logits, a: renyi_entropy_from_logits(logits, a, support_threshold=threshold)  # noqa: E731
    for a in alphas:  # uniform -> log V for every order; a delta (one huge logit) -> 0 for every order but H_0
        np.testing.assert_allclose(entropy(jnp.zeros(37), a), math.log2(37), rtol=1e-6)
        if a > 0:
            np.testing.assert_allclose(entropy(jnp.zeros(37).at[3].set(1e4), a), 0.0, atol=1e-6)
    # with the threshold, a delta's support is its one point: H_0 = 0 too
    delta_h0 = entropy(jnp.zeros(37).at[3].set(1e4), 0.0)
    np.testing.assert_allclose(delta_h0, 0.0 if threshold else math.log2(37), atol=1e-6)
    logits = jax.random.normal(jax.random.PRNGKey(3), (6, 40)) * 2.5
    shannon = entropy(logits, 1.0)
    for eps in (1e-2, 1e-3):  # alpha -> 1 from both sides is Shannon; large alpha tends to the min-entropy
        np.testing.assert_allclose(entropy(logits, 1 - eps), shannon, rtol=20 * eps)
        np.testing.assert_allclose(entropy(logits, 1 + eps), shannon, rtol=20 * eps)
    # H_alpha -> H_inf as alpha grows, with H_alpha <= alpha / (alpha - 1) * H_inf
    np.testing.assert_allclose(entropy(logits, 400.0), entropy(logits, math.inf), rtol=0.01)
    assert np.all(np.asarray(entropy(logits, 5.0)) <= 5 / 4 * np.asarray(entropy(logits, math.inf)) + 1e-5)
    values = np.stack([np.asarray(entropy(logits, a)) for a in alphas])
    assert np.all(np.diff(values, axis=0) <= 1e-5)  # non-increasing in alpha
