"""Path decomposition: exact for the network's output; its Gaussian-process kernel equals the layer
recursion and the network's covariance over random value weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.paths import decomposition
from pdeflow.paths.network import PathAttentionNet, PathNetConfig, readout_weights


def _net(readout="last", layers=2, heads=3):
    config = PathNetConfig(input_dim=5, width=7, num_layers=layers, num_heads=heads, key_dim=4, readout=readout)
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 4, 5))
    params = PathAttentionNet(config).init(jax.random.PRNGKey(1), x)
    return config, params, x


def test_all_paths_enumerates_one_head_per_layer():
    paths = decomposition.all_paths(2, 3)
    assert paths.shape == (9, 2) and paths[:4].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0]]
    assert len({tuple(p) for p in decomposition.all_paths(3, 2)}) == 8


@pytest.mark.parametrize("readout, layers", [("last", 2), ("mean", 2), ("last", 1), ("mean", 3)])
def test_the_sum_over_paths_is_the_networks_output(readout, layers):
    config, params, x = _net(readout, layers)
    f, attention = PathAttentionNet(config).apply(params, x)
    assert attention.shape == (layers, 6, 3, 4, 4)
    np.testing.assert_allclose(attention.sum(-1), 1.0, rtol=1e-5)
    paths = decomposition.all_paths(layers, 3)
    xi = decomposition.attentioned_inputs(x, attention, readout_weights(4, readout), paths)  # (B, P, D)
    c = decomposition.path_coefficients(params, config, paths)  # (P, D)
    np.testing.assert_allclose(jnp.einsum("bpd,pd->b", xi, c), f, rtol=2e-4, atol=1e-5)


def test_k_of_the_gp_order_parameter_is_the_gp_kernel_of_the_layer_recursion():
    config, params, x = _net(layers=3, heads=2)
    _, attention = PathAttentionNet(config).apply(params, x)
    r = readout_weights(4, "last")
    xi = decomposition.attentioned_inputs(x, attention, r, decomposition.all_paths(3, 2))
    kernels = decomposition.path_kernels(xi, xi)
    assert kernels.shape == (8, 8, 6, 6)
    k_of_u = decomposition.total_kernel(decomposition.gp_order_parameter(3, 2), kernels)
    np.testing.assert_allclose(k_of_u, decomposition.gp_kernel(x, attention, x, attention, r), rtol=1e-4, atol=1e-6)
    # U = I sums the diagonal path kernels; an off-diagonal U mixes paths (and differs)
    assert not np.allclose(decomposition.total_kernel(jnp.ones((8, 8)) / 64, kernels), k_of_u)


def test_the_gp_kernel_is_the_covariance_of_the_output_over_random_value_weights():
    config, params, x = _net(layers=2, heads=2)
    _, attention = PathAttentionNet(config).apply(params, x)
    expected = decomposition.gp_kernel(x, attention, x, attention, readout_weights(4, "last"))

    def output(key):  # same attention weights, fresh value weights
        fresh = PathAttentionNet(config).init(key, x)["params"]
        mixed = {k: (params["params"][k] if k.startswith(("query", "key")) else v) for k, v in fresh.items()}
        return PathAttentionNet(config).apply({"params": mixed}, x)[0]

    outputs = jax.lax.map(output, jax.random.split(jax.random.PRNGKey(7), 20000), batch_size=1000)  # (S, B)
    empirical = outputs.T @ outputs / outputs.shape[0]
    scale = float(jnp.max(jnp.abs(expected)))
    np.testing.assert_allclose(empirical, expected, atol=0.08 * scale)
