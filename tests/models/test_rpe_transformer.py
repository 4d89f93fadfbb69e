"""Relative-position families have the shapes their definitions state; the RPE transformer is causal, its maps
are distributions, position-only attention ignores content, and a small model learns a fixed-lag task."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.models import relative_position as rpe
from pdeflow.models.rpe_transformer import RPETransformer, RPETransformerConfig
from pdeflow.tasks.sparse_memory import FixedMemory
from pdeflow.train.memory import MemoryTrainConfig, held_out_errors, train_memory_models


def test_linear_family_is_linear_in_distance():
    slopes = jnp.array([[0.5], [-0.25]])
    bias = np.asarray(rpe.relative_bias("linear", slopes, 7))
    assert bias.shape == (2, 7, 7)
    d = np.abs(np.arange(7)[:, None] - np.arange(7)[None, :])
    np.testing.assert_allclose(bias[0], -0.5 * d)
    np.testing.assert_allclose(bias[1], 0.25 * d)
    # position-only attention under it decays geometrically: equal ratios between neighbouring keys
    probs = np.asarray(jax.nn.softmax(jnp.where(np.tril(np.ones((7, 7), bool)), bias[0], -1e9)))[6, :7]
    np.testing.assert_allclose(probs[:-1] / probs[1:], np.exp(-0.5), rtol=1e-5)


def test_log_family_is_a_power_law():
    bias = np.asarray(rpe.relative_bias("log", jnp.array([[1.5]]), 40))[0]
    row = np.exp(bias[39, ::-1])  # keys at distance 0, 1, …, 39
    # (1 + δ)^(−1.5): a constant ratio per doubling of 1 + δ
    np.testing.assert_allclose(row[3] / row[1], 2.0 ** -1.5, rtol=1e-5)
    np.testing.assert_allclose(row[31] / row[15], 2.0 ** -1.5, rtol=1e-5)
    np.testing.assert_allclose(bias, bias.T)


def test_t5_buckets_are_exact_near_and_logarithmic_far():
    distance = np.arange(300)
    buckets = rpe.t5_buckets(distance, num_buckets=32, max_distance=128)
    np.testing.assert_array_equal(buckets[:16], np.arange(16))  # one bucket per near distance
    assert np.all(np.diff(buckets) >= 0) and buckets.max() == 31 and buckets.min() == 0
    assert np.all(buckets[128:] == 31)  # beyond max_distance: the last bucket
    widths = np.bincount(buckets)[16:31]
    assert np.all(np.diff(widths) >= -1) and widths[-1] > 3 * widths[0]  # wider the farther
    assert len(set(buckets[16:128])) == 15
    table = jnp.arange(64, dtype=jnp.float32).reshape(2, 32)
    bias = np.asarray(rpe.relative_bias("t5", table, 20))
    np.testing.assert_array_equal(bias[1], 32 + rpe.t5_buckets(rpe.distances(20), 32, 128))


def test_table_and_none_families():
    table = jnp.arange(6, dtype=jnp.float32)[None]
    bias = np.asarray(rpe.relative_bias("table", table, 9, max_distance=5))
    np.testing.assert_array_equal(bias[0], np.minimum(rpe.distances(9), 5))
    assert np.all(np.asarray(rpe.relative_bias("none", None, 4)) == 0)
    for family, count in (("none", 0), ("linear", 1), ("log", 1), ("t5", 32), ("table", 129)):
        assert rpe.num_weights(family, 32, 128) == count
        assert rpe.initial_weights(family, 3, 32, 128).shape == (3, count)
    with pytest.raises(ValueError, match="unknown relative-position family"):
        rpe.relative_bias("rotary", None, 4)


@pytest.mark.parametrize("family", rpe.RPE_FAMILIES)
@pytest.mark.parametrize("dot_product", [True, False])
def test_maps_are_causal_distributions(family, dot_product):
    config = RPETransformerConfig(input_dim=3, num_layers=2, num_heads=2, head_dim=4, model_dim=8, ffn_width=8,
                                  rpe=family, dot_product=dot_product, num_buckets=8, max_distance=16)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 10, 3))
    model = RPETransformer(config)
    params = model.init(jax.random.PRNGKey(1), x)
    out, trace = model.apply(params, x)
    assert out.shape == (2, 10) and trace.attention.shape == (2, 2, 2, 10, 10) and trace.hidden.shape == (3, 2, 10, 8)
    maps = np.asarray(trace.attention)
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)
    assert np.all(maps[..., np.triu_indices(10, 1)[0], np.triu_indices(10, 1)[1]] < 1e-6)
    # causal: a later token never changes an earlier prediction
    out2, _ = model.apply(params, x.at[:, 7].add(3.0))
    np.testing.assert_allclose(np.asarray(out2[:, :7]), np.asarray(out[:, :7]), atol=1e-5)
    if not dot_product:  # position-only attention: the maps ignore the content
        _, other = model.apply(params, 2.0 * x + 1.0)
        np.testing.assert_allclose(np.asarray(other.attention), maps, atol=1e-6)


def test_bad_config_and_input_say_what_to_fix():
    with pytest.raises(ValueError, match="relative-position family"):
        RPETransformerConfig(rpe="alibi")
    with pytest.raises(ValueError, match="max_distance"):
        RPETransformerConfig(rpe="t5", num_buckets=64, max_distance=16)
    model = RPETransformer(RPETransformerConfig(input_dim=2))
    with pytest.raises(ValueError, match=r"\(B, N, 2\)"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 5, 3)))
    with pytest.raises(ValueError, match="input_dim"):
        train_memory_models(FixedMemory(lags=(1,), length=8), RPETransformerConfig(input_dim=2),
                            MemoryTrainConfig(steps=1))


def test_a_small_model_learns_a_short_fixed_lag_task():
    task = FixedMemory(lags=(1, 3), readout="linear", length=12)
    config = RPETransformerConfig(input_dim=1, model_dim=16, num_heads=2, head_dim=8, ffn_width=16, rpe="t5",
                                  num_buckets=16, max_distance=32)
    train = MemoryTrainConfig(steps=400, batch_size=32, learning_rate=1e-2, test_size=256)
    params, losses = train_memory_models(task, config, train, seeds=(0,))
    error = held_out_errors(task, config, train, params)
    assert losses[:10].mean() > 0.5  # it starts knowing nothing
    assert float(error[0]) < 0.02, error  # and ends near zero error on fresh sequences
