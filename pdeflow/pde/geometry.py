"""Token geometries: how a transformer's tokens are laid out for the attention-PDE.

A geometry owns what follows from the layout: the token-grid Laplacian of the diffusion term (batched over
masks), the relative-position index of the ``"offsets"`` position bias and its bucket count, the number of
tokens it fixes (None when any length fits), and which keys a query may attend to.

* `ChainGeometry`: text. Tokens form a chain ``0 − 1 − … − N−1``; any length. Causal chains mask later keys.
* `PatchGridGeometry`: images. ``prefix_tokens`` tokens (a ViT's class token) come before ``height·width``
  patches in row-major order on a grid with 4-neighbour diffusion and Neumann boundaries; the prefix tokens
  take no part in diffusion and have position-bias entries of their own.

`pdeflow.pde.attention_pde.SurrogateConfig.geometry` builds the geometry from the config's ``grid``,
``prefix_tokens`` and ``causal`` fields; `SurrogateConfig.with_geometry` sets them from a geometry.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pdeflow.models.relative_position import relative_offsets
from pdeflow.pde.grid import chain_laplacian, patch_grid_laplacian


@runtime_checkable
class TokenGeometry(Protocol):
    """What every geometry provides (``R`` below is ``max_distance``, the configured clipping of offsets)."""

    @property
    def num_tokens(self) -> int | None:
        """N fixed by the geometry; None when any length fits."""

    def check_token_count(self, n: int, inputs: str = "the inputs") -> None:
        """Raise ``ValueError`` if ``n`` tokens do not fit the geometry."""

    def laplacian(self, mask: Array) -> Array:
        """``mask (N,) -> (N, N)`` Laplacian of the real tokens."""

    def laplacians(self, mask: Array) -> Array:
        """``mask (B, N) -> (B, N, N)``: `laplacian` of every input."""

    def position_range(self, max_distance: int) -> int:
        """The clipping range actually used for offsets (at most ``max_distance``)."""

    def num_position_buckets(self, max_distance: int) -> int:
        """Entries of a head's ``"offsets"`` position bias."""

    def position_index(self, n: int, max_distance: int) -> np.ndarray:
        """``(N, N)`` int64 indices in ``[0, num_position_buckets)`` into the position bias, query ``i``, key ``j``."""

    def allowed_keys(self, n: int) -> np.ndarray | None:
        """``(N, N)`` booleans, True where query ``i`` may attend to key ``j`` (besides the padding mask); None:
        every key."""


@dataclasses.dataclass(frozen=True)
class ChainGeometry:
    """Tokens on a chain ``0 − 1 − … − N−1`` (text), of any length; ``causal``: keys after the query are
    masked out."""

    causal: bool = False

    @property
    def num_tokens(self) -> None:
        return None

    def check_token_count(self, n: int, inputs: str = "the inputs") -> None:
        """A chain takes any length."""

    def laplacian(self, mask: Array) -> Array:
        """``(N,) -> (N, N)``: `pdeflow.pde.grid.chain_laplacian`."""
        return chain_laplacian(mask)

    def laplacians(self, mask: Array) -> Array:
        return jax.vmap(self.laplacian)(jnp.asarray(mask))

    def position_range(self, max_distance: int) -> int:
        return max_distance

    def num_position_buckets(self, max_distance: int) -> int:
        """``2R + 1``: one per clipped offset ``j − i ∈ [−R, R]``."""
        return 2 * self.position_range(max_distance) + 1

    def position_index(self, n: int, max_distance: int) -> np.ndarray:
        """``clip(j − i, −R, R) + R``."""
        r = self.position_range(max_distance)
        return relative_offsets(np.arange(n), r) + r

    def allowed_keys(self, n: int) -> np.ndarray | None:
        return np.tril(np.ones((n, n), bool)) if self.causal else None


