import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde import basis


@pytest.mark.parametrize("num_knots", [1, 3, 6])
def test_weights_are_a_partition_of_unity(num_knots):
    knots = jnp.asarray(basis.knot_times(num_knots, 6.0))
    for t in np.linspace(0.0, 6.0, 25):
        w = np.asarray(basis.basis_weights(jnp.float32(t), knots))
        assert w.shape == (num_knots,) and np.all(w >= 0)
        np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)


def test_knots_dominate_at_their_own_time_and_curve_is_smooth():
    knots = jnp.asarray(basis.knot_times(6, 6.0))
    np.testing.assert_allclose(knots, np.arange(6))
    for k in range(6):
        assert np.argmax(basis.basis_weights(knots[k], knots)) == k
        assert basis.basis_weights(knots[k], knots)[k] > 0.75
    coefficients = jnp.arange(6.0) ** 2
    f = lambda t: basis.evaluate(coefficients, t, knots)  # noqa: E731
    second = jax.grad(jax.grad(f))
    assert all(np.isfinite(second(jnp.float32(t))) for t in np.linspace(0, 6, 13))


def test_knot_count_is_validated():
    with pytest.raises(ValueError, match="num_knots"):
        basis.knot_times(0, 6.0)


@pytest.mark.parametrize("width", [0.25, 0.5, 1.0])
def test_interpolating_coefficients_pass_through_the_given_values(width):
    knots = basis.knot_times(6, 6.0)
    values = np.random.default_rng(0).normal(size=(6, 3, 2)).astype(np.float32)
    coefficients = basis.interpolating_coefficients(values, knots, knots, width)
    assert coefficients.shape == values.shape
    for t, value in zip(knots, values):
        np.testing.assert_allclose(basis.evaluate(jnp.asarray(coefficients), jnp.float32(t), jnp.asarray(knots),
                                                  width), value, atol=1e-4)


def test_a_multiple_of_the_depth_puts_that_many_knots_in_each_unit_interval():
    np.testing.assert_allclose(basis.knot_times(12, 6.0), np.arange(12) / 2)
    np.testing.assert_allclose(basis.knot_times(4, 6.0), np.linspace(0, 5, 4))  # not a multiple: spread on [0, T-1]
