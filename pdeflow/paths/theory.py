"""The theory's predictor and its order parameter.

Given path kernels on the training inputs and a matrix ``U`` over path pairs, the network at temperature
``T`` predicts like a Gaussian process with kernel ``K(U)``:

    mean(X*) = k*ᵀ (K(U) + T I)⁻¹ Y,    var(X*) = k** − k*ᵀ (K(U) + T I)⁻¹ k*.

``U`` is found by minimising the action, here in a Kronecker form: a scalar ``u₀`` for the input layer and one
``H × H`` positive-definite order parameter per attention layer, ``U = u₀ (U⁽¹⁾ ⊗ ⋯ ⊗ U⁽ᴸ⁾) / H^L``:

    S(U) = (N/2) [u₀ − log u₀ + Σ_l (Tr U⁽ˡ⁾ − log det U⁽ˡ⁾)] + ½ log det(K(U) + T I) + ½ Yᵀ (K(U) + T I)⁻¹ Y.

This is the back-propagating kernel renormalisation of deep linear networks (Li & Sompolinsky 2021) with the
scalar renormalisation of each head-carrying layer promoted to an ``H × H`` matrix. The Kronecker form is this
module's reading of the theory; it is checked against networks sampled from the weight posterior
(`pdeflow.paths.training`), not only against itself. The first (entropy) term grows with the width N and pins
every order parameter to one / the identity — the
Gaussian-process limit ``U = I / H^L``; the other two (energy) terms grow with the number of training
examples and pull ``U`` towards the paths that fit the labels. `head_scores` ranks heads by how much of ``U``
runs through them.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from pdeflow.paths.decomposition import total_kernel


def gp_predict(k_train: Array, k_cross: Array, k_test_diag: Array, targets: Array,
               temperature: float) -> tuple[Array, Array]:
    """``(mean (M,), variance (M,))`` of the predictor on M test inputs.

    Args:
        k_train: ``(P, P)`` kernel between training inputs.
        k_cross: ``(M, P)`` kernel between test and training inputs.
        k_test_diag: ``(M,)`` kernel of each test input with itself.
        targets: ``(P,)`` training labels.
        temperature: T > 0, the noise / temperature on the diagonal.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive; got {temperature}.")
    factor = jax.scipy.linalg.cho_factor(k_train + temperature * jnp.eye(k_train.shape[0]))
    mean = k_cross @ jax.scipy.linalg.cho_solve(factor, targets)
    variance = k_test_diag - jnp.einsum("mp,pm->m", k_cross, jax.scipy.linalg.cho_solve(factor, k_cross.T))
    return mean, variance


class OrderParameter(NamedTuple):
    """The order parameter in Kronecker form: ``U = u₀ · (U⁽¹⁾ ⊗ ⋯ ⊗ U⁽ᴸ⁾) / H^L``.

    Attributes:
        input_scale: ``u₀ > 0``, the renormalisation of the input layer (no heads).
        layers: ``(L, H, H)`` positive-definite ``U⁽ˡ⁾``, one per attention layer.
    """

    input_scale: Array
    layers: Array

    @classmethod
    def gp_limit(cls, num_layers: int, num_heads: int) -> OrderParameter:
        """``u₀ = 1``, every ``U⁽ˡ⁾ = I``: the Gaussian-process limit ``U = I / H^L``."""
        return cls(jnp.asarray(1.0), jnp.broadcast_to(jnp.eye(num_heads), (num_layers, num_heads, num_heads)))

    def matrix(self) -> Array:
        """``(H^L, H^L)`` over path pairs (layer 1 the slowest index, as `all_paths`)."""
        return self.input_scale * kronecker_order_parameter(self.layers)


def kronecker_order_parameter(layers: Array) -> Array:
    """``(L, H, H) -> (H^L, H^L)``: ``U⁽¹⁾ ⊗ ⋯ ⊗ U⁽ᴸ⁾ / H^L`` (layer 1 the slowest index, as `all_paths`)."""
    u = layers[0]
    for layer in layers[1:]:
        u = jnp.kron(u, layer)
    return u / layers.shape[1] ** layers.shape[0]


