"""The attention-PDE's vector field over a batch with a hand-written backward pass (``jax.custom_vjp``).

`batch_field` computes what `pdeflow.pde.attention_pde.batch_vector_field` computes, in the same operations
and order (so the same values), written over the batch axis rather than under ``vmap``; its VJP is derived by
hand, like a flash-attention backward. With ``g = ḡ·mask`` the cotangent of ``du/dt`` on real tokens, the
mixing operator ``M = D·Δ + α·mean_h A_h`` and the value path ``z_h = u·V_h``, ``o_h = A_h·z_h``:

    dM     = g·uᵀ                                   (one (N, N) product per input, as the forward's M·u)
    ū     += Mᵀ·g − α·g                              (the mixing product; the attention term's −u)
    dA_h   = (α/H)·(dM + (g·U_hᵀ)·z_hᵀ)               (rank-v correction per head, as the forward's A_h·z_h)
    dS_h   = A_h ⊙ (dA_h − rowsum(dA_h ⊙ A_h))        (the softmax; A kept from the forward)
    d[q|k] = [dS_h·k_h | dS_hᵀ·q_h]                   (then one (B·N, r) × (r, 2·H·k) product each for the
                                                      maps' gradient and the normalised state's)

with dS_hᵀ·q_h and A_hᵀ·ō_h computed as (q_hᵀ·dS_h)ᵀ and (ō_hᵀ·A_h)ᵀ (`_transposed_product`): XLA:CPU runs a
product that contracts the maps' leading axis several times slower than one that contracts their rows where
they lie.
    d bias = dS contracted with the position design (`attention_pde.position_design`), never a scatter
    ū     += Σ_h (A_hᵀ·(g·U_hᵀ)·(α/H))·V_hᵀ             (the low-rank value path)
    ū     += norm-VJP(MLP-VJP(β·g))                   (the residual MLP, by hand)

and the coefficients' gradients are inner products with what the forward kept (``<dM, Δ>``, ``<dM, mean_h A>
+ <g, attention part>``, ``<g, R(u)>``). Only ``(B, H, N, N)`` arrays the forward also makes are made: the
maps ``A`` (kept), ``dA`` and ``dS``; the head-mean of ``dA`` is the ``(B, N, N)`` ``dM`` broadcast inside the
fusion that forms ``dS``, not a copy.

The parameters are evaluated at depth-time ``t`` (the basis contraction, the coefficients' softplus) outside
the custom VJP, by ordinary autodiff: their gradients (to the knots, and to ``t``) follow from those of the
evaluated parameters. In bfloat16 the forward's products are `attention_pde._product`'s; the backward's products
round both operands (the cotangent included) to bfloat16 and accumulate in float32, as autodiff's backward of
`attention_pde._product` does (`pdeflow.pde.low_precision`).

Covers the built-in terms (diffusion, attention, residual) in any combination, every token geometry (chain,
patch grid with prefix tokens, causal), padding masks, every position family, both compute dtypes and
time-varying value and residual groups. A term registered later has no hand-written backward: `batch_field`
refuses a config that switches one on (use ``field_backward="autodiff"``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
from jax import Array

from pdeflow.pde import terms

if TYPE_CHECKING:
    from pdeflow.pde.attention_pde import SurrogateConfig

BUILT_IN_TERMS = ("diffusion", "attention", "residual")


def check_covered(config: SurrogateConfig) -> None:
    """Raise ``ValueError`` if a term switched on in ``config`` has no hand-written backward."""
    extra = [term.name for term in terms.active_terms(config) if term.name not in BUILT_IN_TERMS]
    if extra:
        raise ValueError(f"field_backward='custom' has a hand-written backward for the terms {list(BUILT_IN_TERMS)} "
                         f"only; {extra} {'is' if len(extra) == 1 else 'are'} switched on: use "
                         "field_backward='autodiff' with them.")


def batch_field(config: SurrogateConfig, t: Array, u: Array, args) -> Array:
    """``du/dt`` for a batch, as `pdeflow.pde.attention_pde.batch_vector_field`: ``u (B, N, r)``, ``args =
    (params, laplacians (B, N, N), mask (B, N))``; differentiated by the hand-written backward."""
    from pdeflow.pde import attention_pde as pde

    check_covered(config)
    params, laplacians, mask = args
    on = {term.name for term in terms.active_terms(config)}
    column = {name: i for i, name in enumerate(terms.REGISTRY)}
    coefs = pde.coefficients(params, config, t)
    coefs = jnp.stack([coefs[column[name]] if name in on else jnp.zeros((), coefs.dtype) for name in BUILT_IN_TERMS])
    groups = {}
    if "attention" in on:
        groups["kernel"] = pde.at_time(params, config, "kernel", t)
        groups["value"] = pde.at_time(params, config, "value", t)
    if "residual" in on:
        groups["residual"] = pde.at_time(params, config, "residual", t)
    return _custom_field(config, u.shape[1])(u, coefs, groups, laplacians, mask)


def _transposed_product(config: SurrogateConfig, small: Array, maps: Array) -> Array:
    """``(mapsᵀ·small)ᵀ = smallᵀ·maps`` over the leading (batch, head) axes: ``small (..., N, c)``, ``maps (..., N, N)``
    -> ``(..., c, N)``, the operands rounded to ``config.compute_dtype`` (`_in_compute_dtype`).

    The maps' rows are contracted where they lie, after transposing the small operand: a row-major product. The
    optimisation barriers stop XLA from folding the transposes back into a product that contracts the maps'
    leading axis, which XLA:CPU runs several times slower (measured: 0.13 against 0.55 ms at B=32, H=12, N=48)."""
    small_t, maps = _in_compute_dtype(config, jnp.swapaxes(small, -1, -2), maps)
    batch = tuple(range(maps.ndim - 2))
    out = jax.lax.dot_general(jax.lax.optimization_barrier(small_t), maps,
                              (((maps.ndim - 1,), (maps.ndim - 2,)), (batch, batch)),
                              preferred_element_type=_accumulation(config))
    return jax.lax.optimization_barrier(out)


def _rows_product(config: SurrogateConfig, small_t: Array, big: Array) -> Array:
    """``Σ_{b,n} small_t[..., b, n] · big[b, n, :]``: ``small_t (*P, B, N)`` (a small operand, already laid out with
    the batch and token axes last), ``big (B, N, Q)`` -> ``(*P, Q)``, the operands rounded to
    ``config.compute_dtype``: a weight gradient. The barrier keeps the small operand's layout, so that XLA
    multiplies row-major matrices instead of transposing the large operand, an untiled copy that costs XLA:CPU
    milliseconds at ``B·N·Q`` of a few million."""
    lead = small_t.shape[:-2]
    rows, columns = _in_compute_dtype(config, small_t.reshape(-1, big.shape[0] * big.shape[1]),
                                      big.reshape(-1, big.shape[-1]))
    out = jax.lax.dot_general(jax.lax.optimization_barrier(rows), columns, (((1,), (0,)), ((), ())),
                              preferred_element_type=_accumulation(config))
    if config.compute_dtype != "float32":  # kept from folding a transpose of the result into the product: XLA:CPU
        out = jax.lax.optimization_barrier(out)  # runs that layout in a kernel without bfloat16 products
    return out.reshape(lead + (big.shape[-1],))


def _in_compute_dtype(config: SurrogateConfig, *operands: Array) -> tuple[Array, ...]:
    """The backward's operands: as they are for float32; for a low-precision compute dtype in that dtype, and
    multiplied with float32 accumulation (``preferred_element_type``). XLA:CPU runs some layouts of a
    ``bf16 × bf16 → f32`` product in a kernel that does not implement it ("Unsupported element type for
    DotThunk"): the optimisation barriers of `_transposed_product` and `_rows_product` keep XLA from choosing
    them."""
    if config.compute_dtype == "float32":
        return operands
    return tuple(x.astype(config.compute_dtype) for x in operands)


def _accumulation(config: SurrogateConfig):
    """The products' result dtype: float32 for a low-precision compute dtype, else the operands' own (float64 in the
    tests that check the backward in float64)."""
    return None if config.compute_dtype == "float32" else jnp.float32


def _backward_product(config: SurrogateConfig, spec: str, *operands: Array) -> Array:
    """``jnp.einsum(spec, *operands)`` with the operands rounded to ``config.compute_dtype`` (`_in_compute_dtype`)."""
    return jnp.einsum(spec, *_in_compute_dtype(config, *operands), preferred_element_type=_accumulation(config))


def _custom_field(config: SurrogateConfig, n: int):
    """The ``jax.custom_vjp`` function ``(u, coefs (3,), groups, laplacians, mask) -> du`` for ``n`` tokens."""
    from pdeflow.pde import attention_pde as pde

    on = {term.name for term in terms.active_terms(config)}
    heads, rank = config.num_heads, config.key_dim
    scale = 1.0 / math.sqrt(rank)
    mm = lambda spec, *operands: pde._product(config, spec, *operands)  # noqa: E731
    design = pde.kept_position_design(config, n)  # (N·N, C) or None

    def bias_of(weights):  # (H, N, N) or broadcastable: the forward of `attention_pde.add_position_bias`
        if design is None:
            return pde.position_bias(weights, config, n)
        return (weights @ design.T).reshape(heads, n, n)

    def forward(u, coefs, groups, laplacians, mask):
        """``(du, residuals)``, the operations of `attention_pde.vector_field` over the batch."""
        batch = u.shape[0]
        diffusion, alpha, beta = coefs[0], coefs[1], coefs[2]
        saved = {}
        du = jnp.zeros_like(u)
        mixing = None
        if "diffusion" in on:
            mixing = diffusion * laplacians
        if "attention" in on:
            theta, value = groups["kernel"], groups["value"]
            x = pde.normalise_state(u, config.state_norm)
            maps = jnp.concatenate([theta["query"] * scale, theta["key"]], axis=-1)  # (H, r, 2k)
            matrix = pde.heads_matrix(maps)
            qk = mm("bnr,rc->bnc", x, matrix).reshape(batch, n, heads, 2 * rank)
            q = qk[..., :rank].transpose(0, 2, 1, 3) + scale * theta["query_bias"][None, :, None, :]
            k = qk[..., rank:].transpose(0, 2, 1, 3)
            logits = mm("bhik,bhjk->bhij", q, k) + bias_of(theta["position_bias"])[None]
            attention = jax.nn.softmax(logits + pde.key_mask_bias(config, mask)[:, None], axis=-1)  # (B, H, N, N)
            mean_map = attention.mean(1)
            mixing = alpha * mean_map if mixing is None else mixing + alpha * mean_map
            # every head's down-projection in one product, token-major (B, N, H, v), as `terms` computes it
            z = mm("bnr,rc->bnc", u, pde.heads_matrix(value["down"])).reshape(batch, n, heads, -1)
            low = pde.value_path_product(config, attention, z)
            part = mm("bhiv,hvr->bir", low, value["up"]) / heads - u
            du = du + alpha * part
            saved.update(x=x, matrix=matrix, q=q, k=k, attention=attention, mean_map=mean_map, z=z, low=low,
                         part=part)
        if mixing is not None:
            du = du + mm("bij,bjr->bir", mixing, u)
        if "residual" in on:
            p = groups["residual"]
            normed = pde.normalise_state(u, config.residual_norm)
            pre = mm("bnr,rm->bnm", normed, p["w1"]) + p["b1"]
            hidden = jax.nn.gelu(pre)
            out = mm("bnm,mr->bnr", hidden, p["w2"]) + p["b2"]
            du = du + beta * out
            saved.update(normed=normed, pre=pre, hidden=hidden, out=out)
        return du * mask[:, :, None].astype(u.dtype), saved

    @jax.custom_vjp
    def field(u, coefs, groups, laplacians, mask):
        return forward(u, coefs, groups, laplacians, mask)[0]

    def field_fwd(u, coefs, groups, laplacians, mask):
        du, saved = forward(u, coefs, groups, laplacians, mask)
        return du, (u, coefs, groups, laplacians, mask, saved)

    def field_bwd(residuals, cotangent):
        u, coefs, groups, laplacians, mask, saved = residuals
        bmm = lambda spec, *operands: _backward_product(config, spec, *operands)  # noqa: E731
        batch, _, width = u.shape
        diffusion, alpha, beta = coefs[0], coefs[1], coefs[2]
        # materialised once (left to itself XLA recomputes it in each of its consumers, at a pass over (B, N, r) each)
        g = jax.lax.optimization_barrier(cotangent * mask[:, :, None].astype(cotangent.dtype))
        u_bar = jnp.zeros_like(u)
        coef_bars = [jnp.zeros((), coefs.dtype)] * 3
        group_bars = {}
        laplacian_bar = None
        mixing_bar = None
        if "diffusion" in on or "attention" in on:  # du += M·u
            mixing = diffusion * laplacians if "diffusion" in on else None
            if "attention" in on:
                mixing = alpha * saved["mean_map"] if mixing is None else mixing + alpha * saved["mean_map"]
            mixing_bar = bmm("bir,bjr->bij", g, u)  # dM = g·uᵀ
            u_bar = u_bar + bmm("bij,bir->bjr", mixing, g)  # Mᵀ·g
            if "diffusion" in on:
                coef_bars[0] = jnp.sum(mixing_bar * laplacians)
                laplacian_bar = diffusion * mixing_bar
        if "attention" in on:
            theta, value = groups["kernel"], groups["value"]
            attention, q, k, z, low = (saved[name] for name in ("attention", "q", "k", "z", "low"))
            coef_bars[1] = jnp.sum(mixing_bar * saved["mean_map"]) + jnp.sum(g * saved["part"])
            u_bar = u_bar - alpha * g  # the term's −u
            # the value path: part = Σ_h A_h z_h U_h / H with z_h = u V_h (α scales the small results, not g)
            low_bar = (alpha / heads) * bmm("bir,hvr->bhiv", g, value["up"])  # (B, H, N, v)
            up_bar = (alpha / heads) * _rows_product(config, low.transpose(1, 3, 0, 2), g)  # (H, v, r)
            # z̄_h = A_hᵀ·ō_h, computed transposed (ō_hᵀ·A_h: the maps' rows are contracted where they lie, no
            # transposed pass over the maps)
            z_bar_t = _transposed_product(config, low_bar, attention)  # (B, H, v, N)
            down_bar = _rows_product(config, z_bar_t.transpose(1, 2, 0, 3), u).transpose(0, 2, 1)  # (H, r, v)
            u_bar = u_bar + bmm("bhvn,hrv->bnr", z_bar_t, value["down"])
            # the maps' cotangent: the mixing's (α/H)·dM on every head plus the value path's rank-v outer product
            maps_bar = bmm("bhiv,bjhv->bhij", low_bar, z) + (alpha / heads) * mixing_bar[:, None]
            # the softmax: dS = A ⊙ (dA − rowsum(dA ⊙ A))
            logits_bar = attention * (maps_bar - jnp.sum(maps_bar * attention, axis=-1, keepdims=True))
            q_bar = bmm("bhij,bhjk->bhik", logits_bar, k)
            k_bar = _transposed_product(config, q, logits_bar).swapaxes(-1, -2)  # dSᵀ·q as (qᵀ·dS)ᵀ, as z̄ above
            query_bias_bar = scale * q_bar.sum((0, 2))
            weights = theta["position_bias"]
            if design is not None:  # dS summed over the batch as a product with ones (a reduction over the
                # leading axis is several times slower on a CPU), then contracted with the design
                summed = jnp.ones((batch,), logits_bar.dtype) @ logits_bar.reshape(batch, heads * n * n)
                position_bar = summed.reshape(heads, n * n) @ design
            elif config.position_family == "none":
                position_bar = jnp.zeros_like(weights)
            else:  # a design too large to keep: the gather's transpose on the batch's summed dS
                position_bar = jax.vjp(lambda w: pde.position_bias(w, config, n), weights)[1](logits_bar.sum(0))[0]
            # queries and keys came from one (B·N, r) × (r, 2·H·k) product: so do their gradients
            qk_bar = jnp.concatenate([q_bar, k_bar], axis=-1).transpose(0, 2, 1, 3).reshape(batch, n, -1)
            matrix_bar = bmm("bnr,bnc->rc", saved["x"], qk_bar).reshape(width, heads, 2 * rank).transpose(1, 0, 2)
            x_bar = bmm("bnc,rc->bnr", qk_bar, saved["matrix"])
            u_bar = u_bar + jax.vjp(lambda v: pde.normalise_state(v, config.state_norm), u)[1](x_bar)[0]
            group_bars["kernel"] = {"query": scale * matrix_bar[..., :rank], "key": matrix_bar[..., rank:],
                                    "query_bias": query_bias_bar, "position_bias": position_bar.astype(weights.dtype)}
            group_bars["value"] = {"down": down_bar, "up": up_bar}
        if "residual" in on:
            p = groups["residual"]
            coef_bars[2] = jnp.sum(g * saved["out"])
            hidden_bar = beta * bmm("bnr,mr->bnm", g, p["w2"])
            pre_bar = jax.vjp(jax.nn.gelu, saved["pre"])[1](hidden_bar)[0]
            normed_bar = bmm("bnm,rm->bnr", pre_bar, p["w1"])
            u_bar = u_bar + jax.vjp(lambda v: pde.normalise_state(v, config.residual_norm), u)[1](normed_bar)[0]
            group_bars["residual"] = {
                "w1": _rows_product(config, pre_bar.transpose(2, 0, 1), saved["normed"]).T, "b1": pre_bar.sum((0, 1)),
                "w2": beta * _rows_product(config, saved["hidden"].transpose(2, 0, 1), g), "b2": beta * g.sum((0, 1))}
        if laplacian_bar is None:
            laplacian_bar = jnp.zeros_like(laplacians)
        return u_bar, jnp.stack(coef_bars), group_bars, laplacian_bar, None

    field.defvjp(field_fwd, field_bwd)
    return field

