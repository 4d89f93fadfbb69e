import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.fitting.losses import surrogate_losses
from pdeflow.models.trace import Trace
from pdeflow.pde import (
    SolverConfig,
    SurrogateConfig,
    attention_kernel,
    attention_pde,
    batch_vector_field,
    chain_laplacian,
    coefficients,
    init_surrogate,
    vector_field,
)
from pdeflow.surrogate import surrogate_forward, token_laplacians

CONFIG = SurrogateConfig(num_layers=3, num_heads=2, model_dim=8, width=5, key_dim=3, value_rank=2, mlp_width=6,
                         num_knots=3, max_distance=3)


def _params(config=CONFIG, seed=0, scale=1.0):
    params = init_surrogate(jax.random.PRNGKey(seed), config)
    rng = np.random.default_rng(seed)
    # move every parameter off its (often zero) initial value so that every path is exercised
    return jax.tree_util.tree_map(lambda x: x + scale * 0.3 * rng.normal(size=x.shape).astype(x.dtype), params)


def test_attention_rows_sum_to_one_and_ignore_padding():
    params = _params()
    mask = jnp.array([1, 1, 1, 1, 0, 0], bool)
    u = jax.random.normal(jax.random.PRNGKey(1), (6, CONFIG.width))
    maps = attention_kernel(params, CONFIG, 1.3, u, mask)
    assert maps.shape == (CONFIG.num_heads, 6, 6)
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(maps[..., 4:], 0.0)
    changed = u.at[4:].set(100.0)  # padded states cannot change real rows
    np.testing.assert_allclose(attention_kernel(params, CONFIG, 1.3, changed, mask)[:, :4], maps[:, :4], atol=1e-6)


def test_vector_field_shapes_under_jit_and_vmap_and_padding_stays_still():
    params = _params()
    batch, n = 4, 6
    mask = jnp.array([[1] * 6, [1] * 4 + [0] * 2, [1] * 2 + [0] * 4, [1] * 5 + [0]], bool)
    u = jax.random.normal(jax.random.PRNGKey(2), (batch, n, CONFIG.width))
    laps = token_laplacians(mask)
    out = jax.jit(lambda t, u: batch_vector_field(CONFIG, t, u, (params, laps, mask)))(0.5, u)
    assert out.shape == (batch, n, CONFIG.width)
    np.testing.assert_array_equal(np.asarray(out)[~np.asarray(mask)], 0.0)
    single = jax.vmap(lambda ui, li, mi: vector_field(CONFIG, 0.5, ui, (params, li, mi)))(u, laps, mask)
    np.testing.assert_allclose(out, single, rtol=1e-5, atol=1e-6)


def test_pure_diffusion_field_is_d_times_laplacian():
    config = CONFIG.without("attention").without("residual")
    params = _params()
    mask = jnp.array([1, 1, 1, 1, 1, 0], bool)
    u = jax.random.normal(jax.random.PRNGKey(3), (6, CONFIG.width))
    d = coefficients(params, config, 0.7)[0]
    np.testing.assert_allclose(vector_field(config, 0.7, u, (params, chain_laplacian(mask), mask)),
                               d * (chain_laplacian(mask) @ u), rtol=1e-5, atol=1e-6)


def test_ablation_switches_a_coefficient_off_and_diffusion_stays_non_negative():
    params = _params(scale=5.0)
    for t in np.linspace(0, 3, 7):
        d, alpha, beta = np.asarray(coefficients(params, CONFIG, t))
        assert d >= 0
        assert coefficients(params, CONFIG.without("attention"), t)[1] == 0.0
        assert coefficients(params, CONFIG.without("residual"), t)[2] == 0.0
    with pytest.raises(ValueError, match="unknown PDE terms"):
        dataclasses.replace(CONFIG, terms=("attention", "convection"))
    with pytest.raises(ValueError, match="num_knots"):
        dataclasses.replace(CONFIG, num_knots=4)


