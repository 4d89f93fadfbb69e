"""Networks of finite width on a task: value weights sampled from their posterior (Langevin dynamics) or
trained by plain gradient descent, with the attention (query/key) weights held fixed, and head pruning.

With query/key weights fixed the attention maps are fixed too, so they are computed once per input and the
network is a chain of linear maps in its value weights θ = (V⁽⁰⁾, V⁽ˡʰ⁾, a). The posterior the theory
describes is ``p(θ) ∝ exp(−Σ_μ (f(X^μ) − y^μ)² / (2T) − |θ|² / 2)`` (the Gaussian prior of the
initialisation); Langevin dynamics ``θ ← θ − η ∇(−log p) + √(2η) ε`` samples it, and the average of ``f`` over
samples after burn-in estimates the posterior-mean predictor that `pdeflow.paths.theory.gp_predict` gives in
closed form. Without the noise the same loop is gradient descent with weight decay (the MAP network).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pdeflow.paths.network import PathNetConfig, readout_weights

VALUE_KEYS = ("value_in", "readout")


def value_parameters(params, config: PathNetConfig) -> dict:
    """The value weights of a `PathAttentionNet`'s parameters (``value_in``, ``value_l``, ``readout``)."""
    p = params["params"]
    return {k: p[k] for k in (*VALUE_KEYS, *(f"value_{l}" for l in range(config.num_layers)))}


def output_from_maps(values: dict, attention: Array, x: Array, config: PathNetConfig) -> Array:
    """``f (B,)`` of the network with value weights ``values`` on inputs ``x (B, T, D)`` whose attention maps
    ``(L, B, H, T, T)`` are given (the same arithmetic as `PathAttentionNet`)."""
    h = x @ values["value_in"].T / math.sqrt(config.input_dim)
    for layer in range(config.num_layers):
        h = jnp.einsum("bhst,btn,hmn->bsm", attention[layer], h, values[f"value_{layer}"]) / math.sqrt(
            config.num_heads * config.width)
    r = readout_weights(x.shape[1], config.readout)
    return jnp.einsum("t,btn,n->b", r, h, values["readout"]) / math.sqrt(config.width)


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """Langevin sampling (or, with ``noise=False``, gradient descent) of the value weights.

    Attributes:
        temperature: T, the likelihood's temperature (the theory's T).
        steps: total steps.
        burn_in: steps discarded before averaging predictions.
        thin: average every ``thin``-th step after burn-in.
        step_size: η.
        noise: add the Langevin noise (False: gradient descent with weight decay, the MAP network).
        seed: seeds the initial weights (drawn from the prior) and the noise.
    """

    temperature: float = 0.1
    steps: int = 4000
    burn_in: int = 2000
    thin: int = 10
    step_size: float = 1e-3
    noise: bool = True
    seed: int = 0

    def __post_init__(self):
        if not self.temperature > 0 or not self.step_size > 0:
            raise ValueError("temperature and step_size must be positive.")
        if not 0 <= self.burn_in < self.steps or self.thin < 1:
            raise ValueError(f"need 0 <= burn_in < steps and thin >= 1; got burn_in {self.burn_in}, steps "
                             f"{self.steps}, thin {self.thin}.")


def _initial_values(config: PathNetConfig, key) -> dict:
    keys = jax.random.split(key, config.num_layers + 2)
    values = {"value_in": jax.random.normal(keys[0], (config.width, config.input_dim)),
              "readout": jax.random.normal(keys[1], (config.width,))}
    for layer in range(config.num_layers):
        values[f"value_{layer}"] = jax.random.normal(keys[layer + 2], (config.num_heads, config.width, config.width))
    return values


