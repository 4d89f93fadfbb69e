"""The surrogate over a batch: solve the attention-PDE for each input (vmap) and read out its maps.

The fit's losses are in `pdeflow.fitting.losses`, the kernel's entropy along depth-time in `pdeflow.information.depth`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pdeflow.data.batches import fixed_size_batches
from pdeflow.models.trace import Trace
from pdeflow.pde import attention_pde
from pdeflow.pde.attention_pde import SurrogateConfig
from pdeflow.pde.geometry import ChainGeometry
from pdeflow.pde.solve import SolverConfig, SolverError


class SurrogateOutput(NamedTuple):
    """PDE states ``(L+1, B, N, r)``, log attention maps ``(L, B, H, N, N)``, whether the solve succeeded,
    the steps it took, and how many leading saved times are finite (where a failed solve stopped)."""

    states: Array
    log_attention: Array
    ok: Array
    num_steps: Array
    finite_times: Array


def token_laplacians(mask: Array, config: SurrogateConfig | None = None) -> Array:
    """``(B, N) -> (B, N, N)`` Laplacians of the real tokens of each input on the config's token geometry
    (`SurrogateConfig.geometry`): the chain (text; also when ``config`` is None) or the patch grid after the
    prefix tokens (images)."""
    geometry = ChainGeometry() if config is None else config.geometry
    return geometry.laplacians(jnp.asarray(mask))


def surrogate_forward(params, config: SurrogateConfig, solver: SolverConfig, hidden0: Array, laplacians: Array,
                      mask: Array) -> SurrogateOutput:
    """Run the surrogate on a batch: ``hidden0 (B, N, d)``, ``laplacians (B, N, N)``, ``mask (B, N)``."""
    states, log_maps, ok, steps = attention_pde.trajectory_and_held_log_maps(params, config, solver, hidden0,
                                                                             laplacians, mask)
    finite = jnp.all(jnp.isfinite(states), axis=(1, 2, 3))
    if log_maps is None:  # (held maps are the maps at t = l on u(l): the solve computed them once)
        safe = jnp.where(jnp.isfinite(states), states, 0.0)
        log_maps = attention_pde.batch_attention_log_maps(params, config, safe, mask)
    return SurrogateOutput(states, log_maps, ok, steps, jnp.cumprod(finite).sum())


def raise_if_failed(ok, finite_times, num_layers: int, solver: SolverConfig, where: str) -> None:
    """Turn a failed solve into a `SolverError` naming the depth-time interval and the remedy."""
    if bool(ok):
        return
    reached = int(finite_times)  # saved times 0..reached-1 are finite
    interval = f"[{reached - 1}, {reached}]" if 0 < reached <= num_layers else f"[0, {num_layers}]"
    raise SolverError(f"{where}: the PDE solve failed (max_steps reached or NaN/Inf) in depth-time interval "
                      f"{interval}, i.e. around block {max(reached - 1, 0)}. Remedy: {solver.remedy()}.")


@functools.partial(jax.jit, static_argnums=(1, 2))
def _predict(params, config, solver, hidden0, laplacians, mask):
    out = surrogate_forward(params, config, solver, hidden0, laplacians, mask)
    return jnp.exp(out.log_attention), out.ok, out.finite_times


def predict_attention(params, config: SurrogateConfig, solver: SolverConfig, trace: Trace,
                      batch_size: int = 32) -> np.ndarray:
    """The surrogate's maps for every input of ``trace``: ``(L, B, H, N, N)`` probabilities (numpy).

    Runs in fixed-size batches (one compile); raises `SolverError` if any solve fails.
    """
    pieces = []
    for index, keep in fixed_size_batches(trace.mask.shape[0], batch_size):
        mask = np.asarray(trace.mask)[index]
        maps, ok, finite = _predict(params, config, solver, np.asarray(trace.hidden[0])[index],
                                    token_laplacians(mask, config), mask)
        raise_if_failed(ok, finite, config.num_layers, solver, "prediction")
        pieces.append(np.asarray(maps)[:, :keep])
    return np.concatenate(pieces, axis=1)
