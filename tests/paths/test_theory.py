"""The theory's predictor, action and head scores."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.paths import (
    OrderParameter,
    PathAttentionNet,
    PathNetConfig,
    action,
    all_paths,
    attentioned_inputs,
    gp_predict,
    head_scores,
    kronecker_order_parameter,
    minimise_action,
    path_kernels,
)
from pdeflow.paths.network import readout_weights


def _kernels(samples=12, layers=2, heads=2):
    config = PathNetConfig(input_dim=6, width=8, num_layers=layers, num_heads=heads, key_dim=3)
    x = jax.random.normal(jax.random.PRNGKey(0), (samples, 5, 6))
    params = PathAttentionNet(config).init(jax.random.PRNGKey(1), x)
    _, attention = PathAttentionNet(config).apply(params, x)
    xi = attentioned_inputs(x, attention, readout_weights(5, "last"), all_paths(layers, heads))
    targets = jnp.sign(jax.random.normal(jax.random.PRNGKey(2), (samples,)))
    return path_kernels(xi, xi), targets


def test_the_predictor_interpolates_at_low_temperature_and_its_variance_is_non_negative():
    k, y = _kernels()
    kernel = jnp.einsum("ppab->ab", k)
    mean, variance = gp_predict(kernel, kernel, jnp.diag(kernel), y, 1e-4)
    np.testing.assert_allclose(mean, y, atol=0.05)
    assert np.all(np.asarray(variance) > -1e-4)
    with pytest.raises(ValueError, match="temperature"):
        gp_predict(kernel, kernel, jnp.diag(kernel), y, 0.0)


def test_kronecker_order_parameter_at_the_identity_is_the_gp_limit():
    layers = jnp.broadcast_to(jnp.eye(3), (2, 3, 3))
    np.testing.assert_allclose(kronecker_order_parameter(layers), jnp.eye(9) / 9)
    np.testing.assert_allclose(OrderParameter.gp_limit(2, 3).matrix(), jnp.eye(9) / 9)
    a, b = jnp.asarray([[2.0, 0.5], [0.5, 1.0]]), jnp.asarray([[1.0, -0.2], [-0.2, 3.0]])
    np.testing.assert_allclose(OrderParameter(jnp.asarray(2.0), jnp.stack([a, b])).matrix(),
                               2.0 * jnp.kron(a, b) / 4, rtol=1e-6)


def test_action_gradient_matches_finite_differences():
    k, y = _kernels()
    rng = np.random.default_rng(0)
    layers = jnp.asarray(np.eye(2) + 0.1 * rng.normal(size=(2, 2, 2)))
    order = OrderParameter(jnp.asarray(1.3), jnp.einsum("lij,lkj->lik", layers, layers))  # positive definite
    f = lambda o: action(o, k, y, 10, 0.1)  # noqa: E731
    grad = jax.grad(f)(order)
    direction = jnp.asarray(rng.normal(size=layers.shape))
    direction = OrderParameter(jnp.asarray(0.7), direction + direction.transpose(0, 2, 1))
    eps = 1e-3
    shifted = [jax.tree_util.tree_map(lambda o, d, s=s: o + s * eps * d, order, direction) for s in (1, -1)]
    numeric = (f(shifted[0]) - f(shifted[1])) / (2 * eps)
    analytic = sum(jnp.sum(g * d) for g, d in zip(grad, direction))
    np.testing.assert_allclose(analytic, numeric, rtol=2e-2)


def test_wide_networks_stay_at_the_gp_limit_and_narrow_ones_move_away():
    k, y = _kernels()
    wide, history = minimise_action(k, y, 2, 2, width=100000, temperature=0.1, steps=200)
    np.testing.assert_allclose(wide.layers, jnp.broadcast_to(jnp.eye(2), (2, 2, 2)), atol=2e-3)
    assert abs(float(wide.input_scale) - 1.0) < 2e-3
    narrow, history = minimise_action(k, y, 2, 2, width=1, temperature=0.01, steps=300, learning_rate=0.02)
    assert history[-1] < history[0]  # the action went down from the GP start
    assert float(jnp.max(jnp.abs(narrow.layers - jnp.eye(2)))) > 0.05
    with pytest.raises(ValueError, match="paths"):
        minimise_action(k, y, 3, 2, width=1, temperature=0.1)


def test_head_scores_follow_the_paths_that_carry_the_order_parameter():
    paths = all_paths(2, 3)
    u = jnp.diag(jnp.asarray([1.0 if p[0] == 2 else 0.01 for p in paths]))  # paths through layer 0's head 2
    scores = head_scores(u, paths, 3)
    assert scores.shape == (2, 3)
    np.testing.assert_allclose(scores.sum(1), 1.0, rtol=1e-6)
    assert int(jnp.argmax(scores[0])) == 2 and float(scores[0, 2]) > 0.9
    np.testing.assert_allclose(scores[1], 1 / 3, atol=1e-6)  # layer 1: no preference
