"""The PDE's terms come from one registry: the built-in three reproduce the hand-written field bit for bit, and a
term registered in this file alone works through the config, the parameters, the coefficients, the vector field,
the solve and the ablations."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde import attention_pde, terms
from pdeflow.pde.attention_pde import TERMS, SurrogateConfig, coefficients, init_surrogate, vector_field
from pdeflow.pde.solve import SolverConfig
from pdeflow.surrogate import surrogate_forward, token_laplacians

CONFIG = SurrogateConfig(num_layers=3, num_heads=2, model_dim=8, width=5, key_dim=3, value_rank=2, mlp_width=6,
                         num_knots=3, max_distance=3)
SUBSETS = [TERMS, ("diffusion",), ("attention",), ("residual",), ("diffusion", "residual"),
           ("attention", "residual"), ("residual", "diffusion", "attention"), ()]


def _params(config=CONFIG, seed=0):
    params = init_surrogate(jax.random.PRNGKey(seed), config)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda x: x + 0.3 * rng.normal(size=x.shape).astype(x.dtype), params)


def _old_init(key, c):
    """`init_surrogate` as it was written before the registry (random projection branch)."""
    keys = jax.random.split(key, 6)
    K, H, r, k, v, m = c.num_knots, c.num_heads, c.width, c.key_dim, c.value_rank, c.mlp_width
    projection = jnp.linalg.qr(jax.random.normal(keys[0], (c.model_dim, c.model_dim)))[0][:, :r]
    normal = jax.random.normal
    params = {
        "projection": projection,
        "readout": {"kernel": projection.T, "bias": jnp.zeros((c.model_dim,))},
        "coefficients": jnp.tile(jnp.array([math.log(math.expm1(0.1)), 1.0, 0.1]), (K, 1)),
        "kernel": {"query": normal(keys[1], (K, H, r, k)) / math.sqrt(r), "query_bias": jnp.zeros((K, H, k)),
                   "key": normal(keys[2], (K, H, r, k)) / math.sqrt(r),
                   "position_bias": jnp.zeros((K, H, c.num_position_buckets))},
        "value": {"down": normal(keys[3], (H, r, v)) / math.sqrt(r), "up": jnp.zeros((H, v, r))},
        "residual": {"w1": normal(keys[4], (r, m)) / math.sqrt(r), "b1": jnp.zeros((m,)),
                     "w2": normal(keys[5], (m, r)) / math.sqrt(m), "b2": jnp.zeros((r,))},
    }
    for group in c.varying:
        params[group] = jax.tree_util.tree_map(lambda x: jnp.tile(x[None], (K,) + (1,) * x.ndim), params[group])
    return params


def _old_coefficients(params, config, t):
    raw = attention_pde.at_time(params, config, "coefficients", t)
    on = jnp.array([term in config.terms for term in TERMS], raw.dtype)
    return jnp.stack([jax.nn.softplus(raw[0]), raw[1], raw[2]]) * on


def _old_vector_field(config, t, u, args):
    """`vector_field` as it was written before the registry: the string branches."""
    params, laplacian, mask = args
    d_coef, alpha, beta = _old_coefficients(params, config, t)
    du = jnp.zeros_like(u)
    mm = lambda spec, *x: attention_pde._product(config, spec, *x)  # noqa: E731
    mixing = d_coef * laplacian if "diffusion" in config.terms else None
    if "attention" in config.terms:
        maps = attention_pde.attention_kernel(params, config, t, u, mask)
        mean_map = alpha * maps.mean(0)
        mixing = mean_map if mixing is None else mixing + mean_map
        value = attention_pde.at_time(params, config, "value", t)
        low_rank = mm("hij,hjv->hiv", maps, mm("nr,hrv->hnv", u, value["down"]))
        du = du + alpha * (mm("hiv,hvr->ir", low_rank, value["up"]) / config.num_heads - u)
    if mixing is not None:
        du = du + mm("ij,jr->ir", mixing, u)
    if "residual" in config.terms:
        p = attention_pde.at_time(params, config, "residual", t)
        hidden = jax.nn.gelu(mm("nr,rm->nm", attention_pde.normalise_state(u, config.residual_norm), p["w1"])
                             + p["b1"])
        du = du + beta * (mm("nm,mr->nr", hidden, p["w2"]) + p["b2"])
    return du * mask[:, None].astype(u.dtype)


def test_registry_lists_the_three_terms_with_their_symbols_and_labels():
    assert TERMS == terms.term_names() == ("diffusion", "attention", "residual")
    assert [t.symbol for t in terms.REGISTRY.values()] == ["D", "α", "β"]
    assert [t.coefficient_key for t in terms.REGISTRY.values()] == ["D", "alpha", "beta"]
    assert terms.ablation_key("attention") == "pde_without_attention"
    assert terms.ablation_labels() == {"pde_without_diffusion": "PDE, D = 0", "pde_without_attention": "PDE, α = 0",
                                       "pde_without_residual": "PDE, β = 0"}
    assert attention_pde.VARYING == attention_pde.varying_groups() == ("value", "residual")
    assert CONFIG.without("diffusion").ablations() == ("attention", "residual")
    with pytest.raises(ValueError, match="unknown PDE term 'convection'"):
        terms.ablation_label("convection")
    with pytest.raises(ValueError, match="unknown PDE term"):
        CONFIG.without("convection")


@pytest.mark.parametrize("varying", [(), ("value", "residual")])
def test_initial_parameters_are_the_hand_written_ones(varying):
    config = dataclasses.replace(CONFIG, varying=varying)
    new, old = init_surrogate(jax.random.PRNGKey(7), config), _old_init(jax.random.PRNGKey(7), config)
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(old)
    for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(old), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("subset", SUBSETS)
def test_coefficients_and_field_equal_the_positional_stack_and_string_branches(subset):
    config = dataclasses.replace(CONFIG, terms=subset)
    params = _params(config)
    mask = jnp.array([1, 1, 1, 1, 1, 0], bool)
    u = jax.random.normal(jax.random.PRNGKey(3), (6, CONFIG.width))
    lap = token_laplacians(mask[None])[0]
    for t in (0.0, 0.7, 2.5):
        t = jnp.float32(t)
        np.testing.assert_array_equal(coefficients(params, config, t), _old_coefficients(params, config, t))
        np.testing.assert_array_equal(vector_field(config, t, u, (params, lap, mask)),
                                      _old_vector_field(config, t, u, (params, lap, mask)))
    jitted = jax.jit(lambda t, u: vector_field(config, t, u, (params, lap, mask)))
    old = jax.jit(lambda t, u: _old_vector_field(config, t, u, (params, lap, mask)))
    np.testing.assert_array_equal(jitted(jnp.float32(1.3), u), old(jnp.float32(1.3), u))


def test_raw_coefficients_invert_the_positivity_map():
    for term in terms.REGISTRY.values():
        for value in (0.01, 0.1, 2.0):
            np.testing.assert_allclose(term.coefficient(jnp.float32(term.raw_coefficient(value))), value, rtol=1e-6)
    assert terms.DIFFUSION.raw_coefficient(0.1) == math.log(math.expm1(0.1))
    with pytest.raises(ValueError, match="positive"):
        terms.DIFFUSION.raw_coefficient(-1.0)


# --- a term defined here only: damping toward the mean of the real tokens, with a learned per-component rate ----

def _mean_field_parts(x: terms.TermInputs) -> terms.TermParts:
    m = x.mask.astype(x.u.dtype)
    averaging = jnp.broadcast_to(m[None, :] / m.sum(), (x.u.shape[0],) * 2)  # (N, N): every row the real mean
    rate = jnp.exp(attention_pde.at_time(x.params, x.config, "mean_field", x.t)["log_rate"])  # (r,)
    return terms.TermParts(mixing=averaging, pointwise=-x.u * rate)


def _mean_field_init(keys, config):
    return {"mean_field": {"log_rate": 0.1 * jax.random.normal(keys[0], (config.width,))}}


TOY = terms.Term("mean_field", "γ", "gamma", "mean field γ(t)", initial_value=0.5, positive=True,
                 parts=_mean_field_parts, mixes=True, init=_mean_field_init, num_keys=1, varying_groups=("mean_field",))


def test_a_term_registered_in_one_place_works_through_the_whole_surrogate():
    with terms.registered(TOY):
        assert terms.term_names() == TERMS + ("mean_field",)
        config = dataclasses.replace(CONFIG, terms=TERMS + ("mean_field",))
        params = init_surrogate(jax.random.PRNGKey(0), config)
        assert params["coefficients"].shape == (CONFIG.num_knots, 4)
        np.testing.assert_allclose(params["coefficients"][:, 3], math.log(math.expm1(0.5)), rtol=1e-6)
        assert params["mean_field"]["log_rate"].shape == (CONFIG.width,)
        # the built-in terms' initial values are untouched by the new term's key
        old = init_surrogate(jax.random.PRNGKey(0), CONFIG)
        for group in ("projection", "kernel", "value", "residual"):
            for a, b in zip(jax.tree_util.tree_leaves(params[group]), jax.tree_util.tree_leaves(old[group]),
                            strict=True):
                np.testing.assert_array_equal(a, b)
        params = jax.tree_util.tree_map(lambda x: x + 0.1, params)

        t = jnp.float32(0.8)
        gamma = coefficients(params, config, t)[3]
        assert gamma > 0 and coefficients(params, config.without("mean_field"), t)[3] == 0.0
        mask = jnp.array([1, 1, 1, 1, 0], bool)
        u = jax.random.normal(jax.random.PRNGKey(1), (5, CONFIG.width))
        args = (params, token_laplacians(mask[None])[0], mask)
        added = vector_field(config, t, u, args) - vector_field(config.without("mean_field"), t, u, args)
        mean = u[:4].mean(0)
        expected = gamma * (mean[None, :] - u * jnp.exp(params["mean_field"]["log_rate"])) * mask[:, None]
        np.testing.assert_allclose(added, expected, rtol=1e-5, atol=1e-5)
        assert config.ablations() == TERMS + ("mean_field",)
        assert terms.ablation_label("mean_field") == "PDE, γ = 0"

        # varying in t and through a solve
        varying = dataclasses.replace(config, varying=("mean_field",))
        p = init_surrogate(jax.random.PRNGKey(0), varying)
        assert p["mean_field"]["log_rate"].shape == (CONFIG.num_knots, CONFIG.width)
        hidden0 = jax.random.normal(jax.random.PRNGKey(2), (2, 5, CONFIG.model_dim))
        masks = jnp.stack([mask, jnp.ones(5, bool)])
        out = surrogate_forward(p, varying, SolverConfig("rk4", adaptive=False, dt0=0.5), hidden0,
                                token_laplacians(masks), masks)
        assert bool(out.ok) and np.all(np.isfinite(np.asarray(out.states)))
    assert terms.term_names() == TERMS
    with pytest.raises(ValueError, match="unknown PDE terms"):
        dataclasses.replace(CONFIG, terms=TERMS + ("mean_field",))


def test_registering_a_clashing_term_says_what_to_fix():
    with pytest.raises(ValueError, match="registered already"):
        terms.register_term(dataclasses.replace(TOY, name="attention"))
    with pytest.raises(ValueError, match="taken"):
        terms.register_term(dataclasses.replace(TOY, varying_groups=("residual",)))
    with pytest.raises(ValueError, match="initial_value must be > 0"):
        dataclasses.replace(TOY, initial_value=0.0)
    with pytest.raises(ValueError, match="no PDE term"):
        terms.unregister_term("mean_field")
    assert terms.term_names() == TERMS
