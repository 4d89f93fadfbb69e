"""The shared attention maths (`pdeflow.models.attention`): maps are distributions over the keys a query may see,
padded and future keys get exactly zero, the default temperature is √d_h, heads split and merge back, and every
model's maps equal a plain einsum reference computed from its own trace and parameters."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.models import attention
from pdeflow.models.bert import BertConfig, BertEncoder, weighted_values
from pdeflow.models.gpt import GPT, GPTConfig
from pdeflow.models.relative_position import relative_bias
from pdeflow.models.rpe_transformer import RPETransformer, RPETransformerConfig
from pdeflow.models.vit import ViT, ViTConfig
from pdeflow.paths.network import PathAttentionNet, PathNetConfig

B, N, H, DH = 3, 7, 4, 6
MASK = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] + [0] * 6], bool)


def _qkv(seed=0):
    q, k, v = (jax.random.normal(key, (B, N, H, DH)) for key in jax.random.split(jax.random.PRNGKey(seed), 3))
    return q, k, v


def test_split_and_merge_heads_round_trip():
    x = jax.random.normal(jax.random.PRNGKey(1), (B, N, H * DH))
    heads = attention.split_heads(x, H)
    assert heads.shape == (B, N, H, DH)
    np.testing.assert_array_equal(heads[:, :, 1], x[:, :, DH:2 * DH])  # head h is the h-th block of features
    np.testing.assert_array_equal(attention.merge_heads(heads), x)
    with pytest.raises(ValueError, match="divide"):
        attention.split_heads(x, 5)


def test_default_temperature_is_the_square_root_of_the_head_width():
    q, k, _ = _qkv()
    raw = jnp.einsum("bihd,bjhd->bhij", q, k)
    np.testing.assert_array_equal(attention.attention_logits(q, k), raw / math.sqrt(DH))
    np.testing.assert_array_equal(attention.attention_logits(q, k, temperature=1.0), raw)
    np.testing.assert_allclose(attention.attention_logits(q, k), raw * (1 / math.sqrt(DH)), rtol=1e-6)  # scale 1/√d_h


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_rows_are_distributions_over_the_allowed_keys(causal, masked):
    q, k, _ = _qkv()
    mask = MASK if masked else None
    probs = np.asarray(attention.attention_probabilities(q, k, mask=mask, causal=causal))
    assert probs.shape == (B, H, N, N)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    allowed = np.ones((B, 1, N, N), bool)
    if masked:
        allowed &= MASK[:, None, None, :]
    if causal:
        allowed &= np.tril(np.ones((N, N), bool))
    assert np.all(probs[np.broadcast_to(~allowed, probs.shape)] == 0.0)  # exactly zero, not merely small
    assert np.all(probs[np.broadcast_to(allowed, probs.shape)] > 0.0)


def test_masked_logits_are_replaced_not_added():
    logits = jnp.array([[0.5, 2.0, -1.0]])
    allowed = jnp.array([[True, False, True]])
    np.testing.assert_array_equal(attention.masked_softmax(logits, allowed),
                                  jax.nn.softmax(jnp.where(allowed, logits, jnp.finfo(jnp.float32).min)))
    np.testing.assert_array_equal(attention.masked_softmax(logits, allowed, -1e9),
                                  jax.nn.softmax(jnp.where(allowed, logits, -1e9)))
    np.testing.assert_array_equal(attention.masked_softmax(logits), jax.nn.softmax(logits))
    assert attention.allowed_keys(None, False, 3) is None
    np.testing.assert_array_equal(attention.allowed_keys(None, True, 3)[0, 0], attention.causal_mask(3))
    np.testing.assert_array_equal(attention.allowed_keys(MASK, True, N),
                                  np.tril(np.ones((N, N), bool)) & MASK[:, None, None, :])


def test_bias_is_added_before_the_mask():
    q, k, _ = _qkv()
    bias = jax.random.normal(jax.random.PRNGKey(2), (H, N, N))
    probs = attention.attention_probabilities(q, k, causal=True, bias=bias)
    logits = attention.attention_logits(q, k) + bias
    expected = jax.nn.softmax(jnp.where(np.tril(np.ones((N, N), bool)), logits, -jnp.inf))
    np.testing.assert_allclose(probs, expected, rtol=1e-6, atol=1e-7)


def test_attend_is_the_weighted_sum_of_the_values():
    q, k, v = _qkv()
    probs = attention.attention_probabilities(q, k, mask=MASK)
    expected = np.einsum("bhij,bjhd->bihd", np.asarray(probs, np.float64), np.asarray(v, np.float64))
    np.testing.assert_allclose(attention.attend(probs, v), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attention.attend(probs[0], v), np.einsum("hij,bjhd->bihd", probs[0], v), rtol=1e-5,
                               atol=1e-6)  # one set of maps for the batch
    np.testing.assert_allclose(weighted_values(probs, v), expected, rtol=1e-5, atol=1e-6)  # BERT's summation order


# ---- every model's maps against a plain float64 einsum reference from its own trace and parameters ----

def _dense(p, x):
    return np.asarray(x, np.float64) @ np.asarray(p["kernel"], np.float64) + np.asarray(p["bias"], np.float64)


def _layer_norm(p, x, eps):
    return np.asarray(nn.LayerNorm(eps).apply({"params": p}, x), np.float64)


def _reference_maps(h, p, num_heads, mask=None, causal=False, bias=None):
    """softmax(q·k/√d_h + bias) over the allowed keys, in float64, with disallowed keys at exactly zero."""
    batch, n, _ = h.shape
    q, k = (_dense(p[name], h).reshape(batch, n, num_heads, -1) for name in ("query", "key"))
    logits = np.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + np.asarray(bias, np.float64)
    allowed = np.ones((batch, 1, n, n), bool)
    if mask is not None:
        allowed &= np.asarray(mask, bool)[:, None, None, :]
    if causal:
        allowed &= np.tril(np.ones((n, n), bool))
    logits = np.where(allowed, logits, -np.inf)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _check_maps(actual, expected):
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(actual)[expected == 0], 0.0)


def test_bert_maps_equal_the_reference():
    config = BertConfig(vocab_size=40, hidden_size=24, num_layers=2, num_heads=4, intermediate_size=32,
                        max_positions=N)
    ids = jax.random.randint(jax.random.PRNGKey(3), (B, N), 1, 40)
    model = BertEncoder(config)
    params = model.init(jax.random.PRNGKey(0), ids, jnp.zeros_like(ids), MASK)
    trace = model.apply(params, ids, jnp.zeros_like(ids), MASK)
    for layer in range(config.num_layers):  # post-LN: attention reads the stream as it is
        p = params["params"][f"layer_{layer}"]["attention"]
        _check_maps(trace.attention[layer], _reference_maps(trace.hidden[layer], p, config.num_heads, mask=MASK))


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_gpt_maps_equal_the_reference(norm):
    config = GPTConfig(vocab_size=30, context_size=N, hidden_size=24, num_layers=2, num_heads=4, norm=norm)
    tokens = jax.random.randint(jax.random.PRNGKey(4), (B, N), 0, 30)
    model = GPT(config)
    params = model.init(jax.random.PRNGKey(0), tokens, MASK)
    _, trace = model.apply(params, tokens, MASK)
    for layer in range(config.num_layers):
        p = params["params"][f"layer_{layer}"]
        h = _layer_norm(p["attention_norm"], trace.hidden[layer], config.layer_norm_eps) if norm == "pre" \
            else trace.hidden[layer]
        _check_maps(trace.attention[layer], _reference_maps(h, p, config.num_heads, mask=MASK, causal=True))


def test_vit_maps_equal_the_reference():
    config = ViTConfig(hidden_size=24, num_layers=2, num_heads=4, mlp_size=32)
    images = jax.random.uniform(jax.random.PRNGKey(5), (2, 8, 8))
    model = ViT(config)
    params = model.init(jax.random.PRNGKey(0), images)
    _, trace = model.apply(params, images)
    for layer in range(config.num_layers):
        p = params["params"][f"layer_{layer}"]
        h = _layer_norm(p["attention_norm"], trace.hidden[layer], config.layer_norm_eps)
        _check_maps(trace.attention[layer], _reference_maps(h, p, config.num_heads))


@pytest.mark.parametrize("family", ["none", "t5", "linear"])
def test_rpe_transformer_maps_equal_the_reference(family):
    config = RPETransformerConfig(input_dim=2, model_dim=16, num_layers=2, num_heads=3, head_dim=6, rpe=family,
                                  num_buckets=8, max_distance=16)
    x = jax.random.normal(jax.random.PRNGKey(6), (B, N, 2))
    model = RPETransformer(config)
    params = model.init(jax.random.PRNGKey(0), x)
    _, trace = model.apply(params, x)
    for layer in range(config.num_layers):
        p = params["params"][f"layer_{layer}"]
        h = _layer_norm(p["attention_norm"], trace.hidden[layer], 1e-6)
        bias = None if family == "none" else relative_bias(family, p["position_bias"], N, config.num_buckets,
                                                            config.max_distance)
        _check_maps(trace.attention[layer], _reference_maps(h, p, config.num_heads, causal=True, bias=bias))


def test_path_network_maps_equal_the_reference():
    config = PathNetConfig(input_dim=6, width=10, num_layers=2, num_heads=3, key_dim=5)
    x = jax.random.normal(jax.random.PRNGKey(7), (B, N, 6))
    model = PathAttentionNet(config)
    params = model.init(jax.random.PRNGKey(0), x)
    _, maps = model.apply(params, x)
    xs = np.asarray(x, np.float64)
    for layer in range(config.num_layers):
        q = np.einsum("hgd,bsd->bshg", np.asarray(params["params"][f"query_{layer}"], np.float64), xs)
        k = np.einsum("hgd,bsd->bshg", np.asarray(params["params"][f"key_{layer}"], np.float64), xs)
        logits = np.einsum("bshg,bthg->bhst", q, k) / (config.input_dim * math.sqrt(config.key_dim))
        e = np.exp(logits - logits.max(-1, keepdims=True))
        np.testing.assert_allclose(maps[layer], e / e.sum(-1, keepdims=True), rtol=1e-4, atol=1e-6)
