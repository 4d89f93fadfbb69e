import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde.grid import chain_laplacian, patch_grid_laplacian

MASKS = [np.ones(7, bool), np.array([1, 1, 1, 1, 0, 0, 0], bool), np.array([1, 0, 0, 0, 0, 0, 0], bool)]
LAPLACIANS = [chain_laplacian(jnp.asarray(m)) for m in MASKS] + [
    patch_grid_laplacian(3, 4),
    patch_grid_laplacian(3, 3, num_prefix_tokens=1),
    patch_grid_laplacian(2, 3, mask=jnp.array([1, 1, 1, 1, 1, 0, 0], bool), num_prefix_tokens=1),
]


@pytest.mark.parametrize("lap", LAPLACIANS)
def test_symmetric_negative_semidefinite_and_mass_conserving(lap):
    lap = np.asarray(lap, np.float64)
    np.testing.assert_allclose(lap, lap.T)
    assert np.linalg.eigvalsh(lap).max() <= 1e-10
    np.testing.assert_allclose(lap.sum(0), 0.0, atol=1e-12)  # Σ_i (Δu)_i = 0 for every u
    u = np.random.default_rng(0).normal(size=(lap.shape[0], 3))
    np.testing.assert_allclose((lap @ u).sum(0), 0.0, atol=1e-10)
    constant = np.ones(lap.shape[0])
    np.testing.assert_allclose(lap @ constant, 0.0, atol=1e-12)  # Neumann: constants are steady


def test_chain_laplacian_stencil_and_padding():
    lap = np.asarray(chain_laplacian(jnp.array([1, 1, 1, 1, 0, 0], bool)))
    expected = np.zeros((6, 6))
    expected[:4, :4] = [[-1, 1, 0, 0], [1, -2, 1, 0], [0, 1, -2, 1], [0, 0, 1, -1]]
    np.testing.assert_array_equal(lap, expected)


def test_patch_grid_degrees_and_class_token():
    lap = np.asarray(patch_grid_laplacian(3, 3, num_prefix_tokens=1))
    np.testing.assert_array_equal(lap[0], 0.0)  # the class token takes no part in diffusion
    np.testing.assert_array_equal(lap[:, 0], 0.0)
    degrees = -np.diag(lap)[1:].reshape(3, 3)
    np.testing.assert_array_equal(degrees, [[2, 3, 2], [3, 4, 3], [2, 3, 2]])
    assert lap[1, 2] == 1 and lap[1, 4] == 1 and lap[3, 4] == 0  # right and down neighbours, no wrap-around


def test_grid_position_index_buckets_offsets_and_class_token():
    from pdeflow.pde.attention_pde import SurrogateConfig, position_index

    config = SurrogateConfig(num_layers=2, num_heads=2, model_dim=4, num_knots=2, max_distance=16, grid=(3, 4),
                             prefix_tokens=1)
    assert config.position_range == 3 and config.num_position_buckets == 7 * 7 + 3 and config.num_tokens == 13
    index = position_index(config, 13)
    assert index.shape == (13, 13) and index.min() >= 0 and index.max() == config.num_position_buckets - 1
    span = 7
    rows, cols = np.divmod(np.arange(12), 4)
    for i in range(12):
        for j in range(12):  # patch i = (row, column) in row-major order
            assert index[1 + i, 1 + j] == (rows[j] - rows[i] + 3) * span + (cols[j] - cols[i] + 3)
    # translation invariance on the grid: the same offset, the same bucket
    assert index[1 + 0, 1 + 5] == index[1 + 6, 1 + 11]
    assert set(index[0, 1:]) == {49} and set(index[1:, 0]) == {50} and index[0, 0] == 51
    with pytest.raises(ValueError, match="patch grid"):
        position_index(config, 12)


def test_grid_config_is_checked():
    from pdeflow.pde.attention_pde import SurrogateConfig

    with pytest.raises(ValueError, match="needs a patch grid"):
        SurrogateConfig(prefix_tokens=1)
    with pytest.raises(ValueError, match="grid must be"):
        SurrogateConfig(grid=(4,))
    assert SurrogateConfig(grid=[2, 3]).grid == (2, 3)  # lists from JSON become tuples
