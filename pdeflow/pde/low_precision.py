"""Matrix products in a low-precision dtype (bfloat16) with float32 accumulation, forward and backward.

``product(spec, x, y, dtype)`` is ``jnp.einsum(spec, x, y)`` with both operands rounded to ``dtype`` and the
result accumulated and returned in float32. Autodiff of that einsum pairs each float32 cotangent with a
low-precision operand, a mixed product that XLA runs in float32, so the backward pass gains nothing from the
low-precision units (measured: ×1.04 forward+backward with AMX on an Intel Xeon, whose bfloat16 matmul peak is
×4.9 its float32 one). Here the backward is written by hand: the cotangent ``c`` is rounded to ``dtype`` too, and
the two cotangent products

    x̄ = einsum(out, y -> x)(c, y),     ȳ = einsum(out, x -> y)(c, x)

are low-precision products with float32 accumulation, as the forward is.

The field calls these products under ``vmap`` over a batch, where a custom VJP's backward is batched as it is:
the cotangent of a weight shared by the batch would be computed input by input, ``(B, r, m)``, and then summed
(measured: 55 ms against 3.8 ms for one MLP product's forward+backward at the faithful fit's shape). Each
cotangent product is therefore a `jax.custom_batching.custom_vmap` function that sees which operands are
batched: when its primal is not batched but the cotangent is, it contracts the batch axis inside the one
product and returns the sum, unbatched, which is the cotangent the batched backward would have summed to. Under
nested ``vmap`` each level applies the same rule (a batch of inputs inside a vmap over intervals, or a batch of
weights).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import Array


def product(spec: str, x: Array, y: Array, dtype) -> Array:
    """``jnp.einsum(spec, x, y)`` (two operands, no ellipsis) in ``dtype`` with a float32 result; its VJP's
    products are in ``dtype`` with float32 accumulation as well. The cotangents take the operands' dtypes."""
    return _product(spec, jnp.dtype(dtype).name, jnp.result_type(x).name, jnp.result_type(y).name)(x, y)


def _split(spec: str) -> tuple[str, str, str]:
    inputs, out = spec.replace(" ", "").split("->")
    x, y = inputs.split(",")
    return x, y, out


@functools.cache
def _product(spec: str, dtype: str, x_dtype: str, y_dtype: str):
    """The ``jax.custom_vjp`` product for one spec and dtypes (cached: one function per spec)."""
    x_spec, y_spec, out = _split(spec)
    x_bar_of = _cotangent_product(f"{out},{y_spec}->{x_spec}")
    y_bar_of = _cotangent_product(f"{out},{x_spec}->{y_spec}")

    @jax.custom_vjp
    def low(x, y):
        return jnp.einsum(spec, x.astype(dtype), y.astype(dtype), preferred_element_type=jnp.float32)

    def low_fwd(x, y):
        x_low, y_low = x.astype(dtype), y.astype(dtype)
        return jnp.einsum(spec, x_low, y_low, preferred_element_type=jnp.float32), (x_low, y_low)

    def low_bwd(residuals, cotangent):
        x_low, y_low = residuals
        c = cotangent.astype(dtype)
        # each primal's low-precision copy is passed along only to say whether that primal is batched
        return x_bar_of(c, y_low, x_low).astype(x_dtype), y_bar_of(c, x_low, y_low).astype(y_dtype)

    low.defvjp(low_fwd, low_bwd)
    return low


@functools.cache
def _cotangent_product(spec: str):
    """``(c, other, primal) -> einsum(spec, c, other)`` in float32, batched so that a primal shared by the batch
    (not batched) gets the batch's summed cotangent from one product."""
    c_spec, other_spec, out = _split(spec)
    batch = next(letter for letter in "zyxwvutsqponmlkjihgfedcba" if letter not in spec)

    @jax.custom_batching.custom_vmap
    def cotangent_product(c, other, primal):
        del primal  # its batching alone matters
        return jnp.einsum(spec, c, other, preferred_element_type=jnp.float32)

    @cotangent_product.def_vmap
    def batched(axis_size, in_batched, c, other, primal):
        c_batched, other_batched, primal_batched = in_batched
        if not (c_batched or other_batched):  # the same cotangent for every member of the batch
            value = cotangent_product(c, other, primal[0] if primal_batched else primal)
            return (jnp.broadcast_to(value, (axis_size,) + value.shape), True) if primal_batched else (value, False)
        lhs = batch + c_spec if c_batched else c_spec
        rhs = batch + other_spec if other_batched else other_spec
        # a primal shared by the batch gets the sum over the batch, contracted in the product. The batched
        # product is itself a `_cotangent_product`, so that an enclosing vmap applies this rule again (an outer
        # vmap batches the rule's operations as they are, and would compute its members' sums one by one)
        spec_batched = f"{lhs},{rhs}->{batch + out if primal_batched else out}"
        return _cotangent_product(spec_batched)(c, other, primal), primal_batched

    return cotangent_product
