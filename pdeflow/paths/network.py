"""The network of the attention-path theory (Tiberi, Mignacco, Irie & Sompolinsky, NeurIPS 2024), in Flax.

A linear input layer, ``L`` multi-head attention layers whose attention maps depend only on the *input*
tokens, a linear value path with the heads summed (scaled by ``1/√H``), no residual, and a linear readout of
the last token or of the token average:

    X⁽⁰⁾ = X V⁽⁰⁾ᵀ / √D
    X⁽ˡ⁾ = (1/√H) Σ_h Ω⁽ˡʰ⁾(X) X⁽ˡ⁻¹⁾ V⁽ˡʰ⁾ᵀ / √N          l = 1..L
    f(X) = rᵀ X⁽ᴸ⁾ a / √N

with ``X`` of shape ``(T, D)``, ``Ω⁽ˡʰ⁾(X)_{st} = softmax_t((Q x_s)·(K x_t) / √G)`` (query s, key t; rows sum to
one), every weight drawn from a standard Gaussian, and ``r`` the readout weights over tokens (``e_T`` or
``1/T``). Because the network is linear in its value weights, ``f`` is a sum over the ``H^L`` *attention
paths* ``π = (h₁, …, h_L)`` (see `pdeflow.paths.decomposition`).
"""

from __future__ import annotations

import dataclasses
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from pdeflow.models.attention import masked_softmax

READOUTS = ("last", "mean")


@dataclasses.dataclass(frozen=True)
class PathNetConfig:
    """Shape of the attention-path network.

    Attributes:
        input_dim: D, the dimension of each input token.
        width: N, the width of the value path.
        num_layers: L, attention layers.
        num_heads: H, heads per layer (summed, scaled by 1/√H).
        key_dim: G, query/key dimension of every head.
        readout: "last" (read the last token) or "mean" (the token average).
    """

    input_dim: int = 16
    width: int = 32
    num_layers: int = 2
    num_heads: int = 4
    key_dim: int = 8
    readout: str = "last"

    def __post_init__(self):
        for name in ("input_dim", "width", "num_layers", "num_heads", "key_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}.")
        if self.readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}; got {self.readout!r}.")

    @property
    def num_paths(self) -> int:
        return self.num_heads ** self.num_layers


def readout_weights(num_tokens: int, readout: str) -> jax.Array:
    """``r (T,)``: one-hot on the last token, or uniform ``1/T``."""
    if readout == "last":
        return jnp.zeros(num_tokens).at[-1].set(1.0)
    return jnp.full(num_tokens, 1.0 / num_tokens)


class PathAttentionNet(nn.Module):
    """``apply(params, x (B, T, D)) -> (f (B,), attention (L, B, H, T, T))``."""

    config: PathNetConfig

    @nn.compact
    def __call__(self, x):
        c = self.config
        if x.ndim != 3 or x.shape[-1] != c.input_dim:
            raise ValueError(f"x must have shape (B, T, D={c.input_dim}); got {x.shape}.")
        normal = nn.initializers.normal(1.0)
        maps = []
        for layer in range(c.num_layers):
            q = self.param(f"query_{layer}", normal, (c.num_heads, c.key_dim, c.input_dim))
            k = self.param(f"key_{layer}", normal, (c.num_heads, c.key_dim, c.input_dim))
            # the logits as one contraction (opt_einsum forms each head's bilinear form Kᵀ Q first), not the
            # per-token q·k of `attention_logits`: the same maths, summed in another order (differs at round-off)
            scores = jnp.einsum("hgd,bsd,hge,bte->bhst", q, x, k, x) / (c.input_dim * math.sqrt(c.key_dim))
            maps.append(masked_softmax(scores))  # (B, H, T, T), no mask: every token is real
        v0 = self.param("value_in", normal, (c.width, c.input_dim))
        h = x @ v0.T / math.sqrt(c.input_dim)  # (B, T, N)
        for layer in range(c.num_layers):
            v = self.param(f"value_{layer}", normal, (c.num_heads, c.width, c.width))
            h = jnp.einsum("bhst,btn,hmn->bsm", maps[layer], h, v) / math.sqrt(c.num_heads * c.width)
        a = self.param("readout", normal, (c.width,))
        r = readout_weights(x.shape[1], c.readout)
        return jnp.einsum("t,btn,n->b", r, h, a) / math.sqrt(c.width), jnp.stack(maps)


def with_bilinear_head(params, config: PathNetConfig, layer: int, head: int, bilinear) -> dict:
    """Parameters whose head ``(layer, head)`` scores ``score(s, t) = x_sᵀ W x_t`` for a given ``W (D, D)``
    (needs ``key_dim == input_dim``: query = identity, key = ``W · D√G``, undoing the network's scaling)."""
    if config.key_dim != config.input_dim:
        raise ValueError(f"a bilinear head needs key_dim == input_dim ({config.input_dim}); got {config.key_dim}.")
    w = jnp.asarray(bilinear, jnp.float32)
    if w.shape != (config.input_dim, config.input_dim):
        raise ValueError(f"W must have shape ({config.input_dim}, {config.input_dim}); got {w.shape}.")
    p = dict(params["params"])
    scale = config.input_dim * math.sqrt(config.key_dim)
    p[f"query_{layer}"] = p[f"query_{layer}"].at[head].set(jnp.eye(config.input_dim))
    p[f"key_{layer}"] = p[f"key_{layer}"].at[head].set(w * scale)
    return {"params": p}
