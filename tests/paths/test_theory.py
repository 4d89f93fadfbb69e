"""The theory's predictor, action and head scores."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.paths import (
    FullOrderParameter,
    OrderParameter,
    PathAttentionNet,
    PathNetConfig,
    action,
    all_paths,
    attentioned_inputs,
    full_entropy,
    full_input_scale,
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


# --- the full form (the authors' hierarchy of matrices over head tuples) -----------------------------------------


def _random_spd(rng, side, scale=0.3):
    a = np.eye(side) + scale * rng.normal(size=(side, side))
    return a @ a.T + 0.1 * np.eye(side)


def _authors_entropy(levels, u_a, width):
    """The authors' ``compute_entropy_action`` at σ² = 1, equal widths, with a free ``U_a``, halved."""
    heads = levels[0].shape[0]
    total = width * (u_a - np.log(u_a))
    total += width * (np.trace(levels[0]) / u_a - np.linalg.slogdet(levels[0])[1] + heads * np.log(u_a))
    for above, current in zip(levels[:-1], levels[1:]):
        h = current.shape[0] // above.shape[0]
        unpacked = current.reshape(h, above.shape[0], h, above.shape[0])
        traced = np.einsum("hahb->ab", unpacked)
        total += width * (np.trace(np.linalg.solve(above, traced)) - np.linalg.slogdet(current)[1]
                          + h * np.linalg.slogdet(above)[1])
    return 0.5 * total


def test_full_entropy_is_the_authors_with_the_input_scale_at_its_saddle_point():
    rng = np.random.default_rng(0)
    levels = (_random_spd(rng, 3), _random_spd(rng, 9))  # L = 2, H = 3: U_2 (3, 3), U_1 (9, 9)
    u_a = float(full_input_scale(jnp.asarray(levels[0])))
    np.testing.assert_allclose(u_a ** 2 + 2 * u_a - np.trace(levels[0]), 0.0, atol=1e-4)  # β = H − 1, γ = Tr U_L
    np.testing.assert_allclose(full_entropy(tuple(map(jnp.asarray, levels)), 7), _authors_entropy(levels, u_a, 7),
                               rtol=1e-5)
    for shift in (0.9, 1.1):  # the closed form minimises the entropy over U_a
        assert _authors_entropy(levels, shift * u_a, 7) > _authors_entropy(levels, u_a, 7)
    gp = FullOrderParameter.gp_limit(2, 3)
    assert [u.shape for u in gp.levels] == [(3, 3), (9, 9)]
    np.testing.assert_allclose(gp.matrix(), jnp.eye(9) / 9)
    np.testing.assert_allclose(gp.input_scale, 1.0, rtol=1e-6)


def test_the_full_entropy_of_kronecker_shaped_levels_weighs_lower_layers_by_the_heads_above():
    rng = np.random.default_rng(1)
    heads = 2
    a1, a2 = _random_spd(rng, heads), _random_spd(rng, heads) + 2 * np.eye(heads)
    u_a = np.trace(a2) - heads + 1  # then U_a's closed form, from U_2 = U_a A_2, is U_a itself
    levels = (jnp.asarray(u_a * a2), jnp.asarray(u_a * np.kron(a1, a2)))
    np.testing.assert_allclose(full_input_scale(levels[0]), u_a, rtol=1e-5)

    def tr_logdet(a):
        return np.trace(a) - np.linalg.slogdet(a)[1]

    expected = 0.5 * 5 * (u_a - np.log(u_a) + heads * tr_logdet(a1) + tr_logdet(a2))  # layer 1 weighed by H
    np.testing.assert_allclose(full_entropy(levels, 5), expected, rtol=1e-5)
    np.testing.assert_allclose(FullOrderParameter(levels).matrix(),
                               OrderParameter(jnp.asarray(u_a), jnp.asarray(np.stack([a1, a2]))).matrix(), rtol=1e-5)


