"""``SurrogateConfig.held_maps``: the attention term of interval [l, l+1] mixes with the kernel's maps on u(l),
computed once at the interval's start and held while the state moves (as block l's attention reads its input once)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde import attention_pde as pde
from pdeflow.pde.attention_pde import SurrogateConfig
from pdeflow.pde.solve import SolverConfig
from pdeflow.surrogate import surrogate_forward
from tests.pde.test_depth_time import L, _rk4_step
from tests.pde.test_depth_time import _setup as blockwise_setup

RK4 = SolverConfig("rk4", adaptive=False, dt0=0.5, adjoint="stored")


def _setup(**kwargs):
    """`test_depth_time`'s blockwise surrogate (knots that differ) with held maps, on states twice as large, so that
    the maps move visibly within an interval."""
    config, params, hidden0, laplacians, mask = blockwise_setup(held_maps=True, **kwargs)
    return config, params, 2.0 * hidden0, laplacians, mask


def _maps(params, config, block, u, mask):
    return jax.vmap(lambda ui, mi: pde.attention_kernel(params, config, jnp.float32(block), ui, mi))(u, mask)


def test_every_stage_of_interval_l_mixes_with_the_maps_of_u_l():
    config, params, hidden0, laplacians, mask = _setup()
    states, ok, steps = pde.trajectory(params, config, RK4, hidden0, laplacians, mask)
    assert bool(ok) and int(steps) == 2 * L
    u = pde.initial_state(params, hidden0)
    for block in range(L):
        maps = _maps(params, config, block, u, mask)  # (B, H, N, N), fixed over the interval
        np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-6)  # row-stochastic over the real keys
        f = lambda y, b=block, m=maps: pde.batch_vector_field(config, jnp.float32(b), y,  # noqa: E731
                                                              (params, laplacians, mask, m))
        u = _rk4_step(f, _rk4_step(f, u, 0.5), 0.5)
        np.testing.assert_allclose(states[block + 1], u, rtol=1e-5, atol=1e-6)
    live, *_ = pde.trajectory(params, dataclasses.replace(config, held_maps=False), RK4, hidden0, laplacians, mask)
    assert np.abs(np.asarray(live[-1] - states[-1])).max() > 1e-2  # the maps do move within an interval


def test_with_attention_alone_each_interval_is_the_matrix_exponential_of_its_held_maps():
    """With the diffusion and residual terms off and no value correction, interval l is the linear ODE
    du/dt = α_l (Ā_l − I) u with Ā_l the head-mean of the maps of u(l): u(l+1) = exp(α_l (Ā_l − I)) u(l), and a
    state equal on every real token stays put (rows of Ā_l − I sum to zero)."""
    config, params, hidden0, laplacians, mask = _setup(terms=("attention",))
    params["value"]["up"] = jnp.zeros_like(params["value"]["up"])
    fine = SolverConfig("rk4", adaptive=False, dt0=1 / 16, adjoint="stored")
    states, ok, _ = pde.trajectory(params, config, fine, hidden0, laplacians, mask)
    assert bool(ok)
    u = pde.initial_state(params, hidden0)
    for block in range(L):
        alpha = pde.coefficients(params, config, jnp.float32(block))[list(pde.terms.REGISTRY).index("attention")]
        mean_map = _maps(params, config, block, u, mask).mean(1)  # (B, N, N)
        generator = alpha * (mean_map - jnp.eye(mean_map.shape[-1]))
        u = jnp.einsum("bij,bjr->bir", jax.vmap(jax.scipy.linalg.expm)(generator), u)
        real = np.asarray(mask)
        np.testing.assert_allclose(np.asarray(states[block + 1])[real], np.asarray(u)[real], rtol=1e-4, atol=1e-5)
    constant = jnp.broadcast_to(jax.random.normal(jax.random.PRNGKey(5), (1, 1, 12)), (1, 5, 12))
    still, *_ = pde.trajectory(params, config, fine, constant, laplacians[:1], mask[:1])
    np.testing.assert_allclose(still[-1], still[0], rtol=1e-4, atol=1e-5)


def test_padded_tokens_stay_still():
    config, params, hidden0, laplacians, mask = _setup()
    states, *_ = pde.trajectory(params, config, RK4, hidden0, laplacians, mask)
    np.testing.assert_array_equal(states[:, 1, 3:], states[:1, 1, 3:].repeat(L + 1, 0))


def test_the_ablation_without_attention_needs_no_maps():
    config, params, hidden0, laplacians, mask = _setup()
    without = config.without("attention")
    states, ok, _ = pde.trajectory(params, without, RK4, hidden0, laplacians, mask)
    live, *_ = pde.trajectory(params, dataclasses.replace(without, held_maps=False), RK4, hidden0, laplacians, mask)
    assert bool(ok)
    np.testing.assert_array_equal(states, live)


def test_bad_held_map_settings_say_what_to_fix():
    with pytest.raises(ValueError, match="depth_time='blockwise' and field_backward='autodiff'"):
        SurrogateConfig(held_maps=True)
    with pytest.raises(ValueError, match="got 'blockwise', 'custom'"):
        SurrogateConfig(held_maps=True, depth_time="blockwise", field_backward="custom")


def test_the_held_maps_are_the_maps_compared_with_the_blocks():
    """The solve's held log maps (computed once per interval, for the solve and for the comparison with block l)
    equal the kernel's log maps at t = l on the saved states, as read without held maps."""
    config, params, hidden0, laplacians, mask = _setup()
    states, log_maps, ok, _ = pde.trajectory_and_held_log_maps(params, config, RK4, hidden0, laplacians, mask)
    assert bool(ok) and log_maps.shape == (L, 2, config.num_heads, 5, 5)
    read = jax.vmap(lambda s, m: pde.attention_log_maps(params, config, s, m), in_axes=(1, 0), out_axes=1)(states,
                                                                                                          mask)
    real = np.asarray(mask)[None, :, None, :, None] & np.asarray(mask)[None, :, None, None, :]
    np.testing.assert_allclose(np.where(real, log_maps, 0.0), np.where(real, read, 0.0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(surrogate_forward(params, config, RK4, hidden0, laplacians, mask).log_attention,
                               log_maps)
    unheld = dataclasses.replace(config, held_maps=False)
    assert pde.trajectory_and_held_log_maps(params, unheld, RK4, hidden0, laplacians, mask)[1] is None


def test_shooting_intervals_take_the_maps_their_caller_has():
    """`interval_ends` given the kernel's log maps at t = l on its starts solves as when it computes them."""
    config, params, hidden0, laplacians, mask = _setup()
    starts = jnp.stack([hidden0, 0.5 * hidden0, -hidden0])  # (T, B, N, d)
    log_maps = jnp.stack([pde.interval_log_maps(params, config, jnp.int32(l), pde.initial_state(params, s), mask)
                          for l, s in enumerate(starts)])
    given, ok, _ = pde.interval_ends(params, config, RK4, starts, laplacians, mask, log_maps)
    computed, *_ = pde.interval_ends(params, config, RK4, starts, laplacians, mask)
    assert bool(jnp.all(ok))
    np.testing.assert_allclose(given, computed, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(jnp.exp(log_maps).sum(-1)[:, 1, :, :3] > 0.999, True)  # row-stochastic real rows
