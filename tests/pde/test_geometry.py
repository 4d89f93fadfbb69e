"""Token geometries: their Laplacians are graph Laplacians of the real tokens, their position indices are
clipped relative offsets, and the config's grid fields map to them and back."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.models import relative_position as rpe
from pdeflow.pde.attention_pde import SurrogateConfig, position_index, relative_positions
from pdeflow.pde.geometry import ChainGeometry, PatchGridGeometry, TokenGeometry, geometry_fields, geometry_of
from pdeflow.pde.grid import chain_laplacian, patch_grid_laplacian
from pdeflow.surrogate import token_laplacians

CASES = [  # (geometry, masks (B, N))
    (ChainGeometry(), np.array([[1] * 7, [1] * 4 + [0] * 3, [1] + [0] * 6], bool)),
    (ChainGeometry(causal=True), np.ones((1, 3), bool)),
    (PatchGridGeometry(3, 4), np.ones((1, 12), bool)),
    (PatchGridGeometry(3, 3, prefix_tokens=1), np.array([[1] * 10, [1] * 6 + [0] * 4], bool)),
    (PatchGridGeometry(1, 5, prefix_tokens=2), np.ones((1, 7), bool)),
]


@pytest.mark.parametrize("geometry, masks", CASES)
def test_laplacians_are_symmetric_with_zero_row_sums_and_no_padding_edges(geometry, masks):
    assert isinstance(geometry, TokenGeometry)
    laps = np.asarray(geometry.laplacians(jnp.asarray(masks)), np.float64)
    assert laps.shape == masks.shape + masks.shape[-1:]
    for lap, mask in zip(laps, masks, strict=True):
        np.testing.assert_array_equal(lap, lap.T)
        np.testing.assert_array_equal(lap.sum(-1), 0.0)
        assert np.linalg.eigvalsh(lap).max() <= 1e-10
        assert np.all(lap[~mask] == 0) and np.all(lap[:, ~mask] == 0)
        np.testing.assert_array_equal(lap, np.asarray(geometry.laplacian(jnp.asarray(mask))))


def test_the_geometries_use_the_grid_laplacians():
    mask = jnp.array([1, 1, 1, 0], bool)
    np.testing.assert_array_equal(ChainGeometry().laplacian(mask), chain_laplacian(mask))
    grid = PatchGridGeometry(2, 3, prefix_tokens=1)
    mask = jnp.array([1, 1, 1, 1, 1, 0, 0], bool)
    np.testing.assert_array_equal(grid.laplacian(mask), patch_grid_laplacian(2, 3, mask, 1))


@pytest.mark.parametrize("geometry, masks", CASES)
def test_position_index_is_in_range_and_translation_invariant(geometry, masks):
    n, r = masks.shape[-1], 2
    index = geometry.position_index(n, r)
    assert index.shape == (n, n) and index.dtype == np.int64
    assert index.min() >= 0 and index.max() < geometry.num_position_buckets(r)
    if isinstance(geometry, ChainGeometry):
        i, j = np.indices((n, n))
        np.testing.assert_array_equal(index, np.clip(j - i, -r, r) + r)
        assert geometry.num_position_buckets(r) == 2 * r + 1 and geometry.position_range(r) == r


def test_grid_position_index_equals_the_row_and_column_table():
    grid, r = PatchGridGeometry(3, 4, prefix_tokens=1), 16
    assert grid.position_range(r) == 3 and grid.num_position_buckets(r) == 7 * 7 + 3
    index = grid.position_index(13, r)
    rows, cols = np.divmod(np.arange(12), 4)
    d_row = np.clip(rows[None, :] - rows[:, None], -3, 3) + 3
    d_col = np.clip(cols[None, :] - cols[:, None], -3, 3) + 3
    np.testing.assert_array_equal(index[1:, 1:], d_row * 7 + d_col)
    assert set(index[0, 1:]) == {49} and set(index[1:, 0]) == {50} and index[0, 0] == 51


def test_token_counts():
    assert ChainGeometry().num_tokens is None
    ChainGeometry().check_token_count(123)
    grid = PatchGridGeometry(2, 3, prefix_tokens=1)
    assert grid.num_tokens == 7
    grid.check_token_count(7)
    with pytest.raises(ValueError, match="2x3 patch grid after 1 prefix tokens has 7"):
        grid.check_token_count(6, "the test inputs")
    with pytest.raises(ValueError, match="patch grid"):
        grid.laplacians(jnp.ones((2, 6), bool))
    with pytest.raises(ValueError, match="height, width >= 1"):
        PatchGridGeometry(0, 3)


def test_causal_chain_allows_earlier_keys_only():
    assert ChainGeometry().allowed_keys(4) is None and PatchGridGeometry(2, 2).allowed_keys(4) is None
    np.testing.assert_array_equal(ChainGeometry(causal=True).allowed_keys(4), np.tril(np.ones((4, 4), bool)))


def test_config_fields_map_to_geometries_and_back():
    base = SurrogateConfig(num_layers=2, num_heads=2, model_dim=4, num_knots=2, max_distance=16)
    assert base.geometry == ChainGeometry()
    assert dataclasses.replace(base, causal=True).geometry == ChainGeometry(causal=True)
    vit = base.with_geometry(PatchGridGeometry(3, 4, prefix_tokens=1))
    assert (vit.grid, vit.prefix_tokens, vit.causal) == ((3, 4), 1, False)
    assert vit.geometry == PatchGridGeometry(3, 4, 1)
    assert vit.num_tokens == 13 and vit.position_range == 3 and vit.num_position_buckets == 52
    assert vit.with_geometry(ChainGeometry()) == base
    for geometry in (ChainGeometry(), ChainGeometry(True), PatchGridGeometry(2, 5, 3)):
        assert geometry_of(**geometry_fields(geometry)) == geometry
    np.testing.assert_array_equal(position_index(vit, 13), vit.geometry.position_index(13, 16))
    mask = jnp.ones((2, 13), bool)
    np.testing.assert_array_equal(token_laplacians(mask, vit), vit.geometry.laplacians(mask))
    np.testing.assert_array_equal(token_laplacians(mask[:, :5]), ChainGeometry().laplacians(mask[:, :5]))
    with pytest.raises(ValueError, match="causal"):
        dataclasses.replace(vit, causal=True)
    with pytest.raises(ValueError, match="needs a patch grid"):
        geometry_of((), prefix_tokens=1)


def test_relative_offsets_are_clipped_antisymmetric_and_shared_with_the_rpe_families():
    positions = np.array([0, 1, 2, 5, 9])
    offsets = rpe.relative_offsets(positions)
    np.testing.assert_array_equal(offsets, positions[None, :] - positions[:, None])
    np.testing.assert_array_equal(offsets, -offsets.T)
    np.testing.assert_array_equal(rpe.relative_offsets(positions, 3), np.clip(offsets, -3, 3))
    n = 9
    i, j = np.indices((n, n))
    np.testing.assert_array_equal(rpe.distances(n), np.abs(i - j))
    np.testing.assert_array_equal(rpe.distances(n, 4), np.minimum(np.abs(i - j), 4))
    np.testing.assert_array_equal(relative_positions(n, 3), np.clip(j - i, -3, 3) + 3)
    weights = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5)), jnp.float32)
    np.testing.assert_array_equal(rpe.relative_bias("table", weights, n, max_distance=4),
                                  weights[:, np.minimum(np.abs(i - j), 4)])
