"""Graph Laplacians of token grids: a 1-D chain for text, a 2-D patch grid for images.

Every Laplacian here is ``Δ = A − diag(A·1)`` for a symmetric 0/1 adjacency ``A`` between real tokens, so it
is symmetric, negative semi-definite, and conserves mass (its columns sum to zero): the discrete Neumann
Laplacian. Padded tokens have no edges, so diffusion never moves anything into or out of padding. Which of them
a surrogate uses is its token geometry's choice (`pdeflow.pde.geometry`).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array


def laplacian_from_adjacency(adjacency: Array) -> Array:
    """``(N, N)`` adjacency (symmetric, non-negative) -> ``(N, N)`` Laplacian ``A − diag(row sums)``."""
    return adjacency - jnp.diag(adjacency.sum(-1))


def chain_laplacian(mask: Array) -> Array:
    """Laplacian of the token chain ``0 − 1 − … − N−1`` restricted to real tokens.

    Args:
        mask: ``(N,)`` booleans, True for real tokens.
    Returns:
        ``(N, N)`` Laplacian; token ``i`` and ``i+1`` are joined when both are real.
    """
    m = mask.astype(jnp.float32)
    edges = m[:-1] * m[1:]  # (N-1,)
    adjacency = jnp.diag(edges, 1) + jnp.diag(edges, -1)
    return laplacian_from_adjacency(adjacency)


def patch_grid_laplacian(height: int, width: int, mask: Array | None = None, num_prefix_tokens: int = 0) -> Array:
    """4-neighbour Laplacian of a ``height × width`` patch grid (row-major), after ``num_prefix_tokens``
    tokens (a class token, say) that take no part in diffusion (their rows and columns are zero).

    Args:
        mask: optional ``(num_prefix_tokens + height*width,)`` booleans for real tokens.
    Returns:
        ``(N, N)`` Laplacian with ``N = num_prefix_tokens + height * width``.
    """
    index = jnp.arange(height * width).reshape(height, width)
    right = jnp.zeros((height * width, height * width)).at[index[:, :-1].ravel(), index[:, 1:].ravel()].set(1.0)
    down = jnp.zeros((height * width, height * width)).at[index[:-1, :].ravel(), index[1:, :].ravel()].set(1.0)
    grid = right + down
    n = num_prefix_tokens + height * width
    adjacency = jnp.zeros((n, n)).at[num_prefix_tokens:, num_prefix_tokens:].set(grid + grid.T)
    if mask is not None:
        m = mask.astype(adjacency.dtype)
        adjacency = adjacency * m[:, None] * m[None, :]
    return laplacian_from_adjacency(adjacency)
