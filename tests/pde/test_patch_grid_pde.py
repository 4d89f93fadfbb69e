"""The attention-PDE on a 2-D patch grid with a class token (images)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.models.trace import Trace
from pdeflow.pde import SolverConfig, SurrogateConfig, coefficients, init_surrogate, vector_field
from pdeflow.pde.grid import patch_grid_laplacian
from pdeflow.surrogate import surrogate_forward, token_laplacians

CONFIG = SurrogateConfig(num_layers=2, num_heads=2, model_dim=6, width=5, key_dim=3, value_rank=2, mlp_width=6,
                         num_knots=2, max_distance=8, grid=(3, 3), prefix_tokens=1)


def _params(seed=0):
    params = init_surrogate(jax.random.PRNGKey(seed), CONFIG)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda x: x + 0.3 * rng.normal(size=x.shape).astype(x.dtype), params)


def test_token_laplacians_follow_the_config():
    mask = jnp.ones((2, 10), bool)
    laps = np.asarray(token_laplacians(mask, CONFIG))
    np.testing.assert_array_equal(laps[0], np.asarray(patch_grid_laplacian(3, 3, num_prefix_tokens=1)))
    np.testing.assert_array_equal(laps[:, 0], 0.0)  # the class token is excluded from diffusion
    with pytest.raises(ValueError, match="patch grid"):
        token_laplacians(jnp.ones((2, 9), bool), CONFIG)


def test_grid_diffusion_conserves_patch_mass_and_leaves_the_class_token():
    config = CONFIG.without("attention").without("residual")
    params = _params()
    mask = jnp.ones(10, bool)
    u = jax.random.normal(jax.random.PRNGKey(1), (10, CONFIG.width))
    du = np.asarray(vector_field(config, 0.4, u, (params, token_laplacians(mask[None], config)[0], mask)))
    d = float(coefficients(params, config, 0.4)[0])
    assert d > 0
    np.testing.assert_allclose(du[0], 0.0, atol=1e-7)
    np.testing.assert_allclose(du[1:].sum(0), 0.0, atol=1e-5)
    # the 4-neighbour stencil at the centre patch (grid (1, 1) = token 5): up 2, down 8, left 4, right 6
    np.testing.assert_allclose(du[5], d * (u[2] + u[8] + u[4] + u[6] - 4 * u[5]), rtol=1e-5, atol=1e-6)


def test_grid_surrogate_maps_are_row_stochastic_and_gradients_match_finite_differences():
    params = _params()
    rng = np.random.default_rng(0)
    hidden0 = jnp.asarray(rng.normal(size=(2, 10, CONFIG.model_dim)), jnp.float32)
    mask = jnp.ones((2, 10), bool)
    solver = SolverConfig(solver="rk4", adaptive=False, dt0=0.25)
    out = surrogate_forward(params, CONFIG, solver, hidden0, token_laplacians(mask, CONFIG), mask)
    assert bool(out.ok) and out.log_attention.shape == (2, 2, 2, 10, 10)
    np.testing.assert_allclose(np.exp(np.asarray(out.log_attention)).sum(-1), 1.0, rtol=1e-5)

    with jax.enable_x64():  # the stored adjoint (a scan) compiles quickly; its gradient is diffrax's (test_solve)
        solver64 = SolverConfig(solver="rk4", adaptive=False, dt0=0.25, adjoint="stored")
        p64 = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), params)
        h64, laps = hidden0.astype(jnp.float64), token_laplacians(mask, CONFIG).astype(jnp.float64)
        target = jnp.asarray(rng.dirichlet(np.ones(10), size=(2, 2, 2, 10)))

        @jax.jit
        def loss(bias):
            p = {**p64, "kernel": {**p64["kernel"], "position_bias": bias}}
            logp = surrogate_forward(p, CONFIG, solver64, h64, laps, mask).log_attention
            return -jnp.sum(target * logp)

        bias = p64["kernel"]["position_bias"]
        grad = jax.jit(jax.grad(loss))(bias)
        direction = jnp.asarray(rng.normal(size=bias.shape))
        eps = 1e-6
        numeric = (loss(bias + eps * direction) - loss(bias - eps * direction)) / (2 * eps)
        np.testing.assert_allclose(jnp.vdot(grad, direction), numeric, rtol=1e-6)

def test_fit_refuses_a_trace_that_does_not_match_the_grid():
    from pdeflow.fitting.fit import FitConfig, fit_surrogate

    rng = np.random.default_rng(0)
    attention = rng.dirichlet(np.ones(9), size=(2, 4, 2, 9)).astype(np.float32)
    trace = Trace(rng.normal(size=(3, 4, 9, 6)).astype(np.float32), attention, np.ones((4, 9), bool))
    with pytest.raises(ValueError, match="patch grid"):
        fit_surrogate(trace, trace, CONFIG, SolverConfig(), FitConfig(steps=1, batch_size=2))


def test_attention_entropy_along_depth_matches_the_maps_at_integer_times():
    from pdeflow.information import attention_entropy
    from pdeflow.information.depth import attention_entropy_along_depth
    from pdeflow.surrogate import predict_attention

    params = _params()
    rng = np.random.default_rng(3)
    hidden = rng.normal(size=(3, 5, 10, CONFIG.model_dim)).astype(np.float32)
    attention = rng.dirichlet(np.ones(10), size=(2, 5, 2, 10)).astype(np.float32)
    trace = Trace(hidden, attention, np.ones((5, 10), bool))
    solver = SolverConfig(solver="rk4", adaptive=False, dt0=0.125)
    t, entropy = attention_entropy_along_depth(params, CONFIG, solver, trace, points_per_layer=4, batch_size=2)
    assert t.shape == (9,) and entropy.shape == (9, 2)
    maps = predict_attention(params, CONFIG, solver, trace, batch_size=2)  # (L, B, H, N, N) at t = 0, 1
    at_blocks = np.asarray(attention_entropy(maps, trace.mask)).mean(axis=(1, 3))  # (L, H)
    np.testing.assert_allclose(entropy[[0, 4]], at_blocks, rtol=1e-4)
    assert np.all(entropy >= 0) and np.all(entropy <= np.log2(10) + 1e-5)
