"""The attention-PDE's position-bias families: the same biases as the transformers' RPE, a causal mask, clear
errors for settings that do not fit, and a fit that recovers the family and decay of a known kernel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.fitting.fit import FitConfig, evaluate_losses, fit_surrogate
from pdeflow.models import relative_position as rpe
from pdeflow.models.rpe_transformer import RPETransformer, RPETransformerConfig
from pdeflow.models.trace import Trace
from pdeflow.pde import attention_pde
from pdeflow.pde.attention_pde import SurrogateConfig, init_surrogate
from pdeflow.pde.solve import SolverConfig


def _config(**kw):
    base = dict(num_layers=1, num_heads=2, model_dim=8, width=8, key_dim=4, value_rank=2, mlp_width=8, num_knots=1,
                max_distance=23)
    return SurrogateConfig(**{**base, **kw})


@pytest.mark.parametrize("family", ["linear", "log", "t5"])
def test_families_give_the_transformers_biases(family):
    config = _config(position_family=family, position_buckets=16)
    weights = jax.random.normal(jax.random.PRNGKey(0), (2, config.num_position_buckets))
    np.testing.assert_allclose(np.asarray(attention_pde.position_bias(weights, config, 20)),
                               np.asarray(rpe.relative_bias(family, weights, 20, 16, 23)))
    assert config.num_position_buckets == rpe.num_weights(family, 16, 23)


def test_causal_kernel_is_lower_triangular_and_normalised():
    config = _config(position_family="log", causal=True)
    params = init_surrogate(jax.random.PRNGKey(0), config)
    u = jax.random.normal(jax.random.PRNGKey(1), (10, 8))
    maps = np.asarray(attention_pde.attention_kernel(params, config, jnp.float32(0.0), u, jnp.ones(10, bool)))
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(maps[0], 1) < 1e-6) and np.all(np.triu(maps[1], 1) < 1e-6)
    # slopes start at zero: the bias is switched off until the fit moves it
    assert np.all(np.asarray(params["kernel"]["position_bias"]) == 0)


def test_bad_position_settings_say_what_to_fix():
    with pytest.raises(ValueError, match="position_family"):
        _config(position_family="alibi")
    with pytest.raises(ValueError, match="patch grid takes the default"):
        _config(position_family="log", grid=(2, 2), prefix_tokens=1)
    with pytest.raises(ValueError, match="max_distance"):
        _config(position_family="t5", position_buckets=64, max_distance=16)


def _traces(slopes, n=24, sizes=(32, 16, 32)):
    """Traces of a position-only transformer whose log-RPE slopes are ``slopes`` (its maps are known)."""
    config = RPETransformerConfig(input_dim=1, model_dim=8, num_heads=2, head_dim=4, ffn_width=8, rpe="log",
                                  dot_product=False)
    model = RPETransformer(config)
    x = jax.random.normal(jax.random.PRNGKey(0), (sum(sizes), n, 1))
    params = model.init(jax.random.PRNGKey(1), x[:1])
    params["params"]["layer_0"]["position_bias"] = jnp.asarray(slopes, jnp.float32)[:, None]
    _, trace = model.apply(params, x)
    out, start = [], 0
    for size in sizes:
        out.append(trace.take(slice(start, start + size)))
        start += size
    return [Trace(*(np.asarray(a) for a in t)) for t in out]


def test_the_fit_recovers_a_power_law_kernel_and_its_decay():
    train, validation, test = _traces([0.6, 1.2])
    solver = SolverConfig("euler", adaptive=False, dt0=1.0, adjoint="stored")
    fit = FitConfig(steps=120, batch_size=16, learning_rate=3e-2, eval_every=40, patience=0, devices=1)
    kl = {}
    for family in ("linear", "log"):
        config = _config(position_family=family, causal=True)
        result = fit_surrogate(train, validation, config, solver, fit, progress=False)
        kl[family] = evaluate_losses(result.params, config, solver, test, 16)[0]
        if family == "log":
            slopes = np.sort(np.asarray(result.params["kernel"]["position_bias"])[0, :, 0])
    assert kl["log"] < 0.01 and kl["linear"] > 5 * kl["log"], kl
    np.testing.assert_allclose(slopes, [0.6, 1.2], atol=0.1)


@pytest.mark.parametrize("family, grid, n", [("offsets", (), 20), ("offsets", (3, 4), 13), ("linear", (), 20),
                                             ("log", (), 20), ("t5", (), 20)])
def test_added_bias_matches_the_plain_sum_in_value_and_gradient_under_vmap(family, grid, n):
    """`add_position_bias` differentiates by contracting each input's cotangent with the design; over a
    batch that shares the weights, its values and gradients must equal those of ``logits + position_bias``."""
    config = _config(position_family=family, position_buckets=16, grid=grid, prefix_tokens=1 if grid else 0,
                     max_distance=23 if not grid else 2)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(3), 3)
    weights = jax.random.normal(k1, (2, config.num_position_buckets))
    logits = jax.random.normal(k2, (5, 2, n, n))
    probe = jax.random.normal(k3, (5, 2, n, n))
    design = attention_pde.position_design(config, n)
    np.testing.assert_allclose((np.asarray(weights) @ design.T).reshape(2, n, n),
                               np.asarray(attention_pde.position_bias(weights, config, n)), rtol=1e-6, atol=1e-6)

    def loss(add):
        return lambda logits, weights: jnp.sum(jnp.tanh(jax.vmap(add, (0, None))(logits, weights)) * probe)

    contracted = loss(lambda x, w: attention_pde.add_position_bias(x, w, config))
    plain = loss(lambda x, w: x + attention_pde.position_bias(w, config, n))
    np.testing.assert_allclose(contracted(logits, weights), plain(logits, weights), rtol=1e-6)
    got = jax.jit(jax.grad(contracted, (0, 1)))(logits, weights)
    want = jax.grad(plain, (0, 1))(logits, weights)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)
    assert np.abs(np.asarray(want[1])).max() > 1e-2  # the weights' gradient is not trivially zero


def test_long_inputs_fall_back_to_the_gather_and_none_adds_nothing(monkeypatch):
    config = _config()
    weights = jax.random.normal(jax.random.PRNGKey(0), (2, config.num_position_buckets))
    logits = jnp.zeros((2, 30, 30))
    monkeypatch.setattr(attention_pde, "_DESIGN_LIMIT", 30 * 30 * config.num_position_buckets - 1)
    grad = jax.grad(lambda w: jnp.sum(attention_pde.add_position_bias(logits, w, config) ** 2))(weights)
    want = jax.grad(lambda w: jnp.sum(attention_pde.position_bias(w, config, 30) ** 2))(weights)
    np.testing.assert_allclose(grad, want, rtol=1e-6)
    none = _config(position_family="none")
    assert attention_pde.position_design(none, 30) is None
    np.testing.assert_array_equal(attention_pde.add_position_bias(logits + 1.0, weights[:, :1], none), logits + 1.0)
