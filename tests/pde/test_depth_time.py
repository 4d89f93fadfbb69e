"""``SurrogateConfig.depth_time``: "smooth" blends the knots between blocks, "blockwise" holds block l's parameters
over the whole interval [l, l+1] and solves interval by interval."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde import attention_pde as pde
from pdeflow.pde.attention_pde import SurrogateConfig
from pdeflow.pde.solve import SolverConfig
from pdeflow.surrogate import token_laplacians

L = 3


def _setup(depth_time="blockwise", **kwargs):
    config = SurrogateConfig(num_layers=L, num_heads=2, model_dim=12, width=8, key_dim=4, value_rank=2, mlp_width=8,
                             num_knots=L, varying=("value", "residual"), depth_time=depth_time, **kwargs)
    params = pde.init_surrogate(jax.random.PRNGKey(0), config)
    # knots that differ from one another, so holding block l's parameters is not the same as blending them
    params = jax.tree_util.tree_map(
        lambda x: x + 0.3 * jax.random.normal(jax.random.PRNGKey(x.size), x.shape) if x.ndim and x.shape[0] == L
        else x, params)
    hidden0 = jax.random.normal(jax.random.PRNGKey(1), (2, 5, 12))
    mask = jnp.array([[True] * 5, [True] * 3 + [False] * 2])
    return config, params, hidden0, token_laplacians(np.asarray(mask), config), mask


def _rk4_step(f, y, h):  # Kutta's 3/8 rule, as `pdeflow.pde.solve.RK4`
    k1 = f(y)
    k2 = f(y + h * k1 / 3)
    k3 = f(y + h * (-k1 / 3 + k2))
    k4 = f(y + h * (k1 - k2 + k3))
    return y + h * (k1 + 3 * k2 + 3 * k3 + k4) / 8


def test_parameters_are_held_at_the_start_of_each_interval():
    config, params, *_ = _setup()
    smooth = dataclasses.replace(config, depth_time="smooth")
    for t, block in [(0.0, 0), (0.5, 0), (0.999, 0), (1.0, 1), (1.7, 1), (2.0, 2), (2.99, 2), (3.0, 2)]:
        held = pde.at_time(params, config, "kernel", jnp.float32(t))
        exact = pde.at_time(params, smooth, "kernel", jnp.float32(block))
        for a, b in zip(jax.tree_util.tree_leaves(held), jax.tree_util.tree_leaves(exact)):
            np.testing.assert_array_equal(a, b)
    mid = pde.at_time(params, smooth, "kernel", jnp.float32(0.5))["query"]
    assert not np.allclose(mid, pde.at_time(params, config, "kernel", jnp.float32(0.5))["query"])


def test_blockwise_rk4_solve_is_each_interval_solved_with_block_l_alone():
    """Every stage of every step of interval l, the one at t = l + 1 included, uses block l's parameters."""
    config, params, hidden0, laplacians, mask = _setup()
    solver = SolverConfig("rk4", adaptive=False, dt0=0.5, adjoint="stored")
    states, ok, steps = pde.trajectory(params, config, solver, hidden0, laplacians, mask)
    assert bool(ok) and int(steps) == 2 * L and states.shape == (L + 1, 2, 5, 8)
    u = pde.initial_state(params, hidden0)
    for block in range(L):
        f = lambda y, b=block: pde.batch_vector_field(config, jnp.float32(b), y, (params, laplacians, mask))  # noqa: E731
        u = _rk4_step(f, _rk4_step(f, u, 0.5), 0.5)
        np.testing.assert_allclose(states[block + 1], u, rtol=1e-5, atol=1e-6)
    smooth, *_ = pde.trajectory(params, dataclasses.replace(config, depth_time="smooth"), solver,
                                hidden0, laplacians, mask)
    assert np.abs(np.asarray(smooth[-1] - states[-1])).max() > 1e-3  # the two readings differ


