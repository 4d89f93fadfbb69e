"""The causal language model: causality, a well-formed trace, and a lens readout that is the model's own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.information import entropy_profile, lens_logits, renyi_entropy
from pdeflow.models import check_trace
from pdeflow.models.gpt import GPT, GPTConfig, lens_readout

LAYOUTS = [dict(norm="pre", tie_embeddings=True), dict(norm="post", tie_embeddings=False),
           dict(norm="pre", tie_embeddings=False), dict(norm="post", tie_embeddings=True)]


def _model(**layout):
    config = GPTConfig(vocab_size=11, context_size=8, hidden_size=16, num_layers=2, num_heads=2, mlp_ratio=2,
                       **layout)
    tokens = jax.random.randint(jax.random.PRNGKey(0), (3, 8), 0, 11)
    params = GPT(config).init(jax.random.PRNGKey(1), tokens)
    # move every parameter off its initial value, so LayerNorm scales and biases matter
    params = jax.tree_util.tree_map(lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(2), x.shape), params)
    return config, params, tokens


@pytest.mark.parametrize("layout", LAYOUTS)
def test_future_tokens_change_nothing_before_them(layout):
    config, params, tokens = _model(**layout)
    logits, trace = GPT(config).apply(params, tokens)
    changed = tokens.at[:, 5:].set((tokens[:, 5:] + 1) % 11)
    logits2, trace2 = GPT(config).apply(params, changed)
    np.testing.assert_allclose(logits[:, :5], logits2[:, :5], atol=1e-5)
    np.testing.assert_allclose(trace.hidden[:, :, :5], trace2.hidden[:, :, :5], atol=1e-5)
    assert not np.allclose(logits[:, 5:], logits2[:, 5:])
    check_trace(trace)
    assert np.all(np.triu(np.asarray(trace.attention), k=1) == 0)  # no query attends to a later key


@pytest.mark.parametrize("layout", LAYOUTS)
def test_lens_of_the_last_layer_is_the_models_own_output_distribution(layout):
    config, params, tokens = _model(**layout)
    logits, trace = GPT(config).apply(params, tokens)
    norm, unembedding, bias = lens_readout(config, params)
    assert (norm is None) == (config.norm == "post") and (bias is None) == config.tie_embeddings
    np.testing.assert_allclose(lens_logits(trace.hidden[-1], unembedding, norm, bias), logits, rtol=1e-4, atol=1e-4)
    profile = entropy_profile(trace.hidden, trace.mask, unembedding, norm, bias, alphas=(1.0, 2.0))
    np.testing.assert_allclose(profile.entropy[:, -1], jnp.stack([renyi_entropy(jax.nn.softmax(logits), a)
                                                                  for a in (1.0, 2.0)]), rtol=1e-4, atol=1e-5)
    # an earlier layer is read differently: the lens is not the output everywhere
    assert not np.allclose(profile.entropy[0, 0], profile.entropy[0, -1], atol=1e-3)


def test_bad_configs_and_inputs_are_refused():
    with pytest.raises(ValueError, match="norm"):
        GPTConfig(norm="sandwich")
    with pytest.raises(ValueError, match="num_heads"):
        GPTConfig(hidden_size=10, num_heads=4)
    config, params, _ = _model()
    with pytest.raises(ValueError, match="1 <= N <= 8"):
        GPT(config).apply(params, jnp.zeros((1, 9), jnp.int32))
