"""The right-hand-side terms of the attention-PDE, one `Term` each, and the registry they are looked up in.

Each term contributes ``c(t)·(M(t, u)·u + f(t, u))`` to ``du/dt``: a scalar coefficient ``c(t)`` (a raw value
per knot, mapped through softplus when the term must not change sign), an optional token-mixing operator
``M`` ``(N, N)`` and an optional pointwise part ``f`` ``(N, r)``. The vector field
(`pdeflow.pde.attention_pde.vector_field`) sums the active terms' ``c·M`` and applies the sum to ``u`` in one
``(N, N)`` product; the pointwise parts are added one by one.

    diffusion  D(t)·Δu                                        D = softplus(raw) ≥ 0
    attention  α(t)·(mean_h A_h·u + (Σ_h A_h·u·V_h·U_h)/H − u)   α free
    residual   β(t)·R_θ(u)                                    β free

Terms are evaluated in registry order, and the fused product is added right after the last term that mixes
(before the terms after it are evaluated), so the three built-in terms give the floating-point operations, and
the gradients, of the field as it was first written.

`REGISTRY` maps each name to its term, in the order of the columns of the ``"coefficients"`` parameter and of
`pdeflow.pde.attention_pde.coefficients`. Adding a term is one `register_term` call (or one entry here):
the config's validation, the coefficients, the initial parameters, the vector field, the ablations and the
labels all read the registry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

if TYPE_CHECKING:
    from pdeflow.pde.attention_pde import SurrogateConfig


class TermInputs(NamedTuple):
    """What a term's parts are evaluated on, for one input: the parameters, the config, depth-time ``t``, the
    state ``u (N, r)``, the token Laplacian ``(N, N)``, the mask of real tokens ``(N,)``, and the attention maps
    ``(H, N, N)`` when they are held over the interval (``SurrogateConfig.held_maps``; None: read off ``u``)."""

    params: dict
    config: SurrogateConfig
    t: Array
    u: Array
    laplacian: Array
    mask: Array
    maps: Array | None = None


class TermParts(NamedTuple):
    """A term's contribution before its coefficient: ``mixing (N, N)`` (applied to ``u`` with the other terms'
    in one product) and ``pointwise (N, r)``; either may be None."""

    mixing: Array | None = None
    pointwise: Array | None = None


@dataclasses.dataclass(frozen=True)
class Term:
    """One right-hand-side term of the attention-PDE.

    Attributes:
        name: the name in `SurrogateConfig.terms` (``"diffusion"``).
        symbol: its coefficient's symbol in reports (``"D"``).
        coefficient_key: its coefficient's key in the coefficient curves (``"D"``, ``"alpha"``).
        title: the coefficient curve's title (``"diffusion D(t)"``).
        initial_value: the coefficient at every knot when a surrogate is initialised (after the positivity
            map: ``D = 0.1`` is stored as ``softplus⁻¹(0.1)``).
        positive: the raw coefficient is mapped through softplus (the term must not change sign, as diffusion
            must not, to stay well posed); otherwise it is used as it is.
        parts: ``TermInputs -> TermParts``, the term without its coefficient.
        mixes: whether ``parts`` has a token-mixing operator (declared, so that the vector field knows where
            the fused product goes before it evaluates the terms).
        init: ``(keys (num_keys, ...), config) -> {group: parameters}``, the parameter groups the term owns
            (every registered term's groups are in every surrogate's parameters, switched on or not).
        num_keys: PRNG keys ``init`` takes.
        knot_groups: groups of ``init`` that always vary in depth-time (stored per knot: leading axis K).
        varying_groups: groups of ``init`` that vary in depth-time when named in `SurrogateConfig.varying`.
    """

    name: str
    symbol: str
    coefficient_key: str
    title: str
    initial_value: float
    positive: bool
    parts: Callable[[TermInputs], TermParts]
    mixes: bool = False
    init: Callable[[Array, SurrogateConfig], dict] | None = None
    num_keys: int = 0
    knot_groups: tuple[str, ...] = ()
    varying_groups: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"a term's name must be an identifier (it names config entries); got {self.name!r}.")
        if self.positive and not self.initial_value > 0:
            raise ValueError(f"term {self.name!r} is positive (softplus), so initial_value must be > 0; got "
                             f"{self.initial_value}.")
        if self.num_keys < 0 or (self.num_keys and self.init is None):
            raise ValueError(f"term {self.name!r}: num_keys ({self.num_keys}) must be >= 0, and > 0 only with an "
                             "init function.")

    def coefficient(self, raw: Array) -> Array:
        """The coefficient from its raw (stored) value: softplus for a positive term, else the value itself."""
        return jax.nn.softplus(raw) if self.positive else raw

    def raw_coefficient(self, value: float) -> float:
        """The raw (stored) value of a coefficient ``value``: the inverse of `coefficient`."""
        if self.positive:
            if not value > 0:
                raise ValueError(f"the coefficient of term {self.name!r} is positive; got {value}.")
            return math.log(math.expm1(value))
        return float(value)

    @property
    def ablation_key(self) -> str:
        """The method name of the surrogate with this term switched off (``"pde_without_attention"``)."""
        return f"pde_without_{self.name}"

    @property
    def ablation_label(self) -> str:
        """The report's label of that ablation (``"PDE, α = 0"``)."""
        return f"PDE, {self.symbol} = 0"


