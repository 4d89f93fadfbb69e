"""Products in bfloat16 with float32 accumulation, forward and backward (`pdeflow.pde.low_precision`): the forward
is the plain bfloat16 einsum, the VJP's products take the cotangent rounded to bfloat16 and are bfloat16 products
too, and under ``vmap`` a weight shared by the batch gets its summed cotangent from one product, at any depth of
nested ``vmap``."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde import SurrogateConfig, batch_vector_field, init_surrogate
from pdeflow.pde.low_precision import product
from pdeflow.surrogate import token_laplacians

BF16 = jnp.bfloat16
# (spec, x shape, y shape): a weight on the right, a weight on the left, two per-input operands with a batch axis
# (heads) of their own, a contraction over two axes
CASES = [("nr,rm->nm", (5, 6), (6, 7)), ("hvr,nr->hnv", (3, 2, 6), (5, 6)), ("hij,hjv->hiv", (3, 5, 5), (3, 5, 2)),
         ("hiv,hvr->ir", (3, 5, 2), (3, 2, 6))]


def _rounded(x):
    return x.astype(BF16).astype(jnp.float32)


def _operands(x_shape, y_shape, seed=0, batch=()):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.normal(size=batch + x_shape), jnp.float32),
            jnp.asarray(rng.normal(size=y_shape), jnp.float32))


def _dot_operand_dtypes(jaxpr) -> list[tuple[str, ...]]:
    """The operand dtypes of every ``dot_general`` in ``jaxpr`` and the jaxprs it calls (custom rules included)."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += _dot_operand_dtypes(inner)
    return found


@pytest.mark.parametrize("spec, x_shape, y_shape", CASES)
def test_forward_is_the_bfloat16_einsum_and_the_vjp_rounds_the_cotangent(spec, x_shape, y_shape):
    x, y = _operands(x_shape, y_shape)
    value, vjp = jax.vjp(lambda a, b: product(spec, a, b, "bfloat16"), x, y)
    assert value.dtype == jnp.float32
    np.testing.assert_array_equal(value, jnp.einsum(spec, x.astype(BF16), y.astype(BF16),
                                                    preferred_element_type=jnp.float32))
    cotangent = jnp.asarray(np.random.default_rng(1).normal(size=value.shape), jnp.float32)
    x_bar, y_bar = vjp(cotangent)
    assert x_bar.dtype == y_bar.dtype == jnp.float32
    # the same VJP as the float32 einsum's on operands and cotangent rounded to bfloat16 (products of bfloat16
    # numbers are exact in float32: only the order of the sums differs)
    _, exact_vjp = jax.vjp(lambda a, b: jnp.einsum(spec, a, b), _rounded(x), _rounded(y))
    for got, want in zip((x_bar, y_bar), exact_vjp(_rounded(cotangent)), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(jnp.max(jnp.abs(want))))
    # and not the VJP with a float32 cotangent, which autodiff of the bfloat16 einsum computes
    _, autodiff_vjp = jax.vjp(lambda a, b: jnp.einsum(spec, a.astype(BF16), b.astype(BF16),
                                                      preferred_element_type=jnp.float32), x, y)
    assert not np.allclose(x_bar, autodiff_vjp(cotangent)[0], rtol=0, atol=1e-6)


def test_every_backward_product_is_a_bfloat16_product():
    x, y = _operands((5, 6), (6, 7))
    jaxpr = jax.make_jaxpr(jax.grad(lambda a, b: jnp.sum(jnp.sin(product("nr,rm->nm", a, b, "bfloat16"))),
                                    argnums=(0, 1)))(x, y)
    dtypes = _dot_operand_dtypes(jaxpr.jaxpr)
    assert len(dtypes) == 3 and all(d == ("bfloat16", "bfloat16") for d in dtypes), dtypes
    autodiff = jax.make_jaxpr(jax.grad(lambda a, b: jnp.sum(jnp.sin(jnp.einsum(
        "nr,rm->nm", a.astype(BF16), b.astype(BF16), preferred_element_type=jnp.float32))), argnums=(0, 1)))(x, y)
    assert any("float32" in d for d in _dot_operand_dtypes(autodiff.jaxpr))  # what this module is for