@functools.partial(jax.jit, static_argnames=("config", "sampler"))
def _sample(config: PathNetConfig, sampler: SamplerConfig, maps_train, x_train, y_train, maps_test, x_test):
    def potential(values):
        f = output_from_maps(values, maps_train, x_train, config)
        prior = sum(jnp.sum(v ** 2) for v in jax.tree_util.tree_leaves(values))
        return jnp.sum((f - y_train) ** 2) / (2 * sampler.temperature) + 0.5 * prior

    grad = jax.grad(potential)
    kept = (sampler.steps - sampler.burn_in) // sampler.thin

    def step(carry, i):
        values, key, total_test, total_train = carry
        key, noise_key = jax.random.split(key)
        g = grad(values)
        leaves, tree = jax.tree_util.tree_flatten(values)
        noise_keys = jax.random.split(noise_key, len(leaves))
        scale = math.sqrt(2 * sampler.step_size) if sampler.noise else 0.0
        leaves = [v - sampler.step_size * gv + scale * jax.random.normal(k, v.shape)
                  for v, gv, k in zip(leaves, jax.tree_util.tree_leaves(g), noise_keys)]
        values = jax.tree_util.tree_unflatten(tree, leaves)
        take = (i >= sampler.burn_in) & ((i - sampler.burn_in) % sampler.thin == 0)
        total_test, total_train = jax.lax.cond(  # evaluate only on the kept steps
            take, lambda t: (t[0] + output_from_maps(values, maps_test, x_test, config),
                             t[1] + output_from_maps(values, maps_train, x_train, config)),
            lambda t: t, (total_test, total_train))
        return (values, key, total_test, total_train), potential(values)

    key = jax.random.PRNGKey(sampler.seed)
    key, init_key = jax.random.split(key)
    start = (_initial_values(config, init_key), key, jnp.zeros(x_test.shape[0]), jnp.zeros(x_train.shape[0]))
    (values, _, total_test, total_train), trace = jax.lax.scan(step, start, jnp.arange(sampler.steps))
    return values, total_test / kept, total_train / kept, trace


def sample_networks(config: PathNetConfig, sampler: SamplerConfig, maps_train: Array, x_train: Array,
                    y_train: Array, maps_test: Array, x_test: Array) -> dict:
    """Sample (or train) the value weights on the training inputs; return the averaged predictions.

    Args:
        maps_train, maps_test: ``(L, B, H, T, T)`` attention maps of the fixed query/key weights.
        x_train, x_test: ``(B, T, D)`` inputs; y_train: ``(B,)`` targets.
    Returns:
        ``{"test": (M,), "train": (P,), "values": the last weights, "potential": (steps,)}``.
    """
    values, test, train, potential = _sample(config, sampler, maps_train, jnp.asarray(x_train),
                                             jnp.asarray(y_train, jnp.float32), maps_test, jnp.asarray(x_test))
    if not np.all(np.isfinite(np.asarray(potential))):
        raise FloatingPointError("sampling diverged (NaN/Inf); lower step_size or raise the temperature.")
    return {"test": test, "train": train, "values": values, "potential": potential}


def prune_heads(values: dict, keep, config: PathNetConfig) -> dict:
    """Value weights with the heads where ``keep (L, H)`` is False removed (zeroed) and each layer's remaining
    heads rescaled by ``√(H / kept)``, so the head sum keeps its ``1/√(heads)`` normalisation. Keeping every
    head returns the weights unchanged."""
    keep = np.asarray(keep, bool)
    if keep.shape != (config.num_layers, config.num_heads):
        raise ValueError(f"keep must have shape (L, H) = ({config.num_layers}, {config.num_heads}); got "
                         f"{keep.shape}.")
    if not keep.any(axis=1).all():
        raise ValueError("every layer needs at least one head (a layer without heads outputs zero).")
    pruned = dict(values)
    for layer in range(config.num_layers):
        scale = math.sqrt(config.num_heads / keep[layer].sum())
        mask = jnp.asarray(keep[layer], values[f"value_{layer}"].dtype)[:, None, None]
        pruned[f"value_{layer}"] = values[f"value_{layer}"] * mask * scale
    return pruned
