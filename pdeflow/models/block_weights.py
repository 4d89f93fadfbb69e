"""A transformer block's attention weights in one layout, whatever the model: what a surrogate is initialised
from (`pdeflow.pde.teacher_init`).

Each block computes, for every head ``h``, maps ``softmax((x W_Q^h + b_Q^h)(x W_K^h)ᵀ / √k_h)`` from ``x``, its
input stream normalised as ``input_norm`` says, and adds ``Σ_h A_h x W_V^h W_O^h`` to the stream (value and
output biases, which add the same vector to every token, are left out; a key bias adds a constant to each
row's logits and so never changes a map). A pre-LayerNorm block's LayerNorm gain and bias are folded into
the maps here, so ``x`` is the stream standardised token by token (``input_norm = "layer"``); a post-LayerNorm
block (BERT) reads its stream as it is (``input_norm = "none"``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

INPUT_NORMS = ("none", "layer")


@dataclasses.dataclass(frozen=True, eq=False)
class BlockWeights:
    """One block's attention weights (numpy, float32).

    Attributes:
        query, key, value: ``(d, H, k)`` per-head maps from the normalised stream.
        query_bias: ``(H, k)``.
        output: ``(H, k, d)`` each head's share of the output map.
        input_norm: ``"none"`` or ``"layer"``: what the maps read (see the module docstring).
        mlp_in, mlp_in_bias, mlp_out, mlp_out_bias: the block's feed-forward network ``(d, m)``, ``(m,)``,
            ``(m, d)``, ``(d,)``, reading the standardised stream (its LayerNorm's gain and bias folded in), a GELU
            between its two maps; None where not given.
    """

    query: np.ndarray
    query_bias: np.ndarray
    key: np.ndarray
    value: np.ndarray
    output: np.ndarray
    input_norm: str
    mlp_in: np.ndarray | None = None
    mlp_in_bias: np.ndarray | None = None
    mlp_out: np.ndarray | None = None
    mlp_out_bias: np.ndarray | None = None

    def __post_init__(self):
        d, heads, k = self.query.shape
        shapes = {"key": (d, heads, k), "value": (d, heads, k), "query_bias": (heads, k), "output": (heads, k, d)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"BlockWeights.{name} must have shape {shape} (from query {self.query.shape}); "
                                 f"got {getattr(self, name).shape}.")
        if self.mlp_in is not None:
            m = self.mlp_in.shape[1]
            for name, shape in {"mlp_in": (d, m), "mlp_in_bias": (m,), "mlp_out": (m, d), "mlp_out_bias": (d,)}.items():
                if getattr(self, name) is None or getattr(self, name).shape != shape:
                    raise ValueError(f"BlockWeights.{name} must have shape {shape}; got "
                                     f"{None if getattr(self, name) is None else getattr(self, name).shape}.")
        if self.input_norm not in INPUT_NORMS:
            raise ValueError(f"unknown input_norm {self.input_norm!r}; choose from {INPUT_NORMS}.")

    @property
    def num_heads(self) -> int:
        return self.query.shape[1]

    @property
    def head_dim(self) -> int:
        return self.query.shape[2]

    @property
    def model_dim(self) -> int:
        return self.query.shape[0]


def _folded(norm: dict, dense: dict) -> tuple[np.ndarray, np.ndarray]:
    """A LayerNorm's gain and bias folded into the dense map after it: ``(z·γ + β) W + b = z (γ ⊙ W) + (β W + b)``."""
    gain, shift = np.asarray(norm["scale"], np.float64), np.asarray(norm["bias"], np.float64)
    kernel, bias = np.asarray(dense["kernel"], np.float64), np.asarray(dense["bias"], np.float64)
    return gain[:, None] * kernel, shift @ kernel + bias


def from_dense(query: dict, key: dict, value: dict, output: dict, num_heads: int, input_norm: str,
               norm: dict | None = None, mlp: tuple[dict, dict, dict] | None = None) -> BlockWeights:
    """`BlockWeights` from Flax ``Dense`` parameters (``{"kernel": (d, d), "bias": (d,)}``) whose outputs are
    the heads side by side; ``norm`` (``{"scale", "bias"}``) is a pre-LayerNorm to fold into the maps, ``mlp``
    the feed-forward network's ``(LayerNorm, first Dense, second Dense)``."""
    as_np = {name: {k: np.asarray(v, np.float64) for k, v in p.items()}
             for name, p in (("query", query), ("key", key), ("value", value), ("output", output))}
    d = as_np["query"]["kernel"].shape[0]
    head_dim = as_np["query"]["kernel"].shape[1] // num_heads
    q_kernel, q_bias = as_np["query"]["kernel"], as_np["query"]["bias"]
    k_kernel, v_kernel = as_np["key"]["kernel"], as_np["value"]["kernel"]
    if norm is not None:
        q_kernel, q_bias = _folded(norm, query)
        k_kernel = _folded(norm, key)[0]
        v_kernel = _folded(norm, value)[0]

    def heads(w):
        return w.reshape(d, num_heads, head_dim).astype(np.float32)

    feed_forward = {}
    if mlp is not None:
        mlp_norm, mlp_in, mlp_out = mlp
        w_in, b_in = _folded(mlp_norm, mlp_in)
        feed_forward = {"mlp_in": w_in, "mlp_in_bias": b_in, "mlp_out": np.asarray(mlp_out["kernel"]),
                        "mlp_out_bias": np.asarray(mlp_out["bias"])}
    return BlockWeights(query=heads(q_kernel), query_bias=q_bias.reshape(num_heads, head_dim).astype(np.float32),
                        key=heads(k_kernel), value=heads(v_kernel),
                        output=as_np["output"]["kernel"].reshape(num_heads, head_dim, d).astype(np.float32),
                        input_norm=input_norm,
                        **{name: np.asarray(w, np.float32) for name, w in feed_forward.items()})