@pytest.mark.parametrize("spec, x_shape, y_shape", CASES)
def test_under_vmap_a_shared_operand_gets_the_sum_of_the_members_cotangents(spec, x_shape, y_shape):
    x, y = _operands(x_shape, y_shape, batch=(4,))  # x batched, y shared
    loss = lambda a, b: jnp.sum(jnp.sin(product(spec, a, b, "bfloat16")))  # noqa: E731
    x_bar, y_bar = jax.jit(jax.grad(lambda a, b: jnp.sum(jax.vmap(loss, (0, None))(a, b)), argnums=(0, 1)))(x, y)
    members = [jax.grad(loss, argnums=(0, 1))(x[i], y) for i in range(4)]
    np.testing.assert_allclose(x_bar, jnp.stack([m[0] for m in members]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y_bar, sum(m[1] for m in members), rtol=1e-4, atol=1e-4)


def test_a_shared_weight_gets_one_product_under_nested_vmap_and_a_batch_of_weights_its_own():
    x, w = _operands((5, 6), (6, 7), batch=(2, 3))  # (outer 2, inner 3) inputs; one weight
    loss = lambda a, b: jnp.sum(jnp.sin(product("nr,rm->nm", a, b, "bfloat16")))  # noqa: E731
    nested = lambda a, b: jnp.sum(jax.vmap(jax.vmap(loss, (0, None)), (0, None))(a, b))  # noqa: E731
    grad = jax.jit(jax.grad(nested, argnums=1))
    flat = jax.grad(lambda a, b: jnp.sum(jax.vmap(loss, (0, None))(a, b)), argnums=1)(x.reshape(6, 5, 6), w)
    np.testing.assert_allclose(grad(x, w), flat, rtol=1e-5, atol=1e-5)
    # no product makes the members' weight cotangents one by one ((2, 6, 7), (3, 6, 7) or (2, 3, 6, 7))
    hlo = grad.lower(x, w).compile().as_text()
    shapes = re.findall(r"= f32\[([\d,]*)\]\{[\d,]*\} dot\(", hlo)
    assert shapes and not any(s.endswith("6,7") and s != "6,7" for s in shapes), shapes
    # a batch of weights, each with its own inputs: each weight gets its own cotangent
    weights = jnp.stack([w, 2.0 * w])
    per_weight = jax.vmap(jax.grad(lambda a, b: jnp.sum(jax.vmap(loss, (0, None))(a, b)), argnums=1))(x, weights)
    for i in range(2):
        want = jax.grad(lambda a, b: jnp.sum(jax.vmap(loss, (0, None))(a, b)), argnums=1)(x[i], weights[i])
        np.testing.assert_allclose(per_weight[i], want, rtol=1e-5, atol=1e-5)


def test_the_fields_bfloat16_gradient_takes_only_bfloat16_products():
    """The vector field under ``vmap`` with ``compute_dtype="bfloat16"``: every product of its VJP, the weights'
    gradients included, has bfloat16 operands (the time basis's contractions aside, which are not the field's
    products and stay float32)."""
    config = SurrogateConfig(num_layers=2, num_heads=2, model_dim=8, width=16, key_dim=4, value_rank=2, mlp_width=8,
                             num_knots=2, max_distance=3, compute_dtype="bfloat16", position_family="none")
    params = init_surrogate(jax.random.PRNGKey(0), config)
    mask = jnp.ones((3, 10), bool)
    u = jnp.asarray(np.random.default_rng(0).normal(size=(3, 10, 16)), jnp.float32)
    laplacians = token_laplacians(mask)

    def pullback(p, v, t):
        return jax.vjp(lambda q, w: batch_vector_field(config, t, w, (q, laplacians, mask)), p, v)[1](v)

    with_vjp = jax.make_jaxpr(lambda p, v: pullback(p, v, 0.5))(params, u)
    forward = jax.make_jaxpr(lambda p, v: batch_vector_field(config, 0.5, v, (p, laplacians, mask)))(params, u)
    vjp_dots = [d for d in _dot_operand_dtypes(with_vjp.jaxpr) if "bfloat16" in d]
    forward_dots = [d for d in _dot_operand_dtypes(forward.jaxpr) if "bfloat16" in d]
    assert all(d == ("bfloat16", "bfloat16") for d in vjp_dots)
    assert len(vjp_dots) == 3 * len(forward_dots) > 0  # each product and its two cotangent products
