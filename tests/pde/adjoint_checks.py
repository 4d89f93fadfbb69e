"""Checks that the discrete adjoints' tests share (`test_fixed_step`, `test_adaptive_step`): the attention-PDE
surrogate's trajectory, and its multiple-shooting intervals under `vmap`, differentiated with one adjoint against a
reference adjoint."""

import jax
import jax.numpy as jnp
import numpy as np

from pdeflow.pde import SolverConfig, SurrogateConfig, init_surrogate
from pdeflow.pde.attention_pde import interval_ends, trajectory
from pdeflow.surrogate import token_laplacians

CHAIN = SurrogateConfig(num_layers=2, num_heads=2, model_dim=6, width=5, key_dim=3, value_rank=2, mlp_width=6,
                        num_knots=2, max_distance=8)
GRID = SurrogateConfig(num_layers=2, num_heads=2, model_dim=6, width=5, key_dim=3, value_rank=2, mlp_width=6,
                       num_knots=2, max_distance=8, grid=(3, 3), prefix_tokens=1)


def assert_trajectory_gradients_agree(config: SurrogateConfig, n: int, lengths, solver: SolverConfig,
                                      reference: SolverConfig, states_tol: float = 1e-5) -> None:
    """Every term on two inputs of ``lengths`` real tokens out of ``n``: the same states and step count, and the
    gradient w.r.t. every parameter within 2e-5 of its scale (float32), with ``solver`` and ``reference``."""
    params = init_surrogate(jax.random.PRNGKey(0), config)
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: x + 0.2 * rng.normal(size=x.shape).astype(x.dtype), params)
    mask = jnp.asarray(np.arange(n)[None, :] < np.array(lengths)[:, None])
    hidden0 = jnp.asarray(rng.normal(size=(2, n, config.model_dim)), jnp.float32) * mask[..., None]
    laplacians = token_laplacians(mask, config)
    target = jnp.asarray(rng.normal(size=(config.num_layers + 1, 2, n, config.width)), jnp.float32)

    def loss(params, solver):  # the trajectory alone (the maps read out of it are plain autodiff after the solve)
        states, ok, steps = trajectory(params, config, solver, hidden0, laplacians, mask)
        return jnp.sum(target * jnp.tanh(states)), (states, steps)

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (value, (states, steps)), grads = grad(params, solver)
    (value_r, (states_r, steps_r)), grads_r = grad(params, reference)
    assert int(steps) == int(steps_r)
    np.testing.assert_allclose(states, states_r, rtol=states_tol, atol=states_tol)
    np.testing.assert_allclose(value, value_r, rtol=states_tol)
    for (path, g), g_r in zip(jax.tree_util.tree_flatten_with_path(grads)[0], jax.tree.leaves(grads_r)):
        scale = float(jnp.abs(g_r).max()) + 1e-6
        np.testing.assert_allclose(g / scale, g_r / scale, atol=2e-5, err_msg=jax.tree_util.keystr(path))


def assert_shooting_gradients_agree(config: SurrogateConfig, solver: SolverConfig, reference: SolverConfig) -> None:
    """`interval_ends` solves every unit interval at once (vmap of the solve): the same ends and gradients."""
    params = init_surrogate(jax.random.PRNGKey(1), config)
    rng = np.random.default_rng(1)
    mask = jnp.ones((2, 5), bool)
    starts = jnp.asarray(rng.normal(size=(2, 2, 5, config.model_dim)), jnp.float32)
    laplacians = token_laplacians(mask)

    def loss(params, solver):
        ends, ok, _ = interval_ends(params, config, solver, starts, laplacians, mask)
        return jnp.sum(jnp.tanh(ends)), ok

    (value, ok), grads = jax.value_and_grad(loss, has_aux=True)(params, solver)
    (value_r, _), grads_r = jax.value_and_grad(loss, has_aux=True)(params, reference)
    assert bool(jnp.all(ok))
    np.testing.assert_allclose(value, value_r, rtol=1e-5)
    for g, g_r in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_r)):
        np.testing.assert_allclose(g, g_r, rtol=1e-4, atol=1e-5)


def assert_directional_derivative(loss, x, direction, rtol: float, eps: float = 1e-6) -> None:
    """``⟨∇loss(x), direction⟩`` against the central difference of ``loss`` along ``direction`` (float64)."""
    numeric = (loss(x + eps * direction) - loss(x - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(jax.grad(loss)(x), direction), numeric, rtol=rtol)
