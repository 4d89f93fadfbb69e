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
