"""The theory's predictor and its order parameter, in two forms.

Given path kernels on the training inputs and a matrix ``U`` over path pairs, the network at temperature
``T`` predicts like a Gaussian process with kernel ``K(U)``:

    mean(X*) = k*ᵀ (K(U) + T I)⁻¹ Y,    var(X*) = k** − k*ᵀ (K(U) + T I)⁻¹ k*.

``U`` is found by minimising the action ``S = entropy(U) + ½ log det(K(U) + T I) + ½ Yᵀ (K(U) + T I)⁻¹ Y``.
The two energy terms grow with the number of training examples and pull ``U`` towards the paths that fit the
labels; the entropy grows with the width N and pins ``U`` to the Gaussian-process limit ``U = I / H^L``. Every
weight of the network is a standard Gaussian (σ² = 1) and every layer has the same width N.

**Kronecker form** (``order_parameter="kronecker"``, `OrderParameter`, the default): a scalar ``u₀`` for the
input scale and one ``H × H`` matrix per attention layer, ``U = u₀ (U⁽¹⁾ ⊗ ⋯ ⊗ U⁽ᴸ⁾) / H^L``, with

    entropy = (N/2) [u₀ − log u₀ + Σ_l (Tr U⁽ˡ⁾ − log det U⁽ˡ⁾)].

This is the back-propagating kernel renormalisation of deep linear networks (Li & Sompolinsky 2021) with the
scalar of each head-carrying layer promoted to an ``H × H`` matrix: this project's own reading, ``L·H² + 1``
numbers however many paths there are.

**Full form** (``order_parameter="full"``, `FullOrderParameter`), as in the authors' code
(``tiberilor/attention-paths-interplay``, ``LIB_convergent_summation_heads.py``: ``compute_entropy_action``,
``compute_scalar_order_parameter``, ``compute_renormalized_kernel``): a hierarchy ``[U_L, …, U_1]`` of symmetric
positive-definite matrices, ``U_l`` over the head tuples ``(h_l, …, h_L)`` of layers l..L (``h_l`` the slowest
index; side ``H^{L−l+1}``). Integrating out the readout, then layer L, …, then layer 1 in turn, each step
renormalises the covariance of the layer below by the one above: with ``Ũ_l = (I_H ⊗ U_{l+1})^{−½} U_l
(I_H ⊗ U_{l+1})^{−½}`` (and ``Ũ_L = U_L / U_a``) the Gaussian entropy of each layer is
``(N/2)(Tr Ũ_l − log det Ũ_l)``, which the authors write with a partial trace over the current layer's head,
``u_l = Tr_{h_l} U_l``:

    entropy = (N/2) [ U_a − log U_a
                      + Tr U_L / U_a − log det U_L + H log U_a
                      + Σ_{l<L} (Tr(U_{l+1}⁻¹ Tr_{h_l} U_l) − log det U_l + H log det U_{l+1}) ],

the authors' ``entropy`` at σ² = 1 and equal widths, halved (they also leave out the ½ of the energy, and
divide both by the largest width; neither moves the minimum). The input scale ``U_a`` enters only the entropy,
so it is set to its own saddle point given ``U_L``: ``∂/∂U_a = 0`` gives ``U_a² + β U_a − γ = 0`` with
``β = H − 1``, ``γ = Tr U_L``, so ``U_a = (−β + √(β² + 4γ)) / 2`` (`full_input_scale`; with unequal widths
and variances ``β = σ_a²(H N_L / N_a − 1)``, ``γ = Tr U_L σ_a² N_L / (N_a σ_L²)``). The largest level ``U_1``
(``H^L × H^L``, over all path pairs) enters the kernel, ``K̃_{μν} = Σ_{π,π'} ξ_π(X^μ)·U_{1,ππ'} ξ_π'(X^ν)
/ (D H^L)``, i.e. ``U = U_1 / H^L`` in this package's normalisation of the path kernels. The Gaussian-process
limit is every ``U_l = (σ_a² Π_{k≥l} σ_k²) I = I`` (then ``U_a = 1``).

The Kronecker form is *not* a restriction of the full one: putting ``U_l = U_a U⁽ˡ⁾ ⊗ ⋯ ⊗ U⁽ᴸ⁾`` into the
full entropy gives layer l's term ``(N/2) H^{L−l} (Tr U⁽ˡ⁾ − log det U⁽ˡ⁾)`` — lower layers are held
``H^{L−l}`` times more firmly than the Kronecker form holds them. With one head per layer (a single path) the
two actions are the same function of the path's scalar ``U`` (substitute ``v_l = U_l / U_{l+1}``), so the two
predictors agree. The full form needs ``(H^L)²`` numbers: `minimise_action` refuses it above
``max_full_paths`` paths (MiniLM's 12⁶ paths would need 9·10¹² entries) and names the Kronecker form.

`head_scores` ranks heads by how much of ``U`` runs through them (``normalisation="max"``: the authors'
``compute_heads_score``).
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


ORDER_PARAMETER_FORMS = ("kronecker", "full")
MAX_FULL_PATHS = 4096  # a (4096, 4096) U_1: 16.8 M numbers, 67 MB in float32


def full_input_scale(top: Array) -> Array:
    """The input scale ``U_a`` at its saddle point given the top level ``U_L (H, H)`` (equal widths, σ² = 1):
    ``(−β + √(β² + 4γ)) / 2`` with ``β = H − 1``, ``γ = Tr U_L`` (the authors' ``compute_scalar_order_parameter``)."""
    beta = top.shape[0] - 1.0
    return 0.5 * (-beta + jnp.sqrt(beta ** 2 + 4.0 * jnp.trace(top)))


class FullOrderParameter(NamedTuple):
    """The order parameter as the authors' hierarchy of full matrices.

    Attributes:
        levels: ``(U_L, U_{L−1}, …, U_1)``, symmetric positive definite, ``U_l`` of side ``H^{L−l+1}`` over the
            head tuples ``(h_l, …, h_L)`` (``h_l`` the slowest index); ``U_1`` is over all path pairs, in the
            order of `all_paths`.
    """

    levels: tuple[Array, ...]

    @classmethod
    def gp_limit(cls, num_layers: int, num_heads: int) -> FullOrderParameter:
        """Every ``U_l = I``: the Gaussian-process limit ``U = I / H^L`` (and ``U_a = 1``)."""
        return cls(tuple(jnp.eye(num_heads ** (i + 1)) for i in range(num_layers)))

    @property
    def input_scale(self) -> Array:
        """``U_a``, from `full_input_scale`."""
        return full_input_scale(self.levels[0])

    def matrix(self) -> Array:
        """``(H^L, H^L)`` over path pairs: ``U_1 / H^L`` (the authors' ``U_1`` in this package's normalisation of
        the path kernels)."""
        return self.levels[-1] / self.levels[-1].shape[0]


def full_entropy(levels, width: int) -> Array:
    """The full form's entropy ``(N/2)[U_a − log U_a + Tr U_L/U_a − log det U_L + H log U_a + Σ_{l<L}
    (Tr(U_{l+1}⁻¹ Tr_{h_l} U_l) − log det U_l + H log det U_{l+1})]`` of ``levels = (U_L, …, U_1)``, with
    ``U_a`` at its saddle point (`full_input_scale`)."""
    top = levels[0]
    u_a = full_input_scale(top)
    logdet = jnp.linalg.slogdet(top)[1]
    total = u_a - jnp.log(u_a) + jnp.trace(top) / u_a - logdet + top.shape[0] * jnp.log(u_a)
    for above, current in zip(levels[:-1], levels[1:]):
        side = above.shape[0]
        heads = current.shape[0] // side
        traced = jnp.einsum("hahb->ab", current.reshape(heads, side, heads, side))  # Tr over this layer's head
        current_logdet = jnp.linalg.slogdet(current)[1]
        total = total + jnp.trace(jnp.linalg.solve(above, traced)) - current_logdet + heads * logdet
        logdet = current_logdet
    return 0.5 * width * total


def _kronecker_entropy(order: OrderParameter, width: int) -> Array:
    u0 = order.input_scale
    return 0.5 * width * (u0 - jnp.log(u0) + sum(jnp.trace(u) - jnp.linalg.slogdet(u)[1] for u in order.layers))


def action(order: OrderParameter | FullOrderParameter, kernels: Array, targets: Array, width: int,
           temperature: float) -> Array:
    """``S(U) = entropy(U) + ½ log det(K(U) + T I) + ½ Yᵀ (K(U) + T I)⁻¹ Y`` for an `OrderParameter` (Kronecker
    entropy ``(N/2)[u₀ − log u₀ + Σ_l (Tr U⁽ˡ⁾ − log det U⁽ˡ⁾)]``) or a `FullOrderParameter` (`full_entropy`),
    path kernels ``(P_paths, P_paths, P, P)`` on the training inputs and labels ``(P,)``."""
    if isinstance(order, FullOrderParameter):
        entropy = full_entropy(order.levels, width)
    else:
        entropy = _kronecker_entropy(order, width)
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


def _constrained_full(free) -> FullOrderParameter:
    """Unconstrained factors ``(F_L, …, F_1)`` -> ``FullOrderParameter(F Fᵀ + 1e-6 I, …)``."""
    return FullOrderParameter(tuple(f @ f.T + 1e-6 * jnp.eye(f.shape[0]) for f in free))


@functools.partial(jax.jit, static_argnames=("width", "steps", "form"))
def _minimise(kernels, targets, width: int, temperature, steps: int, learning_rate, start, form: str = "kronecker"):
    import optax

    optimizer = optax.adam(learning_rate)
    constrained = _constrained_full if form == "full" else _constrained

    def loss(free):
        return action(constrained(free), kernels, targets, width, temperature)

    def step(carry, _):
        free, state = carry
        value, grad = jax.value_and_grad(loss)(free)
        updates, state = optimizer.update(grad, state)
        return (optax.apply_updates(free, updates), state), value

    (free, _), history = jax.lax.scan(step, (start, optimizer.init(start)), None, length=steps)
    return constrained(free), history


def minimise_action(kernels: Array, targets: Array, num_layers: int, num_heads: int, width: int,
                    temperature: float, steps: int = 500, learning_rate: float = 0.01,
                    order_parameter: str = "kronecker", max_full_paths: int = MAX_FULL_PATHS,
                    ) -> tuple[OrderParameter | FullOrderParameter, Array]:
    """Minimise `action` with Adam from the Gaussian-process limit. Returns ``(OrderParameter or
    FullOrderParameter, action per step (steps,))``.

    Args:
        order_parameter: ``"kronecker"`` (`OrderParameter`, ``L·H² + 1`` numbers) or ``"full"``
            (`FullOrderParameter`, the authors' hierarchy; its largest level has ``(H^L)²`` entries).
        max_full_paths: the most paths ``H^L`` the full form is built for; above it a ValueError names the
            Kronecker form.
    """
    if order_parameter not in ORDER_PARAMETER_FORMS:
        raise ValueError(f"order_parameter must be one of {ORDER_PARAMETER_FORMS}; got {order_parameter!r}.")
    num_paths = num_heads ** num_layers
    if order_parameter == "full" and num_paths > max_full_paths:
        raise ValueError(f"order_parameter='full' needs a ({num_paths}, {num_paths}) matrix over path pairs "
                         f"({float(num_paths) ** 2:.2g} entries) for {num_layers} layers of {num_heads} heads, more "
                         f"than max_full_paths={max_full_paths} paths allow; use order_parameter='kronecker' "
                         f"({num_layers * num_heads ** 2 + 1} numbers) or raise max_full_paths.")
    if kernels.shape[0] != num_paths:
        raise ValueError(f"kernels hold {kernels.shape[0]} paths; {num_layers} layers of {num_heads} heads have "
                         f"{num_paths}.")
    if order_parameter == "full":
        start = FullOrderParameter.gp_limit(num_layers, num_heads).levels  # F = I: U_l = I (+1e-6)
    else:
        start = (jnp.asarray(0.0), jnp.broadcast_to(jnp.eye(num_heads), (num_layers, num_heads, num_heads)))
    order, history = _minimise(kernels, targets, width, temperature, steps, learning_rate, start, order_parameter)
    if not np.all(np.isfinite(np.asarray(history))):
        raise FloatingPointError("the action became NaN/Inf while minimising; lower learning_rate or raise the "
                                 "temperature.")
    return order, history


HEAD_SCORE_NORMALISATIONS = ("layer", "max")


def head_scores(order_parameter: Array, paths, num_heads: int, normalisation: str = "layer") -> Array:
    """``(L, H)``: each head's ``Σ |U_{ππ'}|`` over the entries whose paths ``π`` or ``π'`` pass through it,
    as a share of its layer's total (``normalisation="layer"``) or divided by the largest over all heads of all
    layers (``"max"``: the authors' ``compute_heads_score``, which ranks heads across layers)."""
    if normalisation not in HEAD_SCORE_NORMALISATIONS:
        raise ValueError(f"normalisation must be one of {HEAD_SCORE_NORMALISATIONS}; got {normalisation!r}.")
    u = jnp.abs(order_parameter)
    paths = jnp.asarray(paths)
    scores = []
    for layer in range(paths.shape[1]):
        through = jax.nn.one_hot(paths[:, layer], num_heads)  # (P, H)
        either = through[:, None, :] + through[None, :, :] - through[:, None, :] * through[None, :, :]
        scores.append(jnp.einsum("pq,pqh->h", u, either))
    scores = jnp.stack(scores)
    if normalisation == "max":
        largest = jnp.max(scores)
        # XLA may divide by a scalar as a product with its reciprocal, which leaves the largest head at 1 − 1 ulp on
        # some CPUs (AMD EPYC family 25): it is set to 1 exactly, as the authors' normalisation has it
        return jnp.where(scores == largest, 1.0, scores / largest)
    return scores / scores.sum(1, keepdims=True)
