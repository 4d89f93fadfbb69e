"""The fit's losses: the attention KL of the free-running surrogate (optionally weighted by depth) with its
relative hidden-state error, and the multiple-shooting losses (a training device)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pdeflow.metrics import attention_kl, map_cosine
from pdeflow.models.trace import Trace
from pdeflow.pde import attention_pde
from pdeflow.pde.attention_pde import SurrogateConfig
from pdeflow.pde.solve import SolverConfig
from pdeflow.surrogate import surrogate_forward


def per_input_attention_kl(attention: Array, log_attention: Array, mask: Array,
                           block_weights: Array | None = None) -> Array:
    """``KL(attention ‖ predicted)`` per input, in nats, averaged over heads and real query rows and over blocks
    (weighted by ``block_weights (L,)`` if given: ``Σ_l w_l KL_l / Σ_l w_l``): ``attention``, ``log_attention``
    ``(L, B, H, N, N)``, ``mask (B, N)`` -> ``(B,)``."""
    per_block = jax.vmap(lambda p, q, m: attention_kl(p, q, m).mean(-1), in_axes=(1, 1, 0), out_axes=1)(
        attention, log_attention, mask)  # (L, B)
    return _mean_over_blocks(per_block, block_weights)


def _mean_over_blocks(per_block: Array, block_weights: Array | None) -> Array:
    """``(L, B) -> (B,)``: the mean over blocks, weighted by ``block_weights (L,)`` if given."""
    if block_weights is None:
        return per_block.mean(0)
    w = jnp.asarray(block_weights, per_block.dtype)
    return jnp.tensordot(w, per_block, 1) / w.sum()


def per_input_cosine_gap(attention: Array, log_attention: Array, mask: Array,
                         block_weights: Array | None = None) -> Array:
    """``1 − cosine`` of the two maps over the real ``n × n`` block (the held-out figure's cosine,
    `pdeflow.metrics`), per input, averaged over heads and blocks (weighted by ``block_weights (L,)`` if given):
    ``attention``, ``log_attention`` ``(L, B, H, N, N)``, ``mask (B, N)`` -> ``(B,)``. Padded rows and columns
    are left out, so a trimmed or padded batch gives the same figure."""
    real = (mask[:, :, None] & mask[:, None, :])[None, :, None]  # (1, B, 1, N, N)
    p = jnp.where(real, attention, 0.0)
    q = jnp.where(real, jnp.exp(log_attention), 0.0)
    return _mean_over_blocks(1.0 - map_cosine(p, q).mean(-1), block_weights)  # (L, B) -> (B,)


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
    forced = attention_pde.batch_log_maps_at(params, config, jnp.arange(L, dtype=starts.dtype), starts, mask)
    kl = per_input_attention_kl(trace.attention, forced, mask, block_weights)
    if L == 1:
        return kl, jnp.zeros_like(kl), jnp.asarray(True), jnp.asarray(0)
    held = forced[:-1] if attention_pde.holds_maps(config) else None  # (L-1, B, H, N, N): the maps at t = l on u_l
    ends, ok, steps = attention_pde.interval_ends(params, config, solver, trace.hidden[:-2], laplacians, mask, held)
    shot = attention_pde.batch_log_maps_at(params, config, jnp.arange(1, L, dtype=ends.dtype), ends, mask)
    later = None if block_weights is None else block_weights[1:]
    kl = (L * kl + (L - 1) * per_input_attention_kl(trace.attention[1:], shot, mask, later)) / (2 * L - 1)
    continuity = _relative_error(ends, jax.lax.stop_gradient(starts[1:]), mask)
    return kl, continuity, jnp.all(ok), jnp.max(steps)