REGISTRY: dict[str, Term] = {}


def register_term(term: Term) -> Term:
    """Add ``term`` to `REGISTRY` after the terms already there (its coefficient is the next column); returns it.

    Register at import time, before any surrogate is built: a registered term's parameter groups and
    coefficient column are part of every surrogate's parameters from then on."""
    if term.name in REGISTRY:
        raise ValueError(f"a PDE term named {term.name!r} is registered already; choose another name.")
    taken = {group for t in REGISTRY.values() for group in _groups(t)} | {"projection", "readout", "coefficients"}
    clash = taken & set(_groups(term))
    if clash:
        raise ValueError(f"term {term.name!r} declares parameter groups {sorted(clash)} that are taken; rename them.")
    REGISTRY[term.name] = term
    return term


def unregister_term(name: str) -> Term:
    """Remove the term ``name`` from `REGISTRY` (a term registered for a test or a study); returns it."""
    if name not in REGISTRY:
        raise ValueError(f"no PDE term named {name!r} is registered; registered: {list(REGISTRY)}.")
    return REGISTRY.pop(name)


@contextlib.contextmanager
def registered(term: Term) -> Iterator[Term]:
    """``with registered(term):`` the registry holds ``term`` inside the block only."""
    register_term(term)
    try:
        yield term
    finally:
        unregister_term(term.name)


def _groups(term: Term) -> tuple[str, ...]:
    return term.knot_groups + term.varying_groups


def term_names() -> tuple[str, ...]:
    """The registered terms' names, in registry (coefficient) order."""
    return tuple(REGISTRY)


def get_term(name: str) -> Term:
    """The registered term ``name``; a ``ValueError`` listing the registered ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown PDE term {name!r}; choose from {list(REGISTRY)}.") from None


def check_terms(names) -> None:
    """Raise ``ValueError`` if ``names`` holds a name that is not a registered term."""
    unknown = set(names) - set(REGISTRY)
    if unknown:
        raise ValueError(f"unknown PDE terms {sorted(unknown)}; choose from {list(REGISTRY)}.")


def active_terms(config: SurrogateConfig) -> tuple[Term, ...]:
    """The terms switched on in ``config``, in registry order (whatever the order of ``config.terms``)."""
    return tuple(term for term in REGISTRY.values() if term.name in config.terms)


def ablation_key(name: str) -> str:
    """``"pde_without_<name>"``: the method name of the surrogate with term ``name`` switched off."""
    return get_term(name).ablation_key


def ablation_label(name: str) -> str:
    """``"PDE, α = 0"``: the report's label of the surrogate with term ``name`` switched off."""
    return get_term(name).ablation_label


def ablation_labels() -> dict[str, str]:
    """``{ablation_key: ablation_label}`` of every registered term, in registry order."""
    return {term.ablation_key: term.ablation_label for term in REGISTRY.values()}


# --- the three terms of the attention-PDE ------------------------------------------------------------------------
# The attention and residual parts use the kernel and helpers of `pdeflow.pde.attention_pde`, which imports this
# module for the registry; they import it when called.