def _random_trace(config, batch=2, n=6, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.array([[1] * n, [1] * (n - 2) + [0] * 2], bool)[:batch]
    logits = rng.normal(size=(config.num_layers, batch, config.num_heads, n, n))
    logits = np.where(mask[None, :, None, None, :], logits, -np.inf)
    attention = np.exp(logits - logits.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    hidden = rng.normal(size=(config.num_layers + 1, batch, n, config.model_dim))
    return Trace(jnp.asarray(hidden), jnp.asarray(attention), jnp.asarray(mask))


FINE = SolverConfig("tsit5", adaptive=False, dt0=0.05)


# Finite differences of an adaptive solve are noisy (the step sequence jumps with the parameters), so the
# adaptive solver's gradient is checked against finite differences of a fine fixed-step solve: the gradient
# of the ODE itself. A fixed-step solver's gradient is checked against finite differences of itself.
@pytest.mark.parametrize("solver, reference", [(SolverConfig("heun", adaptive=False, dt0=0.5), None),
                                               (SolverConfig(rtol=1e-8, atol=1e-8), FINE)])
def test_loss_gradient_matches_finite_differences(solver, reference):
    with jax.enable_x64(True):
        config = CONFIG
        params = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float64), _params(config))
        trace = _random_trace(config)
        laps = token_laplacians(trace.mask).astype(jnp.float64)

        @functools.partial(jax.jit, static_argnums=1)
        def loss(p, solver):
            kl, hidden_error, _ = surrogate_losses(p, config, solver, trace, laps)
            return kl.mean() + 0.1 * hidden_error.mean()

        grads = jax.jit(jax.grad(loss), static_argnums=1)(params, solver)
        rng = np.random.default_rng(5)
        direction = jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)
        analytic = sum(float(jnp.vdot(g, v)) for g, v in zip(jax.tree_util.tree_leaves(grads),
                                                              jax.tree_util.tree_leaves(direction), strict=True))
        eps = 1e-5
        shift = lambda s: jax.tree_util.tree_map(lambda x, v: x + s * eps * v, params, direction)  # noqa: E731
        fd_solver = reference or solver
        numeric = (float(loss(shift(1.0), fd_solver)) - float(loss(shift(-1.0), fd_solver))) / (2 * eps)
        assert abs(analytic) > 1e-3
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5)


def test_forward_saves_every_block_and_maps_are_normalised():
    params = _params()
    trace = _random_trace(CONFIG)
    out = surrogate_forward(params, CONFIG, SolverConfig(), trace.hidden[0], token_laplacians(trace.mask),
                            trace.mask)
    assert out.states.shape == (CONFIG.num_layers + 1, 2, 6, CONFIG.width)
    assert out.log_attention.shape == (CONFIG.num_layers, 2, CONFIG.num_heads, 6, 6)
    assert bool(out.ok) and int(out.finite_times) == CONFIG.num_layers + 1
    np.testing.assert_allclose(jnp.exp(out.log_attention).sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out.states[0], trace.hidden[0] @ params["projection"], rtol=1e-5)


def test_a_state_wider_than_the_model_gets_a_full_projection():
    params = init_surrogate(jax.random.PRNGKey(0), dataclasses.replace(CONFIG, width=16))  # wider than d = 8
    assert params["projection"].shape == (8, 16) and params["readout"]["kernel"].shape == (16, 8)
    np.testing.assert_allclose(params["projection"] @ params["projection"].T, np.eye(8), atol=1e-5)


@pytest.mark.parametrize("compute_dtype", ["float32", "bfloat16"])
def test_value_path_product_is_every_heads_maps_times_its_token_major_values(compute_dtype):
    """``o_h = A_h·z_h`` from token-major values ``(N, H, v)``, one input or a batch, and its gradient: the plain
    einsum's (the values are laid out head-major inside, which must not change what is computed)."""
    config = SurrogateConfig(num_layers=2, num_heads=3, model_dim=8, width=8, key_dim=2, value_rank=2,
                             compute_dtype=compute_dtype)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    maps = jax.nn.softmax(jax.random.normal(keys[0], (4, 3, 5, 5)), axis=-1)  # (B, H, N, N)
    down = jax.random.normal(keys[1], (4, 5, 3, 2))  # (B, N, H, v)
    low = lambda x: x.astype(compute_dtype).astype(jnp.float32)  # noqa: E731
    expected = jnp.einsum("bhij,bjhv->bhiv", low(maps), low(down))
    tol = 1e-6 if compute_dtype == "float32" else 1e-5  # bfloat16 operands, float32 accumulation
    np.testing.assert_allclose(attention_pde.value_path_product(config, maps, down), expected, atol=tol)
    np.testing.assert_allclose(attention_pde.value_path_product(config, maps[1], down[1]), expected[1], atol=tol)
    batched = jax.vmap(lambda m, d: attention_pde.value_path_product(config, m, d))(maps, down)
    np.testing.assert_allclose(batched, expected, atol=tol)
    if compute_dtype == "float32":
        probe = jax.random.normal(jax.random.PRNGKey(4), expected.shape)
        grads = jax.grad(lambda m, d: jnp.sum(probe * attention_pde.value_path_product(config, m, d)), (0, 1))(
            maps, down)
        reference = jax.grad(lambda m, d: jnp.sum(probe * jnp.einsum("bhij,bjhv->bhiv", m, d)), (0, 1))(maps, down)
        for got, want in zip(grads, reference):
            np.testing.assert_allclose(got, want, atol=1e-6)
