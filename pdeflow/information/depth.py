"""The attention entropy of a fitted surrogate's kernel along continuous depth-time (compare with the
transformer's per block, `pdeflow.information.attention_entropy`)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pdeflow.data.batches import fixed_size_batches
from pdeflow.information.entropy import attention_entropy
from pdeflow.models.trace import Trace
from pdeflow.pde import attention_pde
from pdeflow.pde.attention_pde import SurrogateConfig
from pdeflow.pde.solve import SolverConfig, SolverError
from pdeflow.surrogate import token_laplacians


@functools.partial(jax.jit, static_argnums=(1, 2, 6))
def _entropy_along_depth(params, config, solver, hidden0, laplacians, mask, times: tuple[float, ...]):
    states, ok, _ = attention_pde.trajectory(params, config, solver, hidden0, laplacians, mask,
                                             np.asarray(times, np.float32))
    if config.held_maps:  # the maps acting at t are those of the state where t's interval starts (t = L: the last)
        per_interval = (len(times) - 1) // config.num_layers
        starts = np.minimum(np.arange(len(times)) // per_interval, config.num_layers - 1) * per_interval
        states = states[starts]

    def at(t, u):  # u (B, N, r) -> (B, H, N)
        return attention_entropy(attention_pde.batch_attention_kernel(params, config, t, u, mask), mask)

    return jax.lax.map(lambda tu: at(*tu), (jnp.asarray(times, states.dtype), states)), ok


def attention_entropy_along_depth(params, config: SurrogateConfig, solver: SolverConfig, trace: Trace,
                                  points_per_layer: int = 8, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Entropy (bits) of the surrogate's attention kernel along continuous depth-time, averaged over the real
    query rows of every input of ``trace``.

    Returns ``(t (T,), entropy (T, H))`` with ``T = L·points_per_layer + 1`` times from 0 to L; compare with
    `pdeflow.information.attention_entropy` of ``trace.attention`` at ``t = l``. With ``config.held_maps`` the
    kernel at ``t`` is read on the state where ``t``'s interval starts (the maps the dynamics use there), so the
    entropy is constant over each interval."""
    times = tuple(np.linspace(0.0, config.num_layers, config.num_layers * points_per_layer + 1).tolist())
    if solver.adjoint in ("stored", "discrete") and not solver.adaptive:  # nothing is differentiated here, and these
        # save on their steps only
        solver = dataclasses.replace(solver, adjoint="recursive")
    sums, count = 0.0, 0.0
    for index, keep in fixed_size_batches(trace.mask.shape[0], batch_size):
        mask = np.asarray(trace.mask)[index]
        entropy, ok = _entropy_along_depth(params, config, solver, np.asarray(trace.hidden[0])[index],
                                           token_laplacians(mask, config), mask, times)
        if not bool(ok):
            raise SolverError(f"the PDE solve failed while measuring attention entropy; {solver.remedy()}.")
        real = mask[:keep]
        e = np.asarray(entropy)[:, :keep]  # (T, B, H, N)
        sums = sums + np.where(real[None, :, None, :], e, 0.0).sum(axis=(1, 3))
        count = count + real.sum()
    return np.asarray(times), sums / count