def action(order: OrderParameter, kernels: Array, targets: Array, width: int, temperature: float) -> Array:
    """``S(U)`` for an `OrderParameter`, path kernels ``(P_paths, P_paths, P, P)`` on the training inputs and
    labels ``(P,)``: ``(N/2)[u₀ − log u₀ + Σ_l (Tr U⁽ˡ⁾ − log det U⁽ˡ⁾)] + ½ log det(K(U) + T I)
    + ½ Yᵀ (K(U) + T I)⁻¹ Y``."""
    u0 = order.input_scale
    entropy = 0.5 * width * (u0 - jnp.log(u0) + sum(jnp.trace(u) - jnp.linalg.slogdet(u)[1] for u in order.layers))
    k = total_kernel(order.matrix(), kernels)
    factor = jax.scipy.linalg.cho_factor(k + temperature * jnp.eye(k.shape[0]))
    logdet = 2.0 * jnp.sum(jnp.log(jnp.diag(factor[0])))
    energy = 0.5 * logdet + 0.5 * targets @ jax.scipy.linalg.cho_solve(factor, targets)
    return entropy + energy


def _constrained(free) -> OrderParameter:
    """Unconstrained ``(log u₀, F (L, H, H))`` -> ``OrderParameter(u₀, F Fᵀ + 1e-6 I)``."""
    log_u0, factors = free
    eye = jnp.eye(factors.shape[-1])
    return OrderParameter(jnp.exp(log_u0), jnp.einsum("lij,lkj->lik", factors, factors) + 1e-6 * eye)


@functools.partial(jax.jit, static_argnames=("width", "steps"))
def _minimise(kernels, targets, width: int, temperature, steps: int, learning_rate, start):
    import optax

    optimizer = optax.adam(learning_rate)

    def loss(free):
        return action(_constrained(free), kernels, targets, width, temperature)

    def step(carry, _):
        free, state = carry
        value, grad = jax.value_and_grad(loss)(free)
        updates, state = optimizer.update(grad, state)
        return (optax.apply_updates(free, updates), state), value

    (free, _), history = jax.lax.scan(step, (start, optimizer.init(start)), None, length=steps)
    return _constrained(free), history


def minimise_action(kernels: Array, targets: Array, num_layers: int, num_heads: int, width: int,
                    temperature: float, steps: int = 500, learning_rate: float = 0.01) -> tuple[OrderParameter, Array]:
    """Minimise `action` with Adam from the Gaussian-process limit. Returns ``(OrderParameter, action per
    step (steps,))``."""
    if kernels.shape[0] != num_heads ** num_layers:
        raise ValueError(f"kernels hold {kernels.shape[0]} paths; {num_layers} layers of {num_heads} heads have "
                         f"{num_heads ** num_layers}.")
    start = (jnp.asarray(0.0), jnp.broadcast_to(jnp.eye(num_heads), (num_layers, num_heads, num_heads)))
    order, history = _minimise(kernels, targets, width, temperature, steps, learning_rate, start)
    if not np.all(np.isfinite(np.asarray(history))):
        raise FloatingPointError("the action became NaN/Inf while minimising; lower learning_rate or raise the "
                                 "temperature.")
    return order, history


def head_scores(order_parameter: Array, paths, num_heads: int) -> Array:
    """``(L, H)``: each head's share, within its layer, of ``Σ |U_{ππ'}|`` over the entries whose paths
    ``π`` or ``π'`` pass through it."""
    u = jnp.abs(order_parameter)
    paths = jnp.asarray(paths)
    scores = []
    for layer in range(paths.shape[1]):
        through = jax.nn.one_hot(paths[:, layer], num_heads)  # (P, H)
        either = through[:, None, :] + through[None, :, :] - through[:, None, :] * through[None, :, :]
        per_head = jnp.einsum("pq,pqh->h", u, either)
        scores.append(per_head / per_head.sum())
    return jnp.stack(scores)