@pytest.mark.parametrize("held_maps, splitting", [(False, "none"), (True, "none"), (True, "lie")])
def test_blockwise_gradients_agree_across_adjoints_and_with_finite_differences(held_maps, splitting):
    """Held maps are a function of u(l) and the kernel: the gradient reaches the kernel through them (a leaf of the
    solve's args) and u(l) through both the maps and the solve; split, through both phases of every interval."""
    config, params, hidden0, laplacians, mask = _setup(held_maps=held_maps, splitting=splitting)
    weights = jnp.arange(1, L + 1, dtype=jnp.float32)[:, None, None, None]

    def loss(params, hidden0, adjoint):
        solver = SolverConfig("rk4", adaptive=False, dt0=0.5, adjoint=adjoint)
        return jnp.sum(pde.trajectory(params, config, solver, hidden0, laplacians, mask)[0][1:] ** 2 * weights)

    grad = jax.jit(jax.grad(loss), static_argnums=2)
    reference = grad(params, hidden0, "stored")
    assert float(jnp.abs(reference["kernel"]["query"]).max()) > 0
    for adjoint in ("discrete", "recursive"):
        got = grad(params, hidden0, adjoint)
        for a, b in zip(jax.tree_util.tree_leaves(reference), jax.tree_util.tree_leaves(got)):
            np.testing.assert_allclose(b, a, rtol=2e-4, atol=1e-5 * (np.abs(np.asarray(a)).max() + 1e-6))
    # the discrete adjoint's directional derivative against float64 central differences
    direction = jax.tree_util.tree_map(lambda x: jax.random.normal(jax.random.PRNGKey(7), x.shape), params)
    analytic = sum(jnp.vdot(g, d) for g, d in zip(jax.tree_util.tree_leaves(grad(params, hidden0, "discrete")),
                                                  jax.tree_util.tree_leaves(direction)))
    with jax.enable_x64():
        to64 = functools.partial(jax.tree_util.tree_map, lambda x: jnp.asarray(x, jnp.float64))
        p64, d64, h64 = to64(params), to64(direction), to64(hidden0)
        value = jax.jit(lambda p: loss(p, h64, "stored"))
        h = 1e-5
        numeric = (value(jax.tree_util.tree_map(lambda p, d: p + h * d, p64, d64))
                   - value(jax.tree_util.tree_map(lambda p, d: p - h * d, p64, d64))) / (2 * h)
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-3)


@pytest.mark.parametrize("held_maps, splitting", [(False, "none"), (True, "none"), (True, "lie")])
def test_shooting_interval_from_a_free_running_state_ends_where_the_free_run_does(held_maps, splitting):
    # held: each interval's maps of its start; split: each interval in its two phases
    config, params, hidden0, laplacians, mask = _setup(held_maps=held_maps, splitting=splitting)
    solver = SolverConfig("rk4", adaptive=False, dt0=0.5, adjoint="stored")
    states, _, _ = pde.trajectory(params, config, solver, hidden0, laplacians, mask)
    # with the identity projection u = hidden · P, so feed the free run's states back through P's pseudo-inverse
    starts = states[:-1] @ jnp.linalg.pinv(params["projection"])
    ends, ok, _ = pde.interval_ends(params, config, solver, starts, laplacians, mask)
    assert bool(jnp.all(ok))
    np.testing.assert_allclose(ends, states[1:], rtol=1e-4, atol=1e-5)


def test_blockwise_saves_several_states_per_interval():
    config, params, hidden0, laplacians, mask = _setup()
    solver = SolverConfig("tsit5")
    coarse, ok, _ = pde.trajectory(params, config, solver, hidden0, laplacians, mask)
    fine, ok_fine, _ = pde.trajectory(params, config, solver, hidden0, laplacians, mask,
                                      np.linspace(0.0, L, 4 * L + 1, dtype=np.float32))
    assert bool(ok) and bool(ok_fine) and fine.shape[0] == 4 * L + 1
    np.testing.assert_allclose(fine[::4], coarse, rtol=2e-3, atol=2e-3)


def test_bad_depth_time_settings_say_what_to_fix():
    with pytest.raises(ValueError, match="unknown depth_time"):
        SurrogateConfig(depth_time="stepwise")
    with pytest.raises(ValueError, match="num_knots <= 6"):
        SurrogateConfig(num_layers=6, num_knots=12, depth_time="blockwise")
    config, params, hidden0, laplacians, mask = _setup()
    with pytest.raises(ValueError, match="same number in every unit interval"):
        pde.trajectory(params, config, SolverConfig(), hidden0, laplacians, mask, np.array([0.0, 0.5, 3.0]))


@pytest.mark.parametrize("offset", [0.0, 0.3, 0.999])
def test_interval_params_give_block_l_field_with_the_knots_contracted_once(offset):
    """`interval_params`: block l's parameters read once (one knot, basis weight 1) give the field of the
    parameters held at t = l anywhere in [l, l+1), for every term."""
    config, params, hidden0, laplacians, mask = _setup()
    u = pde.initial_state(params, hidden0)
    for block in range(L):
        local, local_config = pde.interval_params(params, config, jnp.int32(block))
        assert local_config.num_knots == 1 and dataclasses.replace(local_config, num_knots=L) == config
        for group in ("coefficients", "kernel", "value", "residual"):  # the knot groups and config.varying
            for leaf in jax.tree_util.tree_leaves(local[group]):
                assert leaf.shape[0] == 1
        assert local["projection"] is params["projection"]  # not varying: as stored
        t = jnp.float32(block + offset)
        np.testing.assert_allclose(pde.batch_vector_field(local_config, t, u, (local, laplacians, mask)),
                                   pde.batch_vector_field(config, jnp.float32(block), u, (params, laplacians, mask)),
                                   rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs depth_time='blockwise'"):
        pde.interval_params(params, dataclasses.replace(config, depth_time="smooth"), jnp.int32(0))
