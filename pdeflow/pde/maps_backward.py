"""The kernel's log maps over a batch at several depth-times (the maps a fit compares with the blocks'), with a
hand-written backward pass (``jax.custom_vjp``), for ``field_backward="custom"``.

`batch_log_maps_at` computes what ``vmap``-ing `pdeflow.pde.attention_pde.log_maps_at` over the batch computes: at
each time ``t_l`` the queries and keys of every head in one ``(B·N, r) × (r, 2·H·k)`` product on the normalised
state, the logits ``q_h·k_hᵀ`` plus the position bias and the mask, and their log-softmax. Its VJP, with ``ḡ`` the
cotangent of the log maps and ``A`` their exponentials:

    dS     = ḡ − A ⊙ rowsum(ḡ)                          (the log-softmax)
    d[q|k] = [dS·k | dSᵀ·q]                              (dSᵀ·q as (qᵀ·dS)ᵀ: `field_backward._transposed_product`)
    d bias = dS summed over the batch, contracted with the position design (never a scatter)
    dW     = xᵀ·d[q|k],  x̄ = d[q|k]·Wᵀ                   (one product each per time, row-major operands)

Left to autodiff, the backward took two to three times its forward on XLA:CPU at the fit's size: the transpose
of ``dSᵀ·q`` contracts the maps' leading axis (an untiled dot), and the weight gradient and the state's gradient
come after transposed copies of ``d[q|k]``; written by hand, the forward + VJP is ×1.39 faster there
(`benchmarks.field_backward`, ``maps_vjp``). The parameters at each time (the basis contraction) and the state's
normalisation are differentiated by ordinary autodiff, outside the custom VJP.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jax import Array

from pdeflow.pde import field_backward as fb

if TYPE_CHECKING:
    from pdeflow.pde.attention_pde import SurrogateConfig


def batch_log_maps_at(params: dict, config: SurrogateConfig, times: Array, states: Array, mask: Array) -> Array:
    """Log attention maps ``(T, B, H, N, N)`` of the kernel at ``times (T,)`` on ``states (T, B, N, r)``, ``mask
    (B, N)``: `pdeflow.pde.attention_pde.log_maps_at` for each input of the batch, differentiated by the
    hand-written backward."""
    from pdeflow.pde import attention_pde as pde

    theta = jax.vmap(lambda t: pde.at_time(params, config, "kernel", t))(times)  # every leaf (T, ...)
    x = pde.normalise_state(states, config.state_norm)
    return _custom_log_maps(config, states.shape[2])(x, theta, mask)


def _custom_log_maps(config: SurrogateConfig, n: int):
    """The ``jax.custom_vjp`` function ``(x (T, B, N, r), theta (leaves (T, ...)), mask (B, N)) -> (T, B, H, N, N)``
    for ``n`` tokens, ``x`` the normalised states."""
    from pdeflow.pde import attention_pde as pde

    heads, rank = config.num_heads, config.key_dim
    scale = 1.0 / math.sqrt(rank)
    mm = lambda spec, *operands: pde._product(config, spec, *operands)  # noqa: E731
    design = pde.kept_position_design(config, n)  # (N·N, C) or None

    def bias_of(weights):  # (T, H, N, N) or broadcastable, from the weights (T, H, C)
        if design is None:
            return jax.vmap(lambda w: pde.position_bias(w, config, n))(weights)
        return (weights @ design.T).reshape(-1, heads, n, n)

    def forward(x, theta, mask):
        """``(log_maps, (q, k))``: the operations of `attention_pde.attention_logits` over the times and the batch."""
        times, batch = x.shape[:2]
        matrix = jax.vmap(pde.heads_matrix)(jnp.concatenate([theta["query"] * scale, theta["key"]], axis=-1))
        qk = mm("tbnr,trc->tbnc", x, matrix).reshape(times, batch, n, heads, 2 * rank)
        q = qk[..., :rank].transpose(0, 1, 3, 2, 4) + scale * theta["query_bias"][:, None, :, None, :]
        k = qk[..., rank:].transpose(0, 1, 3, 2, 4)
        logits = mm("tbhik,tbhjk->tbhij", q, k) + bias_of(theta["position_bias"])[:, None]
        logits = logits + pde.key_mask_bias(config, mask)[None, :, None]
        return jax.nn.log_softmax(logits, axis=-1), (q, k, matrix)

    @jax.custom_vjp
    def log_maps(x, theta, mask):
        return forward(x, theta, mask)[0]

    def log_maps_fwd(x, theta, mask):
        out, (q, k, matrix) = forward(x, theta, mask)
        return out, (x, theta, out, q, k, matrix)

    def log_maps_bwd(residuals, cotangent):
        x, theta, out, q, k, matrix = residuals
        times, batch, _, width = x.shape
        bmm = lambda spec, *operands: fb._backward_product(config, spec, *operands)  # noqa: E731
        logits_bar = cotangent - jnp.exp(out) * jnp.sum(cotangent, axis=-1, keepdims=True)  # (T, B, H, N, N)
        q_bar = bmm("tbhij,tbhjk->tbhik", logits_bar, k)
        k_bar = fb._transposed_product(config, q, logits_bar).swapaxes(-1, -2)  # dSᵀ·q as (qᵀ·dS)ᵀ
        query_bias_bar = scale * q_bar.sum((1, 3))  # (T, H, k)
        weights = theta["position_bias"]
        if design is not None:  # dS summed over the batch as a product with ones, then contracted with the design
            summed = jax.lax.dot_general(jnp.ones((times, batch), logits_bar.dtype),
                                         logits_bar.reshape(times, batch, heads * n * n), (((1,), (1,)), ((0,), (0,))))
            position_bar = (summed.reshape(times * heads, n * n) @ design).reshape(weights.shape)
        elif config.position_family == "none":
            position_bar = jnp.zeros_like(weights)
        else:  # a design too large to keep: the gather's transpose on the batch's summed dS
            position_bar = jax.vmap(lambda w, s: jax.vjp(lambda v: pde.position_bias(v, config, n), w)[1](s)[0])(
                weights, logits_bar.sum(1))
        # queries and keys came from one (B·N, r) × (r, 2·H·k) product per time: so do their gradients
        qk_bar = jnp.concatenate([q_bar, k_bar], axis=-1).transpose(0, 1, 3, 2, 4).reshape(times, batch * n, -1)
        x_rows = x.reshape(times, batch * n, width)
        matrix_bar = jax.vmap(lambda xs, g: fb._rows_product(config, xs.T[:, None, :], g[None]))(x_rows, qk_bar)
        matrix_bar = matrix_bar.reshape(times, width, heads, 2 * rank).transpose(0, 2, 1, 3)  # (T, H, r, 2k)
        x_bar = bmm("tnc,trc->tnr", qk_bar, matrix).reshape(x.shape)
        theta_bar = {"query": scale * matrix_bar[..., :rank], "key": matrix_bar[..., rank:],
                     "query_bias": query_bias_bar, "position_bias": position_bar.astype(weights.dtype)}
        return x_bar, theta_bar, None

    log_maps.defvjp(log_maps_fwd, log_maps_bwd)
    return log_maps
