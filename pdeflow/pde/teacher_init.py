"""Initialising the attention-PDE from the transformer it is fitted to, so that a fit starts near the
transformer instead of at random.

Knot ``l``'s query and key maps are block ``l``'s own (through the projection ``P``; the best rank-``k``
approximation of each head's bilinear form ``W_Q W_Kᵀ`` when the key rank ``k`` is below the head width), with
its query bias; with ``"value"`` in `SurrogateConfig.varying` each head's value correction at knot ``l`` is
block ``l``'s ``W_V W_O`` (likewise truncated to the value rank), scaled so that ``α(t)/H · V U`` equals it.
Knot values are solved for so that the kernel at ``t = l`` is block ``l``'s exactly
(`pdeflow.pde.basis.interpolating_coefficients`). At ``r = d`` the projection is the identity: the surrogate
lives in the transformer's own basis, and its kernel on ``hidden[l]`` reproduces block ``l``'s maps.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pdeflow.models.block_weights import BlockWeights
from pdeflow.pde import basis, terms
from pdeflow.pde.attention_pde import SurrogateConfig, init_surrogate


@dataclasses.dataclass(frozen=True)
class TeacherInitConfig:
    """The starting coefficients of a surrogate initialised from its transformer.

    Attributes:
        diffusion: D(t) at every knot (small: a transformer block does not smooth its tokens along the chain).
        alpha: α(t) at every knot. The value corrections are scaled by ``H/α`` so that the attention term
            adds each block's own ``Σ_h A_h u W_V W_O`` whatever α is; a small α keeps the term's smoothing
            part ``α(mean_h A_h u − u)`` small.
        beta: β(t) at every knot.
        feed_forward: start the residual MLP at each block's feed-forward network (divided by β), where its
            width equals the network's, the MLP varies in t and reads the standardised state
            (``residual_norm="layer"``); otherwise the MLP starts with a zero output layer, so it adds nothing
            until the fit trains it.
    """

    diffusion: float = 0.01
    alpha: float = 0.1
    beta: float = 1.0
    feed_forward: bool = True

    def __post_init__(self):
        if not (self.diffusion > 0 and self.alpha > 0):
            raise ValueError(f"need diffusion > 0 and alpha > 0; got {self.diffusion}, {self.alpha}.")

    def coefficient_values(self) -> dict[str, float]:
        """``{term name: starting coefficient}``; a registered term not named here starts at its
        `pdeflow.pde.terms.Term.initial_value`."""
        return {"diffusion": self.diffusion, "attention": self.alpha, "residual": self.beta}


def check_teacher(config: SurrogateConfig, blocks: list[BlockWeights]) -> None:
    """Raise ``ValueError`` naming the fix when ``blocks`` cannot initialise a surrogate of shape ``config``."""
    if len(blocks) != config.num_layers:
        raise ValueError(f"got weights of {len(blocks)} blocks for a surrogate of {config.num_layers} layers.")
    first = blocks[0]
    if (first.num_heads, first.model_dim) != (config.num_heads, config.model_dim):
        raise ValueError(f"the transformer has H={first.num_heads}, d={first.model_dim} but the surrogate H="
                         f"{config.num_heads}, d={config.model_dim}; build the SurrogateConfig from the model.")
    if config.width > config.model_dim:
        raise ValueError(f"initialising from the transformer needs width <= d = {config.model_dim} (the state is the "
                         f"hidden state through a d x r projection); got width={config.width}.")
    if first.input_norm != config.state_norm:
        raise ValueError(f"the transformer's blocks read their stream with input_norm={first.input_norm!r}; "
                         f"initialising from them needs state_norm={first.input_norm!r} (got {config.state_norm!r}).")


def _low_rank_pair(left: np.ndarray, right: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(A, B, T)`` with ``A Bᵀ`` the best rank-``rank`` approximation of ``left rightᵀ`` (``(r, k)`` each),
    the singular values split evenly, and ``T`` ``(k, rank)`` such that ``x rightᵀ ≈ (x T) Bᵀ`` (how a vector
    met by ``right`` is carried over to ``B``). Columns beyond the product's rank are zero."""
    q_left, r_left = np.linalg.qr(left)
    q_right, r_right = np.linalg.qr(right)
    u, s, vt = np.linalg.svd(r_left @ r_right.T)
    keep = min(rank, len(s))
    root = np.sqrt(s[:keep])
    a = np.zeros((left.shape[0], rank))
    b = np.zeros((right.shape[0], rank))
    carry = np.zeros((right.shape[1], rank))
    a[:, :keep] = q_left @ u[:, :keep] * root
    b[:, :keep] = q_right @ vt[:keep].T * root
    # x rightᵀ = x r_rightᵀ q_rightᵀ; with B = q_right V √S, x T Bᵀ = x T √S Vᵀ q_rightᵀ, so T = r_rightᵀ V / √S
    carry[:, :keep] = r_right.T @ vt[:keep].T / np.maximum(root, 1e-12)
    return a, b, carry


