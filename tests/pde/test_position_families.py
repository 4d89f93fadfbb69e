"""The attention-PDE's position-bias families: the same biases as the transformers' RPE, a causal mask, clear
errors for settings that do not fit, and a fit that recovers the family and decay of a known kernel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.fit import FitConfig, evaluate_losses, fit_surrogate
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
