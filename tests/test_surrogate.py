"""Multiple shooting (`pdeflow.fitting.losses.shooting_losses`, `attention_pde.interval_ends`): the intervals solved
from the states of a free-running solve are that solve, piece by piece."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.fitting.losses import per_input_attention_kl, shooting_losses
from pdeflow.pde import SolverConfig, attention_pde
from pdeflow.surrogate import surrogate_forward, token_laplacians
from tests.tiny_teacher import SURROGATE, tiny_traces

# full width, so that the free solve's states can stand in for the transformer's (an identity projection)
CONFIG = dataclasses.replace(SURROGATE, width=SURROGATE.model_dim, varying=("value", "residual"))
SOLVER = SolverConfig("rk4", adaptive=False, dt0=0.25, adjoint="stored")


@pytest.fixture(scope="module")
def setup():
    train, _, _ = tiny_traces()
    batch = jax.tree_util.tree_map(jnp.asarray, train.take(slice(0, 8)))
    params = attention_pde.init_surrogate(jax.random.PRNGKey(3), CONFIG, batch.hidden[0][batch.mask])
    params["projection"] = jnp.eye(CONFIG.width)  # u = h: the solve's states are hidden states
    # make the knots differ, so that an interval solved at the wrong depth-time would show
    params["kernel"]["query"] = params["kernel"]["query"] * jnp.array([1.0, -2.0])[:, None, None, None]
    params["coefficients"] = params["coefficients"].at[1].add(0.5)
    return params, batch, token_laplacians(batch.mask, CONFIG)


def free_states(params, batch, laplacians):
    states, ok, _ = attention_pde.trajectory(params, CONFIG, SOLVER, batch.hidden[0], laplacians, batch.mask)
    assert bool(ok)
    return states  # (L+1, B, N, r)


def test_intervals_started_on_a_free_solve_end_on_it(setup):
    params, batch, laplacians = setup
    states = free_states(params, batch, laplacians)
    ends, ok, steps = attention_pde.interval_ends(params, CONFIG, SOLVER, states[:-1], laplacians, batch.mask)
    assert ends.shape == states[1:].shape and bool(jnp.all(ok)) and np.all(np.asarray(steps) == 4)
    np.testing.assert_allclose(ends, states[1:], atol=2e-5)
    # solved at the wrong depth-time (every interval from t = 0) they do not
    field = lambda s, u, args: attention_pde.batch_vector_field(CONFIG, s, u, args)  # noqa: E731
    from pdeflow.pde.solve import solve
    wrong, _, _ = solve(field, states[1], (params, laplacians, batch.mask), 1.0, np.array([0.0, 1.0], np.float32),
                        SOLVER)
    assert float(jnp.abs(wrong[-1] - states[2]).max()) > 1e-3


def test_shooting_from_a_free_solve_has_no_continuity_error_and_its_kl(setup):
    params, batch, laplacians = setup
    states = free_states(params, batch, laplacians)
    on_solve = batch._replace(hidden=states)
    kl, continuity, ok, steps = shooting_losses(params, CONFIG, SOLVER, on_solve, laplacians)
    assert kl.shape == continuity.shape == (8,) and bool(ok)
    np.testing.assert_allclose(continuity, 0.0, atol=1e-9)
    # every map is the free solve's: the teacher-forced ones at t = l (L blocks) and the interval ends at t = l + 1
    # (blocks 1..L-1)
    maps = surrogate_forward(params, CONFIG, SOLVER, batch.hidden[0], laplacians, batch.mask).log_attention
    L = CONFIG.num_layers
    every, later = (per_input_attention_kl(batch.attention[s], maps[s], batch.mask) for s in (slice(0, L),
                                                                                              slice(1, L)))
    np.testing.assert_allclose(kl, (L * every + (L - 1) * later) / (2 * L - 1), rtol=1e-4)
    # on the transformer's states the intervals do not join up
    _, real_continuity, _, _ = shooting_losses(params, CONFIG, SOLVER, batch, laplacians)
    assert float(real_continuity.min()) > 1e-3


def test_shooting_gradient_reaches_the_dynamics_and_matches_finite_differences(setup):
    params, batch, laplacians = setup

    def loss(p):
        kl, continuity, _, _ = shooting_losses(p, CONFIG, SOLVER, batch, laplacians)
        return kl.mean() + continuity.mean()

    grads = jax.grad(loss)(params)
    assert float(jnp.abs(grads["residual"]["w2"]).max()) > 0 and float(jnp.abs(grads["value"]["up"]).max()) > 0
    direction = jax.tree_util.tree_map(lambda g: g / (jnp.linalg.norm(g) + 1e-12), grads["coefficients"])
    eps = 1e-2
    shifted = lambda s: loss({**params, "coefficients": params["coefficients"] + s * direction})  # noqa: E731
    numeric = (shifted(eps) - shifted(-eps)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(grads["coefficients"], direction), numeric, rtol=2e-2)


def test_held_out_predictions_read_the_transformer_only_at_the_input(setup):
    """The free-running surrogate sees hidden[0] alone: zeroing every later state changes nothing."""
    from pdeflow.surrogate import predict_attention

    params, batch, _ = setup
    zeroed = batch._replace(hidden=batch.hidden.at[1:].set(0.0))
    np.testing.assert_array_equal(predict_attention(params, CONFIG, SOLVER, batch, 8),
                                  predict_attention(params, CONFIG, SOLVER, zeroed, 8))
    changed = batch._replace(hidden=batch.hidden.at[0].multiply(1.5))  # and the input does count
    assert not np.allclose(predict_attention(params, CONFIG, SOLVER, changed, 8),
                           predict_attention(params, CONFIG, SOLVER, batch, 8))


def test_cosine_gap_is_one_minus_the_held_out_cosine_and_ignores_padding(setup):
    from pdeflow import metrics
    from pdeflow.fitting.losses import per_input_cosine_gap
    params, batch, laplacians = setup
    out = surrogate_forward(params, CONFIG, SOLVER, batch.hidden[0], laplacians, batch.mask)
    gap = per_input_cosine_gap(batch.attention, out.log_attention, batch.mask)
    cosine = metrics.attention_fidelity(batch.attention, np.exp(out.log_attention), batch.mask)["cosine"]  # (L, B, H)
    np.testing.assert_allclose(gap, 1.0 - cosine.mean((0, 2)), rtol=1e-4, atol=1e-6)
    assert float(gap.min()) > 1e-4  # a surrogate at its random start: the maps differ
    np.testing.assert_allclose(per_input_cosine_gap(batch.attention, jnp.log(batch.attention), batch.mask), 0.0,
                               atol=1e-6)  # the transformer's own maps
    # extra padding (a padded key column with mass in the prediction, a padded query row) changes nothing

    def pad(x, value):
        return jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(0, 1), (0, 1)], constant_values=value)

    padded = per_input_cosine_gap(pad(batch.attention, 0.5), pad(out.log_attention, 0.0),
                                  jnp.pad(batch.mask, [(0, 0), (0, 1)]))
    np.testing.assert_allclose(padded, gap, rtol=1e-6)
    weights = jnp.arange(1.0, CONFIG.num_layers + 1.0)
    per_block = 1.0 - cosine.mean(2)  # (L, B)
    np.testing.assert_allclose(per_input_cosine_gap(batch.attention, out.log_attention, batch.mask, weights),
                               (np.asarray(weights)[:, None] * per_block).sum(0) / float(weights.sum()), rtol=1e-4)


def test_depth_weights_rise_with_depth_and_average_one():
    from pdeflow.fitting.losses import depth_weights
    w = depth_weights(6, 2.0)
    np.testing.assert_allclose(w, np.array([1.0, 1.4, 1.8, 2.2, 2.6, 3.0]) / 2.0, rtol=1e-6)
    np.testing.assert_allclose(depth_weights(6, 0.0), np.ones(6))
    np.testing.assert_allclose(depth_weights(1, 5.0), np.ones(1))


def test_block_weights_weigh_each_blocks_kl(setup):
    params, batch, laplacians = setup
    out = surrogate_forward(params, CONFIG, SOLVER, batch.hidden[0], laplacians, batch.mask)
    L = CONFIG.num_layers
    per_block = np.stack([per_input_attention_kl(batch.attention[l:l + 1], out.log_attention[l:l + 1], batch.mask)
                          for l in range(L)])  # (L, B)
    plain = per_input_attention_kl(batch.attention, out.log_attention, batch.mask)
    np.testing.assert_allclose(plain, per_block.mean(0), rtol=1e-5)
    np.testing.assert_allclose(per_input_attention_kl(batch.attention, out.log_attention, batch.mask, jnp.ones(L)),
                               plain, rtol=1e-6)
    weights = jnp.arange(1.0, L + 1.0)
    weighted = per_input_attention_kl(batch.attention, out.log_attention, batch.mask, weights)
    np.testing.assert_allclose(weighted, (np.asarray(weights)[:, None] * per_block).sum(0) / float(weights.sum()),
                               rtol=1e-5)
    assert not np.allclose(weighted, plain, rtol=1e-3)  # the blocks' KL differ, so the weighting shows
