"""The surrogate over a batch: solve the attention-PDE for each input (vmap) and read out its maps."""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pdeflow.data.batches import fixed_size_batches
from pdeflow.information.entropy import attention_entropy
from pdeflow.metrics import attention_kl
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
    states, ok, steps = attention_pde.trajectory(params, config, solver, hidden0, laplacians, mask)
    finite = jnp.all(jnp.isfinite(states), axis=(1, 2, 3))
    safe = jnp.where(jnp.isfinite(states), states, 0.0)
    log_maps = jax.vmap(lambda s, m: attention_pde.attention_log_maps(params, config, s, m), in_axes=(1, 0),
                        out_axes=1)(safe, mask)
    return SurrogateOutput(states, log_maps, ok, steps, jnp.cumprod(finite).sum())


def per_input_attention_kl(attention: Array, log_attention: Array, mask: Array,
                           block_weights: Array | None = None) -> Array:
    """``KL(attention ‖ predicted)`` per input, in nats, averaged over heads and real query rows and over blocks
    (weighted by ``block_weights (L,)`` if given: ``Σ_l w_l KL_l / Σ_l w_l``): ``attention``, ``log_attention``
    ``(L, B, H, N, N)``, ``mask (B, N)`` -> ``(B,)``."""
    per_block = jax.vmap(lambda p, q, m: attention_kl(p, q, m).mean(-1), in_axes=(1, 1, 0), out_axes=1)(
        attention, log_attention, mask)  # (L, B)
    if block_weights is None:
        return per_block.mean(0)
    w = jnp.asarray(block_weights, per_block.dtype)
    return jnp.tensordot(w, per_block, 1) / w.sum()


def depth_weights(num_layers: int, depth_weighting: float) -> np.ndarray:
    """Block weights ``(L,)`` rising linearly with depth, ``1 + depth_weighting · l / (L − 1)``, scaled to mean 1
    (all ones for ``depth_weighting = 0`` or one block)."""
    if num_layers == 1:
        return np.ones(1, np.float32)
    w = 1.0 + depth_weighting * np.arange(num_layers) / (num_layers - 1)
    return (w / w.mean()).astype(np.float32)


def surrogate_losses(params, config: SurrogateConfig, solver: SolverConfig, trace: Trace, laplacians: Array,
                     block_weights: Array | None = None):
    """Per-input attention KL (nats, mean over blocks — weighted by ``block_weights (L,)`` if given —, heads and
    real rows) and relative hidden-state error.

    Returns ``(kl (B,), hidden_error (B,), output)``.
    """
    out = surrogate_forward(params, config, solver, trace.hidden[0], laplacians, trace.mask)
    kl = per_input_attention_kl(trace.attention, out.log_attention, trace.mask, block_weights)
    hidden_error = _relative_error(attention_pde.readout(params, out.states[1:]), trace.hidden[1:], trace.mask)
    return kl, hidden_error, out


def _relative_error(predicted: Array, reference: Array, mask: Array) -> Array:
    """``Σ|predicted − reference|² / Σ|reference|²`` per input over the real tokens: ``(T, B, N, w)`` states,
    ``mask (B, N)`` -> ``(B,)``."""
    m = mask[None, :, :, None].astype(predicted.dtype)
    return jnp.sum(((predicted - reference) * m) ** 2, (0, 2, 3)) / jnp.sum((reference * m) ** 2, (0, 2, 3))


def shooting_losses(params, config: SurrogateConfig, solver: SolverConfig, trace: Trace, laplacians: Array,
                    block_weights: Array | None = None):
    """Multiple-shooting losses (a training device: every interval starts from the transformer's own state).

    Each interval ``[l, l+1]`` that leads to a block (``l < L − 1``) is solved from ``hidden[l] · P``
    (`attention_pde.interval_ends`). The attention KL is averaged over the kernel at ``t = l`` on
    ``hidden[l] · P`` (L maps, teacher-forced) and at ``t = l + 1`` on the end of interval ``l`` (L − 1 maps, one
    interval free-running); the continuity error is the relative error of each interval's end against
    ``hidden[l+1] · P``, where the next interval starts. ``block_weights (L,)`` weight the blocks' KL (uniform if
    None).

    Returns ``(kl (B,), continuity (B,), ok, num_steps)``."""
    L, mask = config.num_layers, trace.mask
    starts = attention_pde.initial_state(params, trace.hidden[:-1])  # (L, B, N, r)
    forced = jax.vmap(lambda s, m: attention_pde.log_maps_at(params, config, jnp.arange(L, dtype=s.dtype), s, m),
                      in_axes=(1, 0), out_axes=1)(starts, mask)
    kl = per_input_attention_kl(trace.attention, forced, mask, block_weights)
    if L == 1:
        return kl, jnp.zeros_like(kl), jnp.asarray(True), jnp.asarray(0)
    ends, ok, steps = attention_pde.interval_ends(params, config, solver, trace.hidden[:-2], laplacians, mask)
    shot = jax.vmap(lambda e, m: attention_pde.log_maps_at(params, config, jnp.arange(1, L, dtype=e.dtype), e, m),
                    in_axes=(1, 0), out_axes=1)(ends, mask)
    later = None if block_weights is None else block_weights[1:]
    kl = (L * kl + (L - 1) * per_input_attention_kl(trace.attention[1:], shot, mask, later)) / (2 * L - 1)
    continuity = _relative_error(ends, jax.lax.stop_gradient(starts[1:]), mask)
    return kl, continuity, jnp.all(ok), jnp.max(steps)


@functools.partial(jax.jit, static_argnums=(1, 2, 6))
def _entropy_along_depth(params, config, solver, hidden0, laplacians, mask, times: tuple[float, ...]):
    states, ok, _ = attention_pde.trajectory(params, config, solver, hidden0, laplacians, mask,
                                             np.asarray(times, np.float32))

    def at(t, u):  # u (B, N, r) -> (B, H, N)
        maps = jax.vmap(lambda ub, mb: attention_pde.attention_kernel(params, config, t, ub, mb))(u, mask)
        return attention_entropy(maps, mask)

    return jax.lax.map(lambda tu: at(*tu), (jnp.asarray(times, states.dtype), states)), ok


def attention_entropy_along_depth(params, config: SurrogateConfig, solver: SolverConfig, trace: Trace,
                                  points_per_layer: int = 8, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Entropy (bits) of the surrogate's attention kernel along continuous depth-time, averaged over the real
    query rows of every input of ``trace``.

    Returns ``(t (T,), entropy (T, H))`` with ``T = L·points_per_layer + 1`` times from 0 to L; compare with
    `pdeflow.information.attention_entropy` of ``trace.attention`` at ``t = l``."""
    times = tuple(np.linspace(0.0, config.num_layers, config.num_layers * points_per_layer + 1).tolist())
    if solver.adjoint == "stored":  # nothing is differentiated here, and the stored adjoint saves on its steps only
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
