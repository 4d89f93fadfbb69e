"""The attention-PDE: token states ``u(t) ∈ R^{N×r}`` evolving in depth-time ``t ∈ [0, L]``,

    du/dt = D(t)·Δu + α(t)·(Attn_θ(t, u)·u·W_v − u) + β(t)·R_θ(u),

with ``Δ`` the Laplacian of the token geometry (`pdeflow.pde.geometry`), ``Attn_θ`` a multi-head softmax kernel
with low-rank query/key maps and a relative-position bias, ``W_v`` per head the identity plus a low-rank map (so at
initialisation the attention term is the random-walk Laplacian ``(A − I)u`` of the attention graph), and
``R_θ`` a token-wise MLP. ``D = softplus(·) ≥ 0`` keeps the diffusion well posed; ``α`` and ``β`` are free.
The query/key maps, the position bias and the coefficients vary smoothly in ``t`` (`pdeflow.pde.basis`).
Each term (its coefficient, mixing operator, pointwise part and parameters) is a `pdeflow.pde.terms.Term`,
looked up in `pdeflow.pde.terms.REGISTRY`.

The surrogate's attention map for transformer block ``l`` (0-based) is the kernel at ``t = l`` evaluated on
``u(l)``, the state entering that block, mirroring ``Trace.attention[l]`` computed from ``Trace.hidden[l]``.
``u(0) = hidden[0] · P`` with a learned projection ``P`` (``d → r``).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pdeflow.models import relative_position
from pdeflow.pde import basis, low_precision, terms
from pdeflow.pde.geometry import ChainGeometry, TokenGeometry, geometry_fields, geometry_of
from pdeflow.pde.solve import SolverConfig, solve
from pdeflow.validation import check_finite_numbers

# the built-in terms, in registry order (`pdeflow.pde.terms.term_names()` also lists terms registered later)
TERMS = terms.term_names()
STATE_NORMS = ("rms", "layer", "none")
# parameter groups that may vary in t besides the kernel and the coefficients (`Term.varying_groups`)
VARYING = tuple(group for term in terms.REGISTRY.values() for group in term.varying_groups)
COMPUTE_DTYPES = ("float32", "bfloat16")
FIELD_BACKWARDS = ("autodiff", "custom")
DEPTH_TIMES = ("smooth", "blockwise")
SPLITTINGS = ("none", "lie")
POSITION_FAMILIES = ("offsets",) + tuple(f for f in relative_position.RPE_FAMILIES if f != "table")


@dataclasses.dataclass(frozen=True)
class SurrogateConfig:
    """Shape of the attention-PDE surrogate.

    Attributes:
        num_layers: L, the transformer depth; the PDE runs over ``t ∈ [0, L]``.
        num_heads: H, heads of the kernel (matched to the transformer's).
        model_dim: d, width of the transformer's hidden states.
        width: r, width of the PDE state (``u(0) = hidden[0] · P``, ``P ∈ R^{d×r}``).
        key_dim: rank of each head's query and key maps.
        value_rank: rank of each head's value correction ``W_v = I + V U``.
        mlp_width: hidden width of the residual MLP ``R_θ``.
        num_knots: K, knots of the smooth-in-t basis: ``K ≤ L`` (evenly spaced over ``[0, L − 1]``; ``K = L``
            puts one at each block's time ``t = l``) or ``K = m·L`` (``m`` per unit interval, at ``t = l + i/m``).
        basis_width: standard deviation of the basis's Gaussians, in knot spacings (`pdeflow.pde.basis`). At
            the default 1/2 a quantity at ``t = k`` is about 0.8 of knot ``k``'s value and 0.1 of each
            neighbour's; at 1/4 it is knot ``k``'s alone to 3e-4, and the change from one knot to the next is
            concentrated half-way between them.
        state_norm: how the state is normalised token by token before the query/key maps read it: ``"rms"``
            (divide by the root mean square over the ``r`` components), ``"layer"``
            (subtract the mean, then divide by the standard deviation: a LayerNorm without gain and bias, which
            the maps absorb; what a pre-LayerNorm transformer's blocks see) or ``"none"`` (the state as it is:
            what a post-LayerNorm transformer such as BERT reads, its states being LayerNorm outputs already).
        residual_norm: the same for the residual MLP's input (a transformer's feed-forward network reads a
            LayerNorm's output: ``"layer"``).
        varying: parameter groups that vary in depth-time on the knots, like the kernel and the coefficients,
            instead of one set shared by every ``t``: ``"value"`` (each head's value correction) and
            ``"residual"`` (the residual MLP). Each multiplies that group's parameter count by ``K``.
        max_distance: relative positions are clipped to ``±max_distance`` (per axis on a patch grid) for the
            position bias.
        position_family: the form of each head's position bias. ``"offsets"``: a free value per clipped
            offset (signed, so left and right differ; on a grid per ``(Δrow, Δcolumn)``). The others are the
            relative-position families of `pdeflow.models.relative_position`, functions of the distance
            ``|i − j|`` on a chain: ``"none"``; ``"linear"`` ``−p·δ`` (exponential decay); ``"log"``
            ``−p·log(1 + δ)`` (power-law decay); ``"t5"`` a value per T5 bucket (``position_buckets`` buckets up
            to ``max_distance``). Slopes ``p`` start at 0 and, like every kernel parameter, vary in ``t``.
        position_buckets: buckets of the ``"t5"`` family.
        causal: keys after the query are masked out (fitting a causal model); on a token chain only.
        compute_dtype: the dtype of the vector field's matrix products. ``"float32"`` (default) or ``"bfloat16"``:
            operands rounded to bfloat16, products accumulated in float32 (tensor cores on a GPU, AMX on an Intel
            CPU); the backward's products too, with the cotangent rounded to bfloat16. The state,
            the softmax, the coefficients and the solver stay in float32 either way; bfloat16 keeps about 3
            significant digits per product, so expect attention maps within about 1e-2 of float32's.
        depth_time: how the parameters that vary in depth-time (kernel, coefficients, the ``varying`` groups) change
            between blocks. ``"smooth"`` (default): along the Gaussian basis, so half-way through ``[l, l+1]`` the
            dynamics use a blend of knots ``l`` and ``l+1`` (and the stage at ``t = l+1`` of the interval's last
            step uses block ``l+1``'s). ``"blockwise"``: held at their value at ``t = l`` over the whole interval
            ``[l, l+1]``, as block ``l``'s weights alone take the transformer from ``hidden[l]`` to
            ``hidden[l+1]``; the solve runs interval by interval (`trajectory`), so no step crosses the jump at an
            integer time, and a reading at any ``t`` takes ``⌊t⌋``'s parameters (`parameter_time`); the solver's
            ``max_steps`` then bounds each interval's solve. Needs at most one knot per block (the parameters are
            only read at ``t = 0, …, L − 1``).
        held_maps: the attention term's maps over the interval ``[l, l+1]`` are the kernel's on the state at
            ``t = l``, ``Attn_θ(l, u(l))``, computed once at the interval's start and held while the state moves
            (as block ``l``'s attention reads its input once), instead of the kernel's on the current state at
            every stage (False). Needs ``depth_time="blockwise"`` (the solve runs interval by interval) and
            ``field_backward="autodiff"``. The maps compared with block ``l``'s are ``Attn_θ(l, u(l))`` either
            way; the field called without maps (`batch_vector_field` with three args) reads them off ``u``.
        splitting: how the terms share each unit interval. ``"none"`` (default): all at once, one field.
            ``"lie"`` (Lie–Trotter splitting): the interval's token-mixing terms (diffusion and attention, the
            terms with `pdeflow.pde.terms.Term.mixes`) are solved over a unit of time first, then its pointwise
            terms (the residual MLP) over another, from where the first left the state, as block ``l``'s
            attention comes before its feed-forward network; with the same coefficients this is the
            simultaneous flow to first order in them, and costs the same field evaluations (each phase
            evaluates only its terms). A state saved inside ``[l, l+1]`` lies on the first phase in the
            interval's first half and on the second in its second half. Needs ``depth_time="blockwise"``.
        field_backward: how `batch_vector_field` is differentiated: ``"autodiff"`` (default; JAX's VJP of the
            field) or ``"custom"`` (`pdeflow.pde.field_backward`: the same values with a hand-written,
            flash-attention-style backward; the same gradients to float32 round-off; so are the maps read off
            the states at the layer times, `batch_log_maps_at`). ``"custom"`` covers the built-in terms only (a
            config that switches on a term registered later is refused).
        terms: which terms of the right-hand side are on (an ablation switches one off): names in
            `pdeflow.pde.terms.REGISTRY`.
        grid: the token grid the Laplacian and the position bias live on (`geometry`). ``()`` (text): the tokens form a
            chain ``0 − 1 − … − N−1``. ``(h, w)`` (images): after ``prefix_tokens`` tokens come ``h·w`` patches
            in row-major order on an ``h × w`` grid with 4-neighbour diffusion and Neumann boundaries
            (`pdeflow.pde.grid.patch_grid_laplacian`) and a 2-D relative-position bias ``(Δrow, Δcolumn)``.
        prefix_tokens: tokens before the patch grid (a ViT's class token). They are **excluded from
            diffusion** (no grid edges: their rows and columns of Δ are zero, so diffusion neither feeds nor
            drains them), take part in attention and the residual MLP like any token, and have position-bias
            entries of their own (prefix query, prefix key, prefix to prefix). Only with a ``grid``.
    """

    num_layers: int = 6
    num_heads: int = 12
    model_dim: int = 384
    width: int = 64
    key_dim: int = 16
    value_rank: int = 4
    mlp_width: int = 64
    num_knots: int = 6
    basis_width: float = 0.5
    state_norm: str = "rms"
    residual_norm: str = "rms"
    varying: tuple[str, ...] = ()
    max_distance: int = 16
    terms: tuple[str, ...] = TERMS
    grid: tuple[int, ...] = ()
    prefix_tokens: int = 0
    position_family: str = "offsets"
    position_buckets: int = 32
    causal: bool = False
    compute_dtype: str = "float32"
    field_backward: str = "autodiff"
    depth_time: str = "smooth"
    held_maps: bool = False
    splitting: str = "none"

    def __post_init__(self):
        check_finite_numbers(self)
        object.__setattr__(self, "terms", tuple(self.terms))
        object.__setattr__(self, "varying", tuple(self.varying))
        object.__setattr__(self, "grid", tuple(int(g) for g in self.grid))
        if self.grid and (len(self.grid) != 2 or min(self.grid) < 1):
            raise ValueError(f"grid must be () for a token chain or (height, width) of a patch grid; got {self.grid}.")
        if self.prefix_tokens < 0 or (self.prefix_tokens and not self.grid):
            raise ValueError(f"prefix_tokens ({self.prefix_tokens}) must be >= 0 and needs a patch grid (grid=(h, w)); "
                             "on a token chain every token is on the chain.")
        geometry_of(self.grid, self.prefix_tokens, self.causal)  # validates the combination
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"unknown compute_dtype {self.compute_dtype!r}; choose from {COMPUTE_DTYPES}.")
        if self.field_backward not in FIELD_BACKWARDS:
            raise ValueError(f"unknown field_backward {self.field_backward!r}; choose from {FIELD_BACKWARDS}.")
        if self.depth_time not in DEPTH_TIMES:
            raise ValueError(f"unknown depth_time {self.depth_time!r}; choose from {DEPTH_TIMES}.")
        if self.depth_time == "blockwise" and self.num_knots > self.num_layers:
            raise ValueError(f"depth_time='blockwise' reads the parameters at t = 0, ..., L - 1 only, so more knots "
                             f"than blocks ({self.num_knots} > {self.num_layers}) add nothing; set num_knots <= "
                             f"{self.num_layers}.")
        if self.held_maps and (self.depth_time != "blockwise" or self.field_backward != "autodiff"):
            raise ValueError("held_maps holds each interval's attention maps at their value at its start, so it needs "
                             "the interval-by-interval solve and the field's autodiff backward: set "
                             f"depth_time='blockwise' and field_backward='autodiff' (got {self.depth_time!r}, "
                             f"{self.field_backward!r}), or held_maps=False.")
        if self.splitting not in SPLITTINGS:
            raise ValueError(f"unknown splitting {self.splitting!r}; choose from {SPLITTINGS}.")
        if self.splitting != "none" and self.depth_time != "blockwise":
            raise ValueError(f"splitting={self.splitting!r} solves each unit interval in phases, so it needs the "
                             f"interval-by-interval solve: set depth_time='blockwise' (got {self.depth_time!r}), "
                             "or splitting='none'.")
        if self.position_family not in POSITION_FAMILIES:
            raise ValueError(f"unknown position_family {self.position_family!r}; choose from {POSITION_FAMILIES}.")
        if self.position_family != "offsets" and self.grid:
            raise ValueError(f"position_family {self.position_family!r} is a function of distance on a token "
                             "chain; a patch grid takes the default 'offsets'.")
        if self.position_family == "t5":
            relative_position.t5_buckets(0, self.position_buckets, self.max_distance)  # validates the settings
        terms.check_terms(self.terms)
        for name in ("state_norm", "residual_norm"):
            if getattr(self, name) not in STATE_NORMS:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; choose from {STATE_NORMS}.")
        varying = varying_groups()
        if set(self.varying) - set(varying) or len(set(self.varying)) != len(self.varying):
            raise ValueError(f"varying must name distinct groups from {list(varying)}; got {list(self.varying)}.")
        if not 0.05 <= self.basis_width <= 4:
            raise ValueError(f"basis_width must be in [0.05, 4] knot spacings; got {self.basis_width}.")
        if not (1 <= self.num_knots <= self.num_layers or self.num_knots % self.num_layers == 0):
            raise ValueError(f"num_knots must be in [1, num_layers={self.num_layers}] or a multiple of num_layers "
                             f"(knots within each interval); got {self.num_knots}.")
        for name in ("num_layers", "num_heads", "model_dim", "width", "key_dim", "value_rank", "mlp_width",
                     "max_distance"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}.")

    @property
    def geometry(self) -> TokenGeometry:
        """The token geometry of ``grid``, ``prefix_tokens`` and ``causal``: a
        `pdeflow.pde.geometry.ChainGeometry` for ``grid=()``, else a `pdeflow.pde.geometry.PatchGridGeometry`."""
        return geometry_of(self.grid, self.prefix_tokens, self.causal)

    def with_geometry(self, geometry: TokenGeometry) -> SurrogateConfig:
        """The same surrogate on another token geometry (sets ``grid``, ``prefix_tokens`` and ``causal``)."""
        return dataclasses.replace(self, **geometry_fields(geometry))

    @property
    def num_tokens(self) -> int | None:
        """N fixed by a patch grid (``prefix_tokens + h·w``); None for a chain, whose length is free."""
        return self.geometry.num_tokens

    def check_token_count(self, n: int, inputs: str = "the inputs") -> None:
        """Raise ``ValueError`` if ``n`` tokens do not fit the patch grid (a chain takes any length)."""
        self.geometry.check_token_count(n, inputs)

    @property
    def position_range(self) -> int:
        """R: offsets are clipped to ``±R`` (on a grid, never beyond the grid's own extent)."""
        return self.geometry.position_range(self.max_distance)

    @property
    def num_position_buckets(self) -> int:
        """Entries of each head's position bias: ``2R+1`` on a chain; ``(2R+1)² + 3`` on a grid (the 3 for
        prefix query, prefix key, and prefix to prefix); for the distance families their weight count
        (`pdeflow.models.relative_position.num_weights`, at least 1)."""
        if self.position_family != "offsets":
            return max(1, relative_position.num_weights(self.position_family, self.position_buckets,
                                                        self.max_distance))
        return self.geometry.num_position_buckets(self.max_distance)

    def without(self, term: str) -> SurrogateConfig:
        """The same surrogate with one right-hand-side term switched off (an ablation)."""
        terms.get_term(term)  # a ValueError for a name that is no term
        return dataclasses.replace(self, terms=tuple(t for t in self.terms if t != term))

    def ablations(self) -> tuple[str, ...]:
        """The terms that are on, in registry order: the ablations `without` can make."""
        return tuple(term.name for term in terms.active_terms(self))

    @property
    def knots(self) -> np.ndarray:
        return basis.knot_times(self.num_knots, float(self.num_layers))


def init_surrogate(key: Array, config: SurrogateConfig, hidden0: Array | None = None) -> dict:
    """Initial parameters. With ``hidden0`` (``(..., d)`` embedding outputs of training inputs) the projection
    ``P`` starts at their top-``r`` principal directions, else at a random orthonormal map."""
    c = config
    registry = tuple(terms.REGISTRY.values())
    # key 0 for the projection, then each term's keys in registry order (threefry keys from a split do not
    # depend on how many are split, so a term registered later leaves the others' initial values alone)
    keys = jax.random.split(key, 1 + sum(term.num_keys for term in registry))
    K, r = c.num_knots, c.width
    if hidden0 is not None:
        flat = np.asarray(hidden0, np.float64).reshape(-1, c.model_dim)
        _, _, vt = np.linalg.svd(flat - flat.mean(0), full_matrices=False)
        projection = jnp.asarray(vt[: min(r, c.model_dim)].T, jnp.float32)
        if r > projection.shape[1]:
            projection = jnp.pad(projection, ((0, 0), (0, r - projection.shape[1])))
    elif r <= c.model_dim:  # orthonormal columns
        projection = jnp.linalg.qr(jax.random.normal(keys[0], (c.model_dim, c.model_dim)))[0][:, :r]
    else:  # wider than d: orthonormal rows
        projection = jnp.linalg.qr(jax.random.normal(keys[0], (r, c.model_dim)))[0].T
    params = {
        "projection": projection,
        "readout": {"kernel": projection.T, "bias": jnp.zeros((c.model_dim,))},
        # raw coefficients per knot, one column per term (softplus⁻¹(D=0.1), α = 1, β = 0.1)
        "coefficients": jnp.tile(jnp.array([term.raw_coefficient(term.initial_value) for term in registry]), (K, 1)),
    }
    first = 1
    for term in registry:  # every registered term's groups, switched on or not: ablations share the parameters
        if term.init is not None:
            params.update(term.init(keys[first:first + term.num_keys], c))
        first += term.num_keys
    for group in c.varying:  # every knot starts from the same values: at initialisation nothing varies in t
        params[group] = jax.tree_util.tree_map(lambda x: jnp.tile(x[None], (K,) + (1,) * x.ndim), params[group])
    return params



def parameter_shapes(config: SurrogateConfig) -> dict:
    """The shapes of `init_surrogate`'s parameters (``jax.ShapeDtypeStruct`` leaves, nothing allocated: an absurd
    config costs nothing to inspect)."""
    return jax.eval_shape(lambda key: init_surrogate(key, config), jax.ShapeDtypeStruct((2,), jnp.uint32))

def varying_groups() -> tuple[str, ...]:
    """Parameter groups that `SurrogateConfig.varying` may name: every registered term's `Term.varying_groups`."""
    return tuple(group for term in terms.REGISTRY.values() for group in term.varying_groups)


def knot_groups() -> tuple[str, ...]:
    """Parameter groups that always vary in t: the coefficients and every registered term's `Term.knot_groups`."""
    return ("coefficients",) + tuple(group for term in terms.REGISTRY.values() for group in term.knot_groups)


def parameter_time(config: SurrogateConfig, t: Array) -> Array:
    """The depth-time at which the parameters are read at time ``t``: ``t`` itself (``depth_time="smooth"``), or
    the start of the interval it lies in, ``min(⌊t⌋, L − 1)`` (``"blockwise"``; the state at ``t = l`` enters
    block ``l``)."""
    if config.depth_time == "smooth":
        return t
    t = jnp.asarray(t)
    dtype = t.dtype if jnp.issubdtype(t.dtype, jnp.floating) else jnp.float32
    return jnp.clip(jnp.floor(t.astype(dtype) + 1e-4), 0, config.num_layers - 1)


def at_time(params: dict, config: SurrogateConfig, group: str, t: Array):
    """The parameter group ``group`` (``"kernel"``, ``"coefficients"``, or one of `varying_groups`) at time ``t``
    (`parameter_time`): contracted with the basis if it varies in t, as stored otherwise."""
    if group in knot_groups() or group in config.varying:
        return basis.evaluate(params[group], parameter_time(config, t), jnp.asarray(config.knots),
                              config.basis_width)
    return params[group]


def coefficients(params: dict, config: SurrogateConfig, t: Array) -> Array:
    """``(T,)`` coefficients of the registered terms in registry order (`pdeflow.pde.terms.REGISTRY`): for the
    built-in terms ``[D(t), α(t), β(t)]``. Switched-off terms read as zero."""
    raw = at_time(params, config, "coefficients", t)
    registry = terms.REGISTRY.values()
    on = jnp.array([term.name in config.terms for term in registry], raw.dtype)
    return jnp.stack([term.coefficient(raw[i]) for i, term in enumerate(registry)]) * on


def coefficient_curves(params: dict, config: SurrogateConfig, times) -> dict:
    """``{"t": times, <Term.coefficient_key>: values, …}``: every registered term's coefficient at ``times``
    ``(T,)`` as lists (``{"t", "D", "alpha", "beta"}`` for the built-in terms)."""
    times = np.asarray(times, np.float32)
    values = np.asarray(jax.vmap(lambda t: coefficients(params, config, t))(times))
    curves = {"t": times.tolist()}
    for i, term in enumerate(terms.REGISTRY.values()):
        curves[term.coefficient_key] = values[:, i].tolist()
    return curves


def normalise_state(u: Array, norm: str) -> Array:
    """``u (..., r)`` normalised token by token: ``norm`` is one of ``STATE_NORMS``."""
    if norm == "none":
        return u
    if norm == "layer":
        u = u - jnp.mean(u, axis=-1, keepdims=True)
    return u * jax.lax.rsqrt(jnp.mean(u * u, axis=-1, keepdims=True) + 1e-6)


def _product(config: SurrogateConfig, spec: str, x: Array, y: Array) -> Array:
    """``jnp.einsum(spec, x, y)`` with the operands in ``config.compute_dtype`` and a float32 result; in a low
    precision its backward's products are in that dtype too (`pdeflow.pde.low_precision`)."""
    if config.compute_dtype == "float32":
        return jnp.einsum(spec, x, y)
    return low_precision.product(spec, x, y, config.compute_dtype)


def value_path_product(config: SurrogateConfig, maps: Array, down: Array) -> Array:
    """Every head's maps times its values, ``o_h = A_h·z_h``: ``maps (H, N, N)``, ``down (N, H, v)`` (token-major,
    as the down-projection's product leaves it) -> ``(H, N, v)``, or each with a leading batch axis, in
    ``config.compute_dtype`` (`_product`).

    The values are first laid out ``(..., H, v, N)``, so that the product contracts both operands on their minor
    axis; the optimisation barrier keeps XLA from folding that small transpose back into the product. With the
    token-major values XLA:CPU ran the product (a matrix times v = 4 columns per head) at a third of the speed:
    0.64–0.72 against 0.25 ms at B, H, N, v = 32, 12, 48, 4, one field evaluation being about 3 ms."""
    values = jax.lax.optimization_barrier(jnp.moveaxis(down, -3, -1))  # (..., H, v, N)
    lead = "b" * (maps.ndim - 3)  # a batch axis, or none (one input, as under vmap)
    spec = f"{lead}hij,{lead}hvj->{lead}hiv"
    return _product(config, spec, maps, values)


def heads_matrix(maps: Array) -> Array:
    """Per-head maps ``(H, r, c)`` as one ``(r, H·c)`` matrix, head ``h``'s columns at ``h·c … (h+1)·c``: every head's
    product with a state ``(N, r)`` in one ``(N, r) × (r, H·c)`` product, its result read as ``(N, H, c)``."""
    heads, width, columns = maps.shape
    return maps.transpose(1, 0, 2).reshape(width, heads * columns)


def relative_positions(n: int, max_distance: int) -> np.ndarray:
    """``(N, N)`` indices ``clip(j − i, −R, R) + R`` into the position bias of a token chain."""
    return ChainGeometry().position_index(n, max_distance)


def position_index(config: SurrogateConfig, n: int) -> np.ndarray:
    """``(N, N)`` indices into each head's position bias for query ``i`` and key ``j``: the config geometry's
    `pdeflow.pde.geometry.TokenGeometry.position_index`.

    On a chain: ``clip(j − i, −R, R) + R``. On an ``h × w`` grid after ``P`` prefix tokens: the clipped
    offsets ``(Δrow, Δcolumn)`` between patches index a ``(2R+1) × (2R+1)`` table; a prefix query, a prefix key
    and a prefix-to-prefix pair each have one entry after it.
    """
    return config.geometry.position_index(n, config.max_distance)


def attention_logits(params: dict, config: SurrogateConfig, t: Array, u: Array, mask: Array) -> Array:
    """The kernel's logits at time ``t`` on states ``u`` ``(N, r)``: ``(H, N, N)``, with padded keys (and, if
    causal, later keys) lowered by 1e9."""
    theta = at_time(params, config, "kernel", t)
    heads, rank = config.num_heads, config.key_dim
    # one matmul for queries and keys of all heads: (N, r) @ (r, 2·H·k); the logits' 1/√k scales the (small)
    # query map rather than the (H, N, N) logits
    scale = 1.0 / math.sqrt(rank)
    maps = jnp.concatenate([theta["query"] * scale, theta["key"]], axis=-1)  # (H, r, 2k)
    qk = _product(config, "nr,rc->nc", normalise_state(u, config.state_norm), heads_matrix(maps))
    qk = qk.reshape(-1, heads, 2 * rank)
    q = qk[..., :rank].transpose(1, 0, 2) + scale * theta["query_bias"][:, None, :]
    k = qk[..., rank:].transpose(1, 0, 2)
    logits = _product(config, "hik,hjk->hij", q, k)
    logits = add_position_bias(logits, theta["position_bias"], config)
    return logits + key_mask_bias(config, mask)[None]


def key_mask_bias(config: SurrogateConfig, mask: Array) -> Array:
    """What the logits of queries over keys get added for the keys they may not see: −1e9 on padded keys (``mask``
    ``(..., N)`` false) and, on a causal chain, on later keys; 0 elsewhere. ``(..., 1, N)``, or ``(..., N, N)`` with
    an order over the keys.

    Masked keys get −1e9 added rather than selected: the same maps, and on a CPU a faster forward pass (the
    selection materialises a ``(B, H, N, N)`` fill of the batch)."""
    allowed = mask[..., None, :]
    order = config.geometry.allowed_keys(mask.shape[-1])  # a causal chain's lower triangle, or None
    if order is not None:
        allowed = allowed & jnp.asarray(order)
    return jnp.where(allowed, 0.0, -1e9)


def position_bias(weights: Array, config: SurrogateConfig, n: int) -> Array:
    """``(H, N, N)`` (or broadcastable) position bias of every head from its weights ``(H, buckets)``."""
    if config.position_family == "offsets":
        return weights[:, position_index(config, n)]
    return relative_position.relative_bias(config.position_family, weights, n, config.position_buckets,
                                           config.max_distance)


# Largest position design (N² · weights entries) kept as a constant for `add_position_bias`'s backward pass;
# longer inputs fall back to differentiating the gather (a scatter).
_DESIGN_LIMIT = 1 << 22


def position_design(config: SurrogateConfig, n: int) -> np.ndarray | None:
    """``(N·N, C)`` float32 ``F`` with ``position_bias(weights) = (weights @ Fᵀ).reshape(H, N, N)``: the bias is
    linear in its ``C`` weights per head, so column ``c`` is the bias of a head whose weights are the unit vector
    ``e_c`` (a one-hot of the bucket for the table families, ``−δ`` or ``−log(1 + δ)`` for the parametric ones).
    None for ``"none"``, whose bias is zero."""
    if config.position_family == "none":
        return None
    units = np.eye(config.num_position_buckets, dtype=np.float32)  # one head per weight
    with jax.ensure_compile_time_eval():  # a constant, also when called while tracing
        bias = position_bias(units, config, n)
    return np.asarray(bias, np.float32).reshape(len(units), n * n).T


def kept_position_design(config: SurrogateConfig, n: int) -> np.ndarray | None:
    """`position_design` for ``n`` tokens where it is kept as a constant (at most `_DESIGN_LIMIT` entries), else
    None (also for ``"none"``): the backward passes then differentiate the gather instead."""
    if config.position_family == "none" or n * n * config.num_position_buckets > _DESIGN_LIMIT:
        return None
    return position_design(config, n)


def add_position_bias(logits: Array, weights: Array, config: SurrogateConfig) -> Array:
    """``logits (H, N, N) + position_bias(weights)``, differentiated as a contraction with the design
    (`position_design`). Under ``vmap`` over a batch, autodiff of a bias shared by the batch would first sum
    the ``(B, H, N, N)`` cotangent over the batch (a slow reduction on a CPU); here each input's cotangent
    meets the design in one matrix product and only the ``(B, H, C)`` result is summed. Same values and
    gradients as ``logits + position_bias(weights, config, N)``."""
    n = logits.shape[-1]
    design = kept_position_design(config, n)
    if design is None:
        return logits + position_bias(weights, config, n)
    heads = logits.shape[0]

    @jax.custom_vjp
    def biased(logits, weights):
        return logits + (weights @ design.T).reshape(heads, n, n)

    def forward(logits, weights):
        return biased(logits, weights), None

    def backward(_, cotangent):
        return cotangent, cotangent.reshape(heads, n * n) @ design

    biased.defvjp(forward, backward)
    return biased(logits, weights)


def attention_kernel(params: dict, config: SurrogateConfig, t: Array, u: Array, mask: Array) -> Array:
    """``Attn_θ(t, u)``: ``(H, N, N)`` row-stochastic maps over the real keys."""
    return jax.nn.softmax(attention_logits(params, config, t, u, mask), axis=-1)


def batch_attention_kernel(params: dict, config: SurrogateConfig, t: Array, u: Array, mask: Array) -> Array:
    """`attention_kernel` over a batch: ``u (B, N, r)``, ``mask (B, N)`` -> ``(B, H, N, N)``."""
    return jax.vmap(lambda ui, mi: attention_kernel(params, config, t, ui, mi))(u, mask)


def vector_field(config: SurrogateConfig, t: Array, u: Array, args) -> Array:
    """``du/dt = Σ_terms c(t)·(M·u + f)`` for one input (`pdeflow.pde.terms`). ``args = (params, laplacian (N, N),
    mask (N,))``, or ``(params, laplacian, mask, maps (H, N, N))`` with the attention maps held (``held_maps``);
    padded tokens stay still.

    The terms are evaluated in registry order. Their token-mixing operators ``c·M`` are summed and act on ``u``
    in one ``(N, N)`` product, added right after the last term that mixes (`pdeflow.pde.terms.Term.mixes`); the
    pointwise parts ``c·f`` are added as they come."""
    params, laplacian, mask, *held = args
    coefs = coefficients(params, config, t)
    column = {name: i for i, name in enumerate(terms.REGISTRY)}
    active = terms.active_terms(config)
    inputs = terms.TermInputs(params, config, t, u, laplacian, mask, held[0] if held else None)
    last_mixing = max((i for i, term in enumerate(active) if term.mixes), default=-1)
    du = jnp.zeros_like(u)
    mixing = None
    for i, term in enumerate(active):  # each term evaluated in turn: the operations of the hand-written field
        part, c = term.parts(inputs), coefs[column[term.name]]
        if (part.mixing is not None) != term.mixes:
            raise ValueError(f"term {term.name!r} declares mixes={term.mixes} but its parts "
                             f"{'have no' if term.mixes else 'have a'} mixing operator; make them agree.")
        if part.mixing is not None:
            mixing = c * part.mixing if mixing is None else mixing + c * part.mixing
        if part.pointwise is not None:
            du = du + c * part.pointwise
        if i == last_mixing:
            du = du + _product(config, "ij,jr->ir", mixing, u)
    return du * mask[:, None].astype(u.dtype)


def initial_state(params: dict, hidden0: Array) -> Array:
    """``u(0) = hidden0 · P``: ``(N, d) -> (N, r)``."""
    return hidden0 @ params["projection"]


def readout(params: dict, states: Array) -> Array:
    """Map PDE states ``(..., r)`` back to the transformer's width ``(..., d)``."""
    return states @ params["readout"]["kernel"] + params["readout"]["bias"]


def batch_vector_field(config: SurrogateConfig, t: Array, u: Array, args) -> Array:
    """`vector_field` over a batch: ``u (B, N, r)``, ``args = (params, laplacians (B, N, N), mask (B, N))`` or with
    held maps ``(…, maps (B, H, N, N))``.
    Depth-time and parameters are shared, so the time basis is evaluated once per call. With
    ``config.field_backward == "custom"`` the same values come from `pdeflow.pde.field_backward.batch_field`, whose
    backward is written by hand."""
    if config.field_backward == "custom":
        from pdeflow.pde import field_backward  # it builds on this module's helpers

        return field_backward.batch_field(config, t, u, args)
    params, laplacians, mask, *held = args
    return jax.vmap(lambda ui, li, mi, *hi: vector_field(config, t, ui, (params, li, mi, *hi)))(u, laplacians, mask,
                                                                                               *held)


def trajectory(params: dict, config: SurrogateConfig, solver: SolverConfig, hidden0: Array, laplacians: Array,
               mask: Array, save_times=None):
    """Solve the PDE for a batch, as one ODE with shared steps (adaptive steps are controlled by the error of
    the whole batch); with ``depth_time="blockwise"`` one unit interval after another. ``hidden0 (B, N, d)``,
    ``laplacians (B, N, N)``, ``mask (B, N)``; ``save_times`` (numpy, in ``[0, L]``, starting at 0 and ending at L)
    default to ``0, 1, …, L``.

    Returns ``(states (T, B, N, r) at the save times, ok, num_steps)``.
    """
    states, _, ok, steps = trajectory_and_held_log_maps(params, config, solver, hidden0, laplacians, mask, save_times)
    return states, ok, steps


def trajectory_and_held_log_maps(params: dict, config: SurrogateConfig, solver: SolverConfig, hidden0: Array,
                                 laplacians: Array, mask: Array, save_times=None):
    """`trajectory`, and with ``held_maps`` the log maps held over each interval, ``(L, B, H, N, N)`` (the kernel
    at ``t = l`` on ``u(l)``: the maps compared with block ``l``'s, computed once for both); None otherwise.

    Returns ``(states, log_maps, ok, num_steps)``."""
    if save_times is None:
        save_times = np.arange(config.num_layers + 1, dtype=np.float32)  # static: known at trace time
    if config.depth_time == "blockwise":
        return _blockwise_trajectory(params, config, solver, initial_state(params, hidden0), laplacians, mask,
                                     save_times)
    field = lambda t, u, args: batch_vector_field(config, t, u, args)  # noqa: E731
    states, ok, steps = solve(field, initial_state(params, hidden0), (params, laplacians, mask),
                              float(config.num_layers), save_times, solver)
    return states, None, ok, steps


def _interval_field(config: SurrogateConfig, s: Array, u: Array, args) -> Array:
    """The field on the unit interval that starts at depth-time ``l`` (its own time ``s ∈ [0, 1]``), ``args =
    (params, laplacians, mask, l)`` (``held_maps``: ``(…, l, maps (B, H, N, N))``): at ``t = l + s``
    (``depth_time="smooth"``), or with the parameters held at ``t = l`` (``"blockwise"``: every stage of every step,
    the interval's end included, uses block ``l``'s)."""
    params, laplacians, mask, start, *held = args
    t = start.astype(u.dtype) if config.depth_time == "blockwise" else start.astype(u.dtype) + s
    return batch_vector_field(config, t, u, (params, laplacians, mask, *held))


def holds_maps(config: SurrogateConfig) -> bool:
    """Whether a solve of ``config`` holds each interval's attention maps (``held_maps`` with the attention term on)."""
    return config.held_maps and "attention" in config.terms


def interval_log_maps(params: dict, config: SurrogateConfig, start: Array, u: Array, mask: Array) -> Array:
    """The kernel's log maps at ``t = start`` on ``u (B, N, r)``, ``mask (B, N)``: ``(B, H, N, N)``; with
    ``held_maps`` their exponentials are the maps held over the interval that starts there, and they are the
    maps compared with block ``start``'s (`log_maps_at`, which forms those, at the one time ``start``)."""
    times = jnp.asarray(start).astype(u.dtype)[None]
    return jax.vmap(lambda ui, mi: log_maps_at(params, config, times, ui[None], mi)[0])(u, mask)


def interval_params(params: dict, config: SurrogateConfig, start: Array) -> tuple[dict, SurrogateConfig]:
    """``depth_time="blockwise"``: the parameters of the unit interval that starts at ``start``, and the config
    that reads them. Every group that varies in t (`knot_groups` and ``config.varying``) is contracted with the
    basis once, at ``t = start``, and kept with a knot axis of length 1, read by the same config with
    ``num_knots=1`` (whose one basis weight is 1): the same field, without contracting the K knots at every
    stage, and a backward whose solver loop carries the cotangents of one block's parameters, not of K knots."""
    if config.depth_time != "blockwise":
        raise ValueError(f"interval_params holds the parameters over a unit interval, which needs "
                         f"depth_time='blockwise'; got {config.depth_time!r}.")
    local = dict(params)
    for group in dict.fromkeys(knot_groups() + config.varying):
        if group in params:
            local[group] = jax.tree_util.tree_map(lambda x: x[None], at_time(params, config, group, start))
    return local, dataclasses.replace(config, num_knots=1)


def _interval_args(params: dict, config: SurrogateConfig, laplacians: Array, mask: Array, start: Array,
                   log_maps: Array | None) -> tuple:
    """The args of `_interval_field` for the interval that starts at ``start``; with ``held_maps`` (and the
    attention term on) the maps held over it, ``exp(log_maps)`` (`interval_log_maps` on its starting state)."""
    if not holds_maps(config):
        return params, laplacians, mask, start
    return params, laplacians, mask, start, jnp.exp(log_maps)


def interval_phases(config: SurrogateConfig) -> tuple[SurrogateConfig, ...]:
    """The configs a unit interval is solved with, one after the other: ``(config,)``, or with
    ``splitting="lie"`` the config with its token-mixing terms alone, then with its pointwise terms alone (a phase
    with no term switched on is left out)."""
    if config.splitting == "none":
        return (config,)
    active = terms.active_terms(config)
    phases = (tuple(term.name for term in active if term.mixes), tuple(term.name for term in active if not term.mixes))
    return tuple(dataclasses.replace(config, terms=names, splitting="none") for names in phases if names) or (config,)


def _solve_interval(params: dict, config: SurrogateConfig, solver: SolverConfig, u: Array, start: Array,
                    laplacians: Array, mask: Array, per_interval: int,
                    log_maps: Array | None = None) -> tuple[Array, Array, Array, Array | None]:
    """Solve the unit interval that starts at depth-time ``start`` from ``u (B, N, r)``, phase by phase
    (`interval_phases`), saving ``per_interval`` evenly spaced states after ``u`` (the last at its end); with
    ``depth_time="blockwise"`` on the interval's own parameters (`interval_params`). With ``held_maps`` the
    maps held over the interval are those of ``u``: from ``log_maps (B, H, N, N)`` if the caller has them, else
    computed here (`interval_log_maps`).

    Returns ``(states (per_interval, B, N, r), ok, num_steps, log_maps)`` (``log_maps``: the held maps' logs, or
    None without held maps)."""
    if config.depth_time == "blockwise":
        params, config = interval_params(params, config, start)
    if holds_maps(config) and log_maps is None:
        log_maps = interval_log_maps(params, config, start, u, mask)
    phases = interval_phases(config)
    if per_interval > 1 and per_interval % len(phases):
        raise ValueError(f"splitting={config.splitting!r} solves each unit interval in {len(phases)} phases, so a "
                         f"blockwise solve saves 1 or a multiple of {len(phases)} states per interval; got "
                         f"{per_interval}.")
    local = np.linspace(0.0, 1.0, max(1, per_interval // len(phases)) + 1).astype(np.float32)
    saved, ok, steps = [], jnp.asarray(True), jnp.asarray(0)
    for phase in phases:
        states, phase_ok, phase_steps = solve(functools.partial(_interval_field, phase), u,
                                              _interval_args(params, phase, laplacians, mask, start, log_maps), 1.0,
                                              local,
                                              solver)
        saved.append(states[1:])
        u, ok, steps = states[-1], ok & phase_ok, steps + phase_steps
    states = jnp.concatenate(saved) if len(saved) > 1 else saved[0]
    return states[-per_interval:], ok, steps, log_maps if holds_maps(config) else None


def _blockwise_trajectory(params: dict, config: SurrogateConfig, solver: SolverConfig, u0: Array,
                          laplacians: Array, mask: Array, save_times) -> tuple[Array, Array | None, Array, Array]:
    """`trajectory` for ``depth_time="blockwise"``: one solve per unit interval ``[l, l+1]`` (a ``lax.scan`` over
    ``l``; `_solve_interval`), each from the end of the one before, saving ``k`` evenly spaced states per interval.

    Returns ``(states, log_maps, ok, num_steps)``: ``log_maps (L, B, H, N, N)`` are the maps held over each
    interval (the kernel at ``t = l`` on ``u(l)``), or None without held maps."""
    L = config.num_layers
    save = np.asarray(save_times, np.float64)
    per_interval = (len(save) - 1) // L
    if per_interval < 1 or (len(save) - 1) % L or not np.allclose(save, np.linspace(0.0, L, L * per_interval + 1)):
        raise ValueError(f"depth_time='blockwise' solves interval by interval, so its save times must be evenly "
                         f"spaced from 0 to L = {L} with the same number in every unit interval (e.g. 0, 1, ..., "
                         f"{L}); got {save.tolist()}.")

    def one_interval(u, start):
        states, ok, steps, log_maps = _solve_interval(params, config, solver, u, start, laplacians, mask,
                                                      per_interval)
        return states[-1], (states, ok, steps, log_maps)

    _, (states, ok, steps, log_maps) = jax.lax.scan(one_interval, u0, jnp.arange(L, dtype=jnp.int32))
    states = jnp.concatenate([u0[None], states.reshape((L * per_interval,) + u0.shape)])
    return states, log_maps, jnp.all(ok), jnp.sum(steps)


def interval_ends(params: dict, config: SurrogateConfig, solver: SolverConfig, starts: Array, laplacians: Array,
                  mask: Array, log_maps: Array | None = None) -> tuple[Array, Array, Array]:
    """Multiple shooting: unit intervals ``[l, l+1]``, ``l = 0, …, T−1``, each solved from its own start, all at
    once (vmap). ``starts (T, B, N, d)`` are the hidden states entering blocks ``0..T−1`` (projected to
    ``u = start · P``), ``laplacians (B, N, N)``, ``mask (B, N)``; with ``held_maps``, ``log_maps (T, B, H, N, N)``
    (the kernel's at ``t = l`` on the projected starts, `interval_log_maps`) if the caller has them.

    Returns ``(ends (T, B, N, r), ok (T,), num_steps (T,))``: ``ends[l]`` is the state at ``t = l + 1`` of the
    solve started at ``t = l``."""
    def one(offset, start, maps):
        states, ok, steps, _ = _solve_interval(params, config, solver, initial_state(params, start), offset,
                                               laplacians, mask, 1, maps)
        return states[-1], ok, steps

    return jax.vmap(one)(jnp.arange(starts.shape[0], dtype=jnp.int32), starts, log_maps)


def log_maps_at(params: dict, config: SurrogateConfig, times: Array, states: Array, mask: Array) -> Array:
    """Log attention maps ``(T, H, N, N)`` of the kernel at ``times (T,)`` on ``states (T, N, r)``."""
    logits = jax.vmap(lambda t, u: attention_logits(params, config, t, u, mask))(times, states)
    return jax.nn.log_softmax(logits, axis=-1)


def attention_log_maps(params: dict, config: SurrogateConfig, states: Array, mask: Array) -> Array:
    """Log attention maps for every block: ``(L, H, N, N)`` from ``states (L+1, N, r)``."""
    return log_maps_at(params, config, jnp.arange(config.num_layers, dtype=states.dtype), states[:-1], mask)


def batch_log_maps_at(params: dict, config: SurrogateConfig, times: Array, states: Array, mask: Array) -> Array:
    """`log_maps_at` over a batch: ``times (T,)``, ``states (T, B, N, r)``, ``mask (B, N)`` -> ``(T, B, H, N, N)``.
    With ``config.field_backward == "custom"`` the same maps come from
    `pdeflow.pde.maps_backward.batch_log_maps_at`, whose backward is written by hand."""
    if config.field_backward == "custom":
        from pdeflow.pde import maps_backward  # it builds on this module's helpers

        return maps_backward.batch_log_maps_at(params, config, times, states, mask)
    return jax.vmap(lambda s, m: log_maps_at(params, config, times, s, m), in_axes=(1, 0), out_axes=1)(states, mask)


def batch_attention_log_maps(params: dict, config: SurrogateConfig, states: Array, mask: Array) -> Array:
    """Log attention maps for every block over a batch: ``(L, B, H, N, N)`` from ``states (L+1, B, N, r)``, ``mask
    (B, N)`` (`batch_log_maps_at` at ``t = 0 … L−1``)."""
    return batch_log_maps_at(params, config, jnp.arange(config.num_layers, dtype=states.dtype), states[:-1], mask)