@pytest.mark.parametrize("form", ["kronecker", "full"])
def test_action_gradient_matches_finite_differences_in_float64(form):
    k32, y32 = _kernels()  # built in float32, used in float64
    with jax.enable_x64(True):
        k, y = jnp.asarray(np.asarray(k32), jnp.float64), jnp.asarray(np.asarray(y32), jnp.float64)
        rng = np.random.default_rng(0)
        if form == "full":
            order = FullOrderParameter((jnp.asarray(_random_spd(rng, 2)), jnp.asarray(_random_spd(rng, 4))))
            direction = FullOrderParameter(tuple(jnp.asarray(d + d.T) for d in (rng.normal(size=(2, 2)),
                                                                                rng.normal(size=(4, 4)))))
        else:
            order = OrderParameter(jnp.asarray(1.3), jnp.asarray(np.stack([_random_spd(rng, 2) for _ in range(2)])))
            d = rng.normal(size=(2, 2, 2))
            direction = OrderParameter(jnp.asarray(0.7), jnp.asarray(d + d.transpose(0, 2, 1)))
        f = lambda o: action(o, k, y, 10, 0.1)  # noqa: E731
        grad = jax.grad(f)(order)
        eps = 1e-5
        shifted = [jax.tree_util.tree_map(lambda o, d, s=s: o + s * eps * d, order, direction) for s in (1, -1)]
        numeric = (f(shifted[0]) - f(shifted[1])) / (2 * eps)
        analytic = sum(jnp.sum(g * d) for g, d in zip(jax.tree_util.tree_leaves(grad),
                                                       jax.tree_util.tree_leaves(direction)))
        assert f(order).dtype == jnp.float64
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_both_forms_reach_the_gp_limit_at_large_width_and_the_full_one_moves_away_when_narrow():
    k, y = _kernels()
    gp = OrderParameter.gp_limit(2, 2).matrix()
    for form in ("kronecker", "full"):
        wide, _ = minimise_action(k, y, 2, 2, width=100000, temperature=0.1, steps=200, order_parameter=form)
        np.testing.assert_allclose(wide.matrix(), gp, atol=2e-3 / 4)
        assert abs(float(wide.input_scale) - 1.0) < 2e-3
    narrow, history = minimise_action(k, y, 2, 2, width=1, temperature=0.01, steps=300, learning_rate=0.02,
                                      order_parameter="full")
    assert isinstance(narrow, FullOrderParameter) and [u.shape for u in narrow.levels] == [(2, 2), (4, 4)]
    assert history[-1] < history[0]
    assert float(jnp.max(jnp.abs(narrow.matrix() - gp))) > 0.05 / 4


def test_with_one_head_per_layer_both_forms_give_the_same_predictor():
    k, y = _kernels(layers=2, heads=1)  # a single path: U is a scalar in both forms
    found = {form: minimise_action(k, y, 2, 1, width=2, temperature=0.05, steps=1500, learning_rate=0.02,
                                   order_parameter=form) for form in ("kronecker", "full")}
    (kron, kron_history), (full, full_history) = found["kronecker"], found["full"]
    assert float(full.matrix()[0, 0]) > 1.2  # away from the GP limit (U = 1), so the agreement means something
    np.testing.assert_allclose(full.matrix(), kron.matrix(), rtol=2e-3)
    np.testing.assert_allclose(full_history[-1], kron_history[-1], rtol=1e-4)  # the same minimum of the same action
    kernel = k[0, 0]
    means = [gp_predict(u[0, 0] * kernel, u[0, 0] * kernel, jnp.diag(u[0, 0] * kernel), y, 0.05)[0]
             for u in (kron.matrix(), full.matrix())]
    np.testing.assert_allclose(means[0], means[1], rtol=1e-3, atol=1e-4)


def test_the_full_form_is_refused_above_max_full_paths_and_bad_forms_are_named():
    k, y = _kernels()
    with pytest.raises(ValueError, match="kronecker"):
        minimise_action(k, y, 2, 2, width=1, temperature=0.1, order_parameter="full", max_full_paths=3)
    with pytest.raises(ValueError, match="order_parameter"):
        minimise_action(k, y, 2, 2, width=1, temperature=0.1, order_parameter="dense")
    with pytest.raises(ValueError, match="kronecker"):  # MiniLM: 12⁶ paths, refused before anything is built
        minimise_action(jnp.zeros((1, 1, 1, 1)), y, 6, 12, width=1, temperature=0.1, order_parameter="full")


def test_head_scores_normalised_by_the_maximum_are_the_authors_compute_heads_score():
    rng = np.random.default_rng(3)
    heads, paths = 3, all_paths(2, 3)
    u = rng.normal(size=(9, 9))
    u = u + u.T
    unfolded = np.abs(u).reshape(heads, heads, heads, heads)  # (h1, h2, h1', h2'), as unfold_order_parameter
    expected = np.zeros((2, heads))
    for layer in range(2):
        for head in range(heads):
            score_1 = np.take(unfolded, head, axis=layer).sum()
            score_2 = np.take(unfolded, head, axis=2 + layer).sum()
            diagonal = np.take(np.take(unfolded, head, axis=layer), head, axis=1 + layer).sum()
            expected[layer, head] = score_1 + score_2 - diagonal
    np.testing.assert_allclose(head_scores(jnp.asarray(u), paths, heads, normalisation="max"),
                               expected / expected.max(), rtol=1e-5)
    # the largest head's score is 1 exactly (on the AMD EPYC family 25 host this input gave 1 − 1 ulp when XLA
    # divided by the maximum as a product with its reciprocal)
    rng = np.random.default_rng(0)
    off_by_an_ulp = jnp.asarray(rng.normal(size=(16, 16)), jnp.float32)
    assert float(jnp.max(head_scores(off_by_an_ulp, rng.integers(0, 4, size=(16, 2)), 4, normalisation="max"))) == 1.0
    np.testing.assert_allclose(head_scores(jnp.asarray(u), paths, heads),
                               expected / expected.sum(1, keepdims=True), rtol=1e-5)
    with pytest.raises(ValueError, match="normalisation"):
        head_scores(jnp.asarray(u), paths, heads, normalisation="sum")
