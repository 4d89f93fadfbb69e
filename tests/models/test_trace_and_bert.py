import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.models import BertConfig, BertEncoder, Trace, check_trace

SMALL = BertConfig(vocab_size=40, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_positions=12)


@pytest.fixture(scope="module")
def small_model():
    model = BertEncoder(SMALL)
    ids = jnp.ones((1, 8), jnp.int32)
    params = model.init(jax.random.PRNGKey(0), ids, jnp.zeros_like(ids), jnp.ones((1, 8), bool))
    return model, params


def test_real_tokens_do_not_see_padding(small_model):
    model, params = small_model
    ids = jnp.array([[2, 5, 7, 9, 3, 0, 0, 0]], jnp.int32)
    mask = ids != 0
    padded = model.apply(params, ids, jnp.zeros_like(ids), mask)
    short = model.apply(params, ids[:, :5], jnp.zeros_like(ids[:, :5]), mask[:, :5])
    np.testing.assert_allclose(padded.hidden[:, :, :5], short.hidden, atol=1e-5)
    check_trace(padded)
    np.testing.assert_allclose(padded.attention.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(padded.attention[..., 5:], 0.0)


def test_too_many_tokens_for_the_positions(small_model):
    model, params = small_model
    ids = jnp.ones((1, 13), jnp.int32)
    with pytest.raises(ValueError, match="positions"):
        model.apply(params, ids, jnp.zeros_like(ids), jnp.ones((1, 13), bool))


def _trace(layers=2, batch=2, heads=2, n=4, d=3):
    attention = np.full((layers, batch, heads, n, n), 1.0 / n, np.float32)
    return Trace(np.zeros((layers + 1, batch, n, d), np.float32), attention, np.ones((batch, n), bool))


@pytest.mark.parametrize("corrupt, message", [
    (lambda t: t._replace(hidden=t.hidden[0]), "rank"),
    (lambda t: t._replace(attention=t.attention[..., :3]), "disagree"),
    (lambda t: t._replace(attention=t.attention * 2), "sum to one"),
    (lambda t: t._replace(attention=np.log(t.attention)), "negative"),
    (lambda t: t._replace(hidden=np.where(np.arange(3) == 1, np.nan, t.hidden)), "NaN"),
    (lambda t: t._replace(mask=np.array([[1, 1, 1, 1], [0, 0, 0, 0]], bool)), "all padding"),
])
def test_malformed_traces_are_named(corrupt, message):
    check_trace(_trace())
    with pytest.raises(ValueError, match=message):
        check_trace(corrupt(_trace()))