def _diffusion_parts(x: TermInputs) -> TermParts:
    """``Δ``: the token Laplacian of the config's geometry."""
    return TermParts(mixing=x.laplacian)


def _attention_parts(x: TermInputs) -> TermParts:
    """``mean_h A_h`` (mixing) and ``(Σ_h A_h·u·V_h·U_h)/H − u`` (pointwise), ``A = Attn_θ(t, u)`` (or the maps held
    over the interval, ``x.maps``)."""
    from pdeflow.pde import attention_pde as pde

    config, u = x.config, x.u
    mm = lambda spec, *operands: pde._product(config, spec, *operands)  # noqa: E731
    maps = pde.attention_kernel(x.params, config, x.t, u, x.mask) if x.maps is None else x.maps  # (H, N, N)
    value = pde.at_time(x.params, config, "value", x.t)
    heads, rank = value["down"].shape[0], value["down"].shape[-1]
    # every head's down-projection in one (N, r) × (r, H·v) product, left token-major (N, H, v): the per-head form
    # (H products of (N, r) × (r, v)) ran at a third of the rate and copied u transposed at every evaluation
    down = mm("nr,rc->nc", u, pde.heads_matrix(value["down"])).reshape(u.shape[0], heads, rank)
    low_rank = pde.value_path_product(config, maps, down)  # (H, N, v)
    return TermParts(mixing=maps.mean(0), pointwise=mm("hiv,hvr->ir", low_rank, value["up"]) / config.num_heads - u)


def _attention_init(keys: Array, config: SurrogateConfig) -> dict:
    """The kernel (query and key maps, query bias, position bias: per knot) and the value correction
    ``W_v = I + V U`` (``U = 0``: at initialisation the term is ``(mean_h A_h − I)·u``)."""
    K, H, r, k, v = config.num_knots, config.num_heads, config.width, config.key_dim, config.value_rank
    normal = jax.random.normal
    return {
        "kernel": {
            "query": normal(keys[0], (K, H, r, k)) / math.sqrt(r),
            "query_bias": jnp.zeros((K, H, k)),
            "key": normal(keys[1], (K, H, r, k)) / math.sqrt(r),
            "position_bias": jnp.zeros((K, H, config.num_position_buckets)),
        },
        "value": {"down": normal(keys[2], (H, r, v)) / math.sqrt(r), "up": jnp.zeros((H, v, r))},
    }


def _residual_parts(x: TermInputs) -> TermParts:
    """``R_θ(u) = gelu(norm(u)·W₁ + b₁)·W₂ + b₂``, token by token."""
    from pdeflow.pde import attention_pde as pde

    config = x.config
    p = pde.at_time(x.params, config, "residual", x.t)
    hidden = jax.nn.gelu(pde._product(config, "nr,rm->nm", pde.normalise_state(x.u, config.residual_norm), p["w1"])
                         + p["b1"])
    return TermParts(pointwise=pde._product(config, "nm,mr->nr", hidden, p["w2"]) + p["b2"])


def _residual_init(keys: Array, config: SurrogateConfig) -> dict:
    r, m = config.width, config.mlp_width
    normal = jax.random.normal
    return {"residual": {"w1": normal(keys[0], (r, m)) / math.sqrt(r), "b1": jnp.zeros((m,)),
                         "w2": normal(keys[1], (m, r)) / math.sqrt(m), "b2": jnp.zeros((r,))}}


DIFFUSION = register_term(Term("diffusion", "D", "D", "diffusion D(t)", initial_value=0.1, positive=True,
                               parts=_diffusion_parts, mixes=True))
ATTENTION = register_term(Term("attention", "α", "alpha", "attention α(t)", initial_value=1.0, positive=False,
                               parts=_attention_parts, mixes=True, init=_attention_init, num_keys=3,
                               knot_groups=("kernel",), varying_groups=("value",)))
RESIDUAL = register_term(Term("residual", "β", "beta", "residual β(t)", initial_value=0.1, positive=False,
                              parts=_residual_parts, init=_residual_init, num_keys=2, varying_groups=("residual",)))