@dataclasses.dataclass(frozen=True)
class PatchGridGeometry:
    """``prefix_tokens`` tokens, then a ``height × width`` patch grid in row-major order (images): exactly
    ``prefix_tokens + height·width`` tokens."""

    height: int
    width: int
    prefix_tokens: int = 0

    def __post_init__(self):
        if min(self.height, self.width) < 1 or self.prefix_tokens < 0:
            raise ValueError(f"a patch grid needs height, width >= 1 and prefix_tokens >= 0; got {self.height}, "
                             f"{self.width}, {self.prefix_tokens}.")

    @property
    def num_tokens(self) -> int:
        """``prefix_tokens + height·width``."""
        return self.prefix_tokens + self.height * self.width

    def check_token_count(self, n: int, inputs: str = "the inputs") -> None:
        if n != self.num_tokens:
            raise ValueError(f"{inputs} have {n} tokens, but a {self.height}x{self.width} patch grid after "
                             f"{self.prefix_tokens} prefix tokens has {self.num_tokens}; set grid and prefix_tokens "
                             "to the model's patch layout.")

    def laplacian(self, mask: Array) -> Array:
        """``(N,) -> (N, N)``: `pdeflow.pde.grid.patch_grid_laplacian`; the prefix tokens' rows and columns are
        zero."""
        self.check_token_count(mask.shape[-1])
        return patch_grid_laplacian(self.height, self.width, mask, self.prefix_tokens)

    def laplacians(self, mask: Array) -> Array:
        mask = jnp.asarray(mask)
        self.check_token_count(mask.shape[-1])
        return jax.vmap(self.laplacian)(mask)

    def position_range(self, max_distance: int) -> int:
        """``min(R, max(height, width) − 1)``: never beyond the grid's own extent."""
        return min(max_distance, max(self.height, self.width) - 1)

    def num_position_buckets(self, max_distance: int) -> int:
        """``(2R+1)² + 3``: one per clipped ``(Δrow, Δcolumn)``, then prefix query, prefix key, prefix to prefix."""
        span = 2 * self.position_range(max_distance) + 1
        return span * span + 3

    def position_index(self, n: int, max_distance: int) -> np.ndarray:
        """Patches: ``(clip(Δrow) + R)·(2R+1) + clip(Δcolumn) + R``; a prefix query, a prefix key and a
        prefix-to-prefix pair each index one entry after that table."""
        self.check_token_count(n)
        r, p = self.position_range(max_distance), self.prefix_tokens
        rows, cols = np.divmod(np.arange(self.height * self.width), self.width)
        span = 2 * r + 1
        index = np.empty((n, n), np.int64)
        index[p:, p:] = (relative_offsets(rows, r) + r) * span + relative_offsets(cols, r) + r
        index[:p, p:] = span * span
        index[p:, :p] = span * span + 1
        index[:p, :p] = span * span + 2
        return index

    def allowed_keys(self, n: int) -> None:
        return None


def geometry_of(grid: tuple[int, ...] = (), prefix_tokens: int = 0, causal: bool = False) -> TokenGeometry:
    """The geometry of a config's ``grid`` (``()``: a chain; ``(h, w)``: a patch grid), ``prefix_tokens`` and
    ``causal`` fields."""
    if not grid:
        if prefix_tokens:
            raise ValueError(f"prefix_tokens ({prefix_tokens}) needs a patch grid (grid=(h, w)); on a token chain "
                             "every token is on the chain.")
        return ChainGeometry(causal)
    if len(grid) != 2:
        raise ValueError(f"grid must be () for a token chain or (height, width) of a patch grid; got {grid}.")
    if causal:
        raise ValueError("causal masking orders the tokens on a chain; a patch grid (grid=(h, w)) takes causal=False.")
    return PatchGridGeometry(grid[0], grid[1], prefix_tokens)


def geometry_fields(geometry: TokenGeometry) -> dict:
    """The config fields ``{"grid", "prefix_tokens", "causal"}`` that `geometry_of` turns into ``geometry``."""
    if isinstance(geometry, ChainGeometry):
        return {"grid": (), "prefix_tokens": 0, "causal": geometry.causal}
    if isinstance(geometry, PatchGridGeometry):
        return {"grid": (geometry.height, geometry.width), "prefix_tokens": geometry.prefix_tokens, "causal": False}
    raise ValueError(f"no config fields describe geometry {geometry!r}; use ChainGeometry or PatchGridGeometry.")
