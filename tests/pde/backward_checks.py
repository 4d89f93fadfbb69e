"""Checks that the hand-written backwards' tests share (`test_field_backward`, `test_maps_backward`): a custom VJP
against ``jax.vjp`` of the plain function, in float64 and in float32."""

import jax
import jax.numpy as jnp
import numpy as np


def assert_close(reference, value, rtol):
    """Every leaf within ``rtol`` of the reference leaf's largest magnitude (round-off scales with it)."""
    for (path, ref), got in zip(jax.tree_util.tree_flatten_with_path(reference)[0], jax.tree.leaves(value),
                                strict=True):
        scale = float(jnp.max(jnp.abs(ref))) + 1e-3
        np.testing.assert_allclose(np.asarray(got), np.asarray(ref), rtol=0, atol=rtol * scale,
                                   err_msg=jax.tree_util.keystr(path))


def in_float64(tree):
    """``tree`` with its float32 leaves as float64 (under ``jax.enable_x64``): the same numbers, exactly."""
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float64) if jnp.asarray(x).dtype == jnp.float32 else x, tree)


def assert_same_vjp(vjps, inputs):
    """``vjps(backward, inputs)`` -> cotangents, for ``backward`` in ("autodiff", "custom"). The two are the same
    mathematics: in float64 they agree to 1e-12 of each leaf's largest magnitude. In float32 the custom one is as
    close to the float64 cotangents as autodiff's own: within 3 x autodiff's error + 2e-6 of that magnitude. (A bound
    on the float32 difference alone fell below float32's own error on reduced scalars: the depth-time cotangent
    with causal attention is 4.4e-6 of its size from float64 in autodiff and 6.4e-6 in the custom backward, on an
    Intel Xeon; their difference, 2.04e-6, failed a 2e-6 bound there and passed on an AMD EPYC.)"""
    grads, grads_custom = vjps("autodiff", inputs), vjps("custom", inputs)
    with jax.enable_x64(True):
        exact, exact_custom = (vjps(backward, in_float64(inputs)) for backward in ("autodiff", "custom"))
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(exact_custom))
        assert_close(exact, exact_custom, rtol=1e-12)
        for (path, x), a, c in zip(jax.tree_util.tree_flatten_with_path(exact)[0], jax.tree.leaves(grads),
                                   jax.tree.leaves(grads_custom), strict=True):
            scale = float(jnp.max(jnp.abs(x))) + 1e-3
            error, error_custom = (float(jnp.max(jnp.abs(jnp.asarray(g, jnp.float64) - x))) for g in (a, c))
            assert error_custom <= 3 * error + 2e-6 * scale, (jax.tree_util.keystr(path), error_custom, error)
    return grads