def init_from_transformer(key: Array, config: SurrogateConfig, blocks: list[BlockWeights], hidden0: Array,
                          teacher: TeacherInitConfig = TeacherInitConfig()) -> dict:
    """Parameters of ``config``'s surrogate started from the transformer's blocks (module docstring).

    ``hidden0`` (``(..., d)`` embedding outputs of training inputs) sets the projection when ``r < d`` (their
    top-``r`` principal directions, as in `init_surrogate`); at ``r = d`` the projection is the identity.
    Parameters the transformer does not determine (the position bias, the residual MLP's input layer, the
    value corrections when they do not vary in t) start as `init_surrogate` starts them.
    """
    check_teacher(config, blocks)
    params = init_surrogate(key, config, hidden0)
    d, r, heads, k, v = config.model_dim, config.width, config.num_heads, config.key_dim, config.value_rank
    projection = np.eye(d, dtype=np.float64) if r == d else np.asarray(params["projection"], np.float64)
    head_dim = blocks[0].head_dim
    scale = math.sqrt(k / head_dim)  # the surrogate divides its logits by √k, the transformer by √head_dim
    value_scale = math.sqrt(heads / teacher.alpha)  # α/H · (cV)(cU) = W_V W_O with c = √(H/α)
    query, key_map, query_bias, down, up = (np.zeros((config.num_layers, heads) + s) for s in
                                            ((r, k), (r, k), (k,), (r, v), (v, r)))
    for l, block in enumerate(blocks):
        for h in range(heads):
            a, b, carry = _low_rank_pair(projection.T @ block.query[:, h], projection.T @ block.key[:, h], k)
            query[l, h], key_map[l, h] = a * scale, b
            query_bias[l, h] = block.query_bias[h] @ carry * scale
            down_lh, up_lh, _ = _low_rank_pair(projection.T @ block.value[:, h], projection.T @ block.output[h].T, v)
            down[l, h], up[l, h] = down_lh * value_scale, up_lh.T * value_scale
    # every knot takes the block whose interval [l, l+1) it lies in (with K = L: knot l is block l), and the knot
    # values are solved for so that the basis passes through them
    block_of_knot = np.minimum(np.floor(config.knots + 1e-6).astype(int), config.num_layers - 1)

    def on_knots(values):
        return jnp.asarray(basis.interpolating_coefficients(values[block_of_knot], config.knots, config.knots,
                                                            config.basis_width))

    params["projection"] = jnp.asarray(projection, jnp.float32)
    params["readout"] = {"kernel": jnp.asarray(projection.T, jnp.float32), "bias": jnp.zeros((d,))}
    params["kernel"] = {**params["kernel"], "query": on_knots(query), "key": on_knots(key_map),
                        "query_bias": on_knots(query_bias)}
    if "value" in config.varying:
        params["value"] = {"down": on_knots(down), "up": on_knots(up)}
    raw = np.array([term.raw_coefficient(teacher.coefficient_values().get(term.name, term.initial_value))
                    for term in terms.REGISTRY.values()])
    params["coefficients"] = jnp.tile(jnp.asarray(raw, jnp.float32), (config.num_knots, 1))
    first = blocks[0]
    if (teacher.feed_forward and first.mlp_in is not None and first.mlp_in.shape[1] == config.mlp_width
            and "residual" in config.varying and config.residual_norm == "layer"):
        # the MLP reads the standardised state, the network the standardised stream: the same at r = d
        stacked = {name: np.stack([getattr(b, name) for b in blocks]) for name in
                   ("mlp_in", "mlp_in_bias", "mlp_out", "mlp_out_bias")}
        params["residual"] = {"w1": on_knots(projection.T @ stacked["mlp_in"]), "b1": on_knots(stacked["mlp_in_bias"]),
                              "w2": on_knots(stacked["mlp_out"] @ projection / teacher.beta),
                              "b2": on_knots(stacked["mlp_out_bias"] @ projection / teacher.beta)}
    else:
        params["residual"] = {**params["residual"], "w2": jnp.zeros_like(params["residual"]["w2"])}
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params)
