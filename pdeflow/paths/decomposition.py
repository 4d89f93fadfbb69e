"""Attention paths: the network's output as a sum over paths, and the path–path kernels.

A path ``π = (h₁, …, h_L)`` picks one head per layer. Its *token weights* are
``w_π = Ω⁽¹ʰ¹⁾ᵀ ⋯ Ω⁽ᴸʰᴸ⁾ᵀ r`` (the readout weights carried back through the path's maps), its *attentioned
input* is ``ξ_π(X) = Σ_s w_π,s x_s ∈ R^D``, and the network's output is exactly

    f(X) = Σ_π c_π · ξ_π(X),   c_π = V⁽⁰⁾ᵀ V⁽¹ʰ¹⁾ᵀ ⋯ V⁽ᴸʰᴸ⁾ᵀ a / √(D N^{L+1} H^L)

(`path_coefficients`). The path–path kernel between inputs μ and ν is ``K^{ππ'}_{μν} = ξ_π(X^μ)·ξ_π'(X^ν) / D``,
and a matrix ``U`` over path pairs combines them into ``K(U) = Σ_{ππ'} U_{ππ'} K^{ππ'}``. With Gaussian value
weights, ``E[c_π c_π'ᵀ] = δ_{ππ'} I / (D H^L)`` at every width, so the Gaussian-process kernel of the network
is ``K(U)`` with ``U = I / H^L`` (`gp_order_parameter`); `gp_kernel` computes the same kernel layer by layer
without enumerating paths (``H·L`` maps instead of ``H^L`` paths), which is how the two are checked.
Everything is pure jnp (jit/vmap-able).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pdeflow.paths.network import PathNetConfig


def all_paths(num_layers: int, num_heads: int) -> np.ndarray:
    """``(H^L, L)`` every path, in lexicographic order (``path[l]`` is layer l's head; layer 0 varies slowest)."""
    return np.asarray(list(itertools.product(range(num_heads), repeat=num_layers)), np.int32).reshape(-1, num_layers)


def path_token_weights(attention: Array, readout: Array, paths) -> Array:
    """``(L, B, H, T, T), (T,), (P, L) -> (B, P, T)``: ``w_π = Ω⁽¹⁾ᵀ ⋯ Ω⁽ᴸ⁾ᵀ r`` per input and path."""
    paths = jnp.asarray(paths)

    def one_path(path):
        w = jnp.broadcast_to(readout, attention.shape[1:2] + readout.shape)  # (B, T)
        for layer in reversed(range(attention.shape[0])):
            w = jnp.einsum("bst,bs->bt", attention[layer, :, path[layer]], w)
        return w

    return jax.vmap(one_path, out_axes=1)(paths)


def attentioned_inputs(x: Array, attention: Array, readout: Array, paths) -> Array:
    """``ξ_π(X^μ)``: ``(B, T, D)`` inputs and their maps -> ``(B, P, D)``."""
    return jnp.einsum("bpt,btd->bpd", path_token_weights(attention, readout, paths), x)


def path_coefficients(params, config: PathNetConfig, paths) -> Array:
    """``c_π (P, D)`` of a `PathAttentionNet`'s parameters: ``f(X) = Σ_π c_π · ξ_π(X)``."""
    p = params["params"]
    paths = jnp.asarray(paths)

    def one_path(path):
        c = p["readout"]
        for layer in reversed(range(config.num_layers)):
            c = p[f"value_{layer}"][path[layer]].T @ c
        return p["value_in"].T @ c

    c = config
    scale = math.sqrt(c.input_dim * c.width ** (c.num_layers + 1) * c.num_heads ** c.num_layers)
    return jax.vmap(one_path)(paths) / scale


def path_kernels(xi_a: Array, xi_b: Array) -> Array:
    """``(A, P, D), (B, P, D) -> (P, P, A, B)``: ``K^{ππ'}_{μν} = ξ_π(X^μ)·ξ_π'(X^ν) / D``."""
    return jnp.einsum("apd,bqd->pqab", xi_a, xi_b) / xi_a.shape[-1]


def total_kernel(order_parameter: Array, kernels: Array) -> Array:
    """``K(U) = Σ_{ππ'} U_{ππ'} K^{ππ'}``: ``(P, P), (P, P, A, B) -> (A, B)``."""
    return jnp.einsum("pq,pqab->ab", order_parameter, kernels)


def gp_order_parameter(num_layers: int, num_heads: int) -> Array:
    """The Gaussian-process (infinite-width) limit ``U = I / H^L``."""
    count = num_heads ** num_layers
    return jnp.eye(count) / count


def gp_kernel(x_a: Array, attention_a: Array, x_b: Array, attention_b: Array, readout: Array) -> Array:
    """The network's Gaussian-process kernel ``(A, B)`` by the layer recursion
    ``C⁽⁰⁾ = X_a X_bᵀ / D``, ``C⁽ˡ⁾ = (1/H) Σ_h Ω_a⁽ˡʰ⁾ C⁽ˡ⁻¹⁾ Ω_b⁽ˡʰ⁾ᵀ``, ``K = rᵀ C⁽ᴸ⁾ r``, with no
    enumeration of paths. ``x_*``: ``(A|B, T, D)``; ``attention_*``: ``(L, A|B, H, T, T)``."""
    c = jnp.einsum("asd,btd->abst", x_a, x_b) / x_a.shape[-1]
    for layer in range(attention_a.shape[0]):
        c = jnp.einsum("ahsu,abuv,bhtv->abst", attention_a[layer], c, attention_b[layer]) / attention_a.shape[2]
    return jnp.einsum("s,abst,t->ab", readout, c, readout)
