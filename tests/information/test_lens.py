import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.information import entropy_profile, lens_logits, renyi_entropy, shannon_entropy


def test_lens_of_the_last_layer_is_the_models_own_output_distribution():
    # a model whose output is softmax(LayerNorm(h_L) W + b): the lens at layer L must give exactly that
    key = jax.random.PRNGKey(0)
    hidden = jax.random.normal(key, (4, 3, 5, 8))  # (L+1, B, N, d)
    norm = nn.LayerNorm()
    norm_params = norm.init(key, hidden[-1])
    norm_params = jax.tree_util.tree_map(lambda x: x + 0.1, norm_params)
    w = jax.random.normal(jax.random.PRNGKey(1), (8, 11))
    b = jax.random.normal(jax.random.PRNGKey(2), (11,))
    output = jax.nn.softmax(norm.apply(norm_params, hidden[-1]) @ w + b)
    apply_norm = lambda h: norm.apply(norm_params, h)  # noqa: E731
    np.testing.assert_allclose(jax.nn.softmax(lens_logits(hidden[-1], w, apply_norm, b)), output, rtol=1e-5)
    mask = jnp.ones((3, 5), bool).at[1, 3:].set(False)
    profile = entropy_profile(hidden, mask, w, apply_norm, b, alphas=(0.5, 1.0, 2.0, math.inf))
    assert profile.entropy.shape == (4, 4, 3, 5)
    for i, alpha in enumerate(profile.alphas):
        expected = renyi_entropy(output, alpha)
        np.testing.assert_allclose(np.where(mask, profile.entropy[i, -1], 0.0), np.where(mask, expected, 0.0),
                                   rtol=1e-4, atol=1e-5)
    assert np.all(np.isnan(profile.entropy[:, :, 1, 3:]))
    np.testing.assert_allclose(profile.depth, [0, 1 / 3, 2 / 3, 1])
    means = np.asarray(profile.mean_over_tokens())
    np.testing.assert_allclose(means[1, -1, 1], np.asarray(shannon_entropy(output[1, :3])).mean(), rtol=1e-4)


def test_entropy_profile_checks_shapes():
    with pytest.raises(ValueError, match="unembedding must have shape"):
        entropy_profile(jnp.zeros((2, 1, 3, 4)), jnp.ones((1, 3), bool), jnp.zeros((10, 4)))
    with pytest.raises(ValueError, match="mask"):
        entropy_profile(jnp.zeros((2, 1, 3, 4)), jnp.ones((2, 3), bool), jnp.zeros((4, 10)))
