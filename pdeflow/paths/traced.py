"""Attention paths of any traced transformer: which paths' kernels align with the labels, and the head scores
that follow.

A traced model's attention maps ``(L, B, H, N, N)`` and its embeddings ``hidden[0] (B, N, d)`` define the
same attentioned inputs ``ξ_π`` as the theory's network (the readout ``r`` picks a token, e.g. the class
token). A real transformer has residual streams and MLPs, so its output is not a sum over these paths; the
path kernels ``K^{ππ} = Ξ_π Ξ_πᵀ / d`` still say which routes through the heads carry label information.
Each path is scored by its kernel–target alignment

    A_π = Σ_c y_cᵀ K^{ππ} y_c / (‖K^{ππ}‖_F ‖Y‖²_F)        (Y: one-hot or ±1 labels, centred)

computed without forming the ``B × B`` kernel (``yᵀ K y = |Ξ_πᵀ y|² / d``, ``‖K‖_F = ‖Ξ_πᵀ Ξ_π‖_F / d``), in
chunks of paths. A head's score is its share, within its layer, of the alignment of the top-k paths through
it. For ``H^L`` beyond ``max_paths`` a beam search keeps the best prefixes layer by layer, completing each
prefix with the head-averaged maps of the layers not yet chosen.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pdeflow.paths.decomposition import all_paths, attentioned_inputs


def _centred_targets(labels) -> Array:
    labels = np.asarray(labels)
    if labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer) and len(np.unique(labels)) > 2:
        targets = np.eye(labels.max() + 1)[labels]
    else:
        targets = labels.reshape(len(labels), -1).astype(np.float64)
    return jnp.asarray(targets - targets.mean(0), jnp.float32)


@jax.jit
def _alignment(xi: Array, targets: Array) -> Array:
    """``ξ (B, P, d)``, targets ``(B, C)`` -> ``(P,)`` kernel–target alignment."""
    d = xi.shape[-1]
    projected = jnp.einsum("bpd,bc->pdc", xi, targets)
    numerator = jnp.sum(projected ** 2, axis=(1, 2)) / d
    gram = jnp.einsum("bpd,bpe->pde", xi, xi) / d
    return numerator / (jnp.sqrt(jnp.sum(gram ** 2, axis=(1, 2))) * jnp.sum(targets ** 2))


def path_alignment(x: Array, attention: Array, readout: Array, labels, paths, chunk: int = 256) -> np.ndarray:
    """``(P,)`` kernel–target alignment of each path (in ``[0, 1]``), paths in chunks of ``chunk``."""
    targets = _centred_targets(labels)
    paths = np.asarray(paths)
    return np.concatenate([np.asarray(_alignment(attentioned_inputs(x, attention, readout, paths[i:i + chunk]),
                                                 targets)) for i in range(0, len(paths), chunk)])


def top_paths(x: Array, attention: Array, readout: Array, labels, k: int = 32, beam: int = 64,
              max_paths: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """``(paths (k, L), alignment (k,))``: the k best-aligned paths, best first; every path is enumerated when
    ``H^L <= max_paths``, otherwise a beam search of width ``beam`` over layers."""
    num_layers, _, num_heads = attention.shape[:3]
    if num_heads ** num_layers <= max_paths:
        paths = all_paths(num_layers, num_heads)
        scores = path_alignment(x, attention, readout, labels, paths)
    else:
        averaged = attention.mean(axis=2, keepdims=True)  # (L, B, 1, N, N): a stand-in for undecided layers
        prefixes = np.zeros((1, 0), np.int32)
        for layer in range(num_layers):
            candidates = np.concatenate([np.repeat(prefixes, num_heads, 0),
                                         np.tile(np.arange(num_heads), len(prefixes))[:, None]], axis=1)
            padded = np.concatenate([candidates, np.full((len(candidates), num_layers - layer - 1), num_heads)], 1)
            extended = jnp.concatenate([attention, jnp.broadcast_to(averaged, attention.shape[:2] + (1,) +
                                                                     attention.shape[3:])], axis=2)
            scores = path_alignment(x, extended, readout, labels, padded)
            prefixes = candidates[np.argsort(-scores)[:beam]]
            scores = np.sort(scores)[::-1][:beam]
        paths = prefixes
    order = np.argsort(-scores)[:k]
    return np.asarray(paths)[order], np.asarray(scores)[order]


def traced_head_scores(paths: np.ndarray, alignment: np.ndarray, num_heads: int) -> np.ndarray:
    """``(L, H)``: each head's share, within its layer, of the alignment of the given paths through it."""
    scores = np.zeros((paths.shape[1], num_heads))
    for path, a in zip(paths, alignment):
        scores[np.arange(paths.shape[1]), path] += a
    return scores / np.maximum(scores.sum(1, keepdims=True), 1e-30)
