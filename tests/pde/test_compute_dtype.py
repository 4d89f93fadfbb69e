"""The bfloat16 compute option: products in bfloat16 with float32 accumulation, everything else in float32."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde import SolverConfig, SurrogateConfig, attention_kernel, batch_vector_field, init_surrogate
from pdeflow.surrogate import surrogate_forward, token_laplacians

CONFIG = SurrogateConfig(num_layers=2, num_heads=2, model_dim=8, width=16, key_dim=4, value_rank=2, mlp_width=8,
                         num_knots=2, max_distance=3)
BF16 = dataclasses.replace(CONFIG, compute_dtype="bfloat16")


def _inputs(seed=0):
    params = init_surrogate(jax.random.PRNGKey(seed), CONFIG)
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(lambda x: x + 0.3 * rng.normal(size=x.shape).astype(x.dtype), params)
    mask = jnp.asarray(np.arange(10)[None, :] < np.array([[10], [7], [4]]))
    u = jnp.asarray(rng.normal(size=(3, 10, CONFIG.width)), jnp.float32)
    return params, mask, u


def test_bfloat16_products_are_really_taken_in_bfloat16_and_return_float32():
    params, mask, u = _inputs()
    field = lambda config: lambda u: batch_vector_field(config, 0.5, u, (params, token_laplacians(mask), mask))  # noqa
    jaxpr = str(jax.make_jaxpr(field(BF16))(u))
    assert "bf16" in jaxpr and "preferred_element_type=float32" in jaxpr
    assert "bf16" not in str(jax.make_jaxpr(field(CONFIG))(u))
    assert jax.eval_shape(field(BF16), u).dtype == jnp.float32


def test_bfloat16_field_and_maps_stay_within_bfloat16_rounding_of_float32():
    params, mask, u = _inputs()
    laps = token_laplacians(mask)
    field = jax.jit(lambda config, u: batch_vector_field(config, 0.5, u, (params, laps, mask)), static_argnums=0)
    f32, b16 = field(CONFIG, u), field(BF16, u)
    relative = float(jnp.linalg.norm(b16 - f32) / jnp.linalg.norm(f32))
    assert 1e-4 < relative < 2e-2, relative  # bfloat16 keeps 8 bits of mantissa: about 4e-3 per product
    kernel = jax.jit(lambda config: attention_kernel(params, config, 0.5, u[1], mask[1]), static_argnums=0)
    maps = kernel(BF16)
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)  # the softmax is still float32
    np.testing.assert_allclose(maps, kernel(CONFIG), atol=2e-2)


def test_bfloat16_gradient_and_solve_agree_with_float32():
    params, mask, u = _inputs(1)
    laps = token_laplacians(mask)

    @jax.jit
    def gradients(p):  # of a scalar read-out of one field evaluation, in each dtype
        value = lambda p, config: jnp.sum(jnp.sin(batch_vector_field(config, 0.5, u, (p, laps, mask))))  # noqa
        return jax.grad(value)(p, CONFIG), jax.grad(value)(p, BF16)

    flat32, flat16 = (jnp.concatenate([x.ravel() for x in jax.tree_util.tree_leaves(g)]) for g in gradients(params))
    cosine = float(flat32 @ flat16 / (jnp.linalg.norm(flat32) * jnp.linalg.norm(flat16)))
    assert 0.99 < cosine < 1.0 - 1e-7, cosine  # close, and not the float32 gradient itself
    solver = SolverConfig("heun", adaptive=False, dt0=0.5, adjoint="stored")
    hidden0 = jnp.asarray(np.random.default_rng(2).normal(size=(3, 10, CONFIG.model_dim)), jnp.float32)
    solve = jax.jit(lambda config: surrogate_forward(params, config, solver, hidden0, laps, mask), static_argnums=0)
    out32, out16 = solve(CONFIG), solve(BF16)
    assert bool(out16.ok) and out16.states.dtype == jnp.float32
    maps32, maps16 = jnp.exp(out32.log_attention), jnp.exp(out16.log_attention)
    real = mask[None, :, None, :, None] & mask[None, :, None, None, :]
    assert float(jnp.max(jnp.abs(jnp.where(real, maps16 - maps32, 0.0)))) < 3e-2


def test_unknown_compute_dtype_is_refused():
    with pytest.raises(ValueError, match="compute_dtype"):
        SurrogateConfig(compute_dtype="float16")

