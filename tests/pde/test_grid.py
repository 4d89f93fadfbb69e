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
