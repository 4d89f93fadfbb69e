"""Finite networks: the output from fixed maps, posterior sampling against the closed-form predictor, and
head pruning."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.paths.decomposition import all_paths, attentioned_inputs, path_kernels, total_kernel
from pdeflow.paths.network import PathAttentionNet, PathNetConfig, readout_weights, with_bilinear_head
from pdeflow.paths.theory import OrderParameter, gp_predict
from pdeflow.paths.training import SamplerConfig, output_from_maps, prune_heads, sample_networks, value_parameters
from pdeflow.tasks import MarkovChainTask, switch_detector


def _net(width=6, heads=3, layers=2, samples=8):
    config = PathNetConfig(input_dim=5, width=width, num_layers=layers, num_heads=heads, key_dim=4)
    x = jax.random.normal(jax.random.PRNGKey(0), (samples, 4, 5))
    params = PathAttentionNet(config).init(jax.random.PRNGKey(1), x)
    return config, params, x


def test_output_from_maps_is_the_networks_output():
    config, params, x = _net()
    f, maps = PathAttentionNet(config).apply(params, x)
    np.testing.assert_allclose(output_from_maps(value_parameters(params, config), maps, x, config), f, rtol=1e-5,
                               atol=1e-6)


def test_pruning_nothing_changes_nothing_and_pruning_a_head_renormalises_the_rest():
    config, params, x = _net()
    _, maps = PathAttentionNet(config).apply(params, x)
    values = value_parameters(params, config)
    unchanged = prune_heads(values, np.ones((2, 3), bool), config)
    for k in values:
        np.testing.assert_array_equal(unchanged[k], values[k])
    # removing head 1 of a one-layer net equals the net built from heads 0 and 2 alone (1/√2 normalisation)
    one = dataclasses.replace(config, num_layers=1)
    values_1 = {k: v for k, v in values.items() if k != "value_1"}
    pruned = output_from_maps(prune_heads(values_1, np.array([[True, False, True]]), one), maps[:1], x, one)
    reference = output_from_maps(dict(values_1, value_0=values["value_0"][jnp.asarray([0, 2])]),
                                 maps[:1, :, jnp.asarray([0, 2])], x, dataclasses.replace(one, num_heads=2))
    np.testing.assert_allclose(pruned, reference, rtol=1e-5, atol=1e-6)
    assert not np.allclose(pruned, output_from_maps(values_1, maps[:1], x, one))
    with pytest.raises(ValueError, match="at least one head"):
        prune_heads(values, np.array([[False] * 3, [True] * 3]), config)
    with pytest.raises(ValueError, match="shape"):
        prune_heads(values, np.ones((3, 3), bool), config)


@pytest.mark.slow
def test_sampled_wide_networks_predict_like_the_gaussian_process():
    config, params, x = _net(width=64, heads=2, layers=1, samples=24)
    x_test = jax.random.normal(jax.random.PRNGKey(5), (16, 4, 5))
    _, maps = PathAttentionNet(config).apply(params, x)
    _, maps_test = PathAttentionNet(config).apply(params, x_test)
    y = jnp.sign(x[:, -1, 0])
    sampler = SamplerConfig(temperature=0.5, steps=6000, burn_in=1000, thin=5, step_size=2e-3)
    out = sample_networks(config, sampler, maps, x, y, maps_test, x_test)
    paths = all_paths(1, 2)
    r = readout_weights(4, "last")
    xi, xi_test = (attentioned_inputs(a, m, r, paths) for a, m in ((x, maps), (x_test, maps_test)))
    u = OrderParameter.gp_limit(1, 2).matrix()
    k_diag = jnp.einsum("pq,mpd,mqd->m", u, xi_test, xi_test) / 5
    mean, _ = gp_predict(total_kernel(u, path_kernels(xi, xi)), total_kernel(u, path_kernels(xi_test, xi)), k_diag,
                         y, 0.5)
    assert float(jnp.corrcoef(out["test"], mean)[0, 1]) > 0.9
    np.testing.assert_allclose(out["test"], mean, atol=0.25)
    # without noise the same loop is gradient descent: the training loss falls
    descent = sample_networks(config, dataclasses.replace(sampler, noise=False, steps=300, burn_in=299), maps, x, y,
                              maps_test, x_test)
    assert descent["potential"][-1] < descent["potential"][0]


def test_the_switch_detector_attends_back_on_stays_and_to_the_beginning_on_switches():
    task = MarkovChainTask(length=12, dim=40, noise=0.3)
    x, _, states = task.sample(20, seed=0)
    config = PathNetConfig(input_dim=task.token_dim, width=4, num_layers=1, num_heads=2, key_dim=task.token_dim)
    params = with_bilinear_head(PathAttentionNet(config).init(jax.random.PRNGKey(0), jnp.asarray(x)), config, 0, 0,
                                switch_detector(task))
    _, maps = PathAttentionNet(config).apply(params, jnp.asarray(x))
    head = np.asarray(maps[0, :, 0])  # (B, T+1, T+1); token i + 1 shows state i
    stays = states[:, 1:] == states[:, :-1]
    for b in range(20):
        for i in range(1, task.length):
            s = i + 1
            if stays[b, i - 1]:
                assert head[b, s, s - 1] > 0.9
            else:
                assert head[b, s, 0] > 0.9
    np.testing.assert_allclose(head.sum(-1), 1.0, rtol=1e-5)
