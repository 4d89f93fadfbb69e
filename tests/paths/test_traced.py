"""Path-kernel alignment and head scores of traced maps: the path that carries the label is found, by full
enumeration and by beam search."""

import jax
import jax.numpy as jnp
import numpy as np

from pdeflow.paths import all_paths
from pdeflow.paths.traced import path_alignment, top_paths, traced_head_scores


def _carrier_maps(batch=60, tokens=5, dim=6, layers=3, heads=3, seed=0):
    """Head 0 of every layer is the identity map (token 0 keeps its own state); the other heads average all
    tokens. Token 0 carries the label in its first coordinate; everything else is noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, batch)
    x = rng.normal(size=(batch, tokens, dim))
    x[:, 0, 0] = 4.0 * (2 * labels - 1)
    maps = np.full((layers, batch, heads, tokens, tokens), 1.0 / tokens)
    maps[:, :, 0] = np.eye(tokens)
    return jnp.asarray(x, jnp.float32), jnp.asarray(maps, jnp.float32), labels


def test_the_path_that_keeps_the_label_token_aligns_best():
    x, maps, labels = _carrier_maps()
    readout = jnp.zeros(5).at[0].set(1.0)
    paths = all_paths(3, 3)
    alignment = path_alignment(x, maps, readout, labels, paths, chunk=7)  # chunks that do not divide 27
    assert alignment.shape == (27,) and np.all((alignment >= 0) & (alignment <= 1 + 1e-6))
    assert tuple(paths[np.argmax(alignment)]) == (0, 0, 0) and alignment.max() > 0.5
    best, scores = top_paths(x, maps, readout, labels, k=5)
    assert tuple(best[0]) == (0, 0, 0) and np.all(np.diff(scores) <= 0)
    beam, beam_scores = top_paths(x, maps, readout, labels, k=5, beam=4, max_paths=8)  # forces the beam search
    assert tuple(beam[0]) == (0, 0, 0)
    np.testing.assert_allclose(beam_scores[0], scores[0], rtol=1e-5)
    head = traced_head_scores(best, scores, 3)
    np.testing.assert_allclose(head.sum(1), 1.0)
    assert np.all(np.argmax(head, 1) == 0)


def test_multiclass_labels_use_one_hot_targets():
    x, maps, _ = _carrier_maps()
    labels = np.asarray(jax.random.randint(jax.random.PRNGKey(0), (60,), 0, 4))
    alignment = path_alignment(x, maps, jnp.zeros(5).at[0].set(1.0), labels, all_paths(3, 3))
    assert np.all(np.isfinite(alignment)) and alignment.max() < 0.5  # random labels: nothing aligns well
