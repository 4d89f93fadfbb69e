"""The discrete adjoint of fixed-step explicit Runge–Kutta solves (`pdeflow.pde.fixed_step`, adjoint="discrete")."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde import SolverConfig
from pdeflow.pde.fixed_step import EULER, Tableau, discrete_adjoint_solve, tableau_of
from pdeflow.pde.solve import SOLVERS, STAGES, solve
from tests.pde.adjoint_checks import (
    CHAIN,
    GRID,
    assert_directional_derivative,
    assert_shooting_gradients_agree,
    assert_trajectory_gradients_agree,
)

EXPLICIT = ["euler", "heun", "midpoint", "ralston", "rk4", "bosh3", "tsit5", "dopri5", "dopri8"]


def _tiny_problem(dtype=np.float64):
    """A nonlinear, time-dependent field of a (4, 3) state with a matrix, a scalar and a boolean mask in args."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, 3)).astype(dtype)
    u0 = rng.normal(size=(4, 3)).astype(dtype)
    mask = np.array([True, True, True, False])[:, None]

    def field(t, u, args):
        scale, w, m = args
        return m * (scale * jnp.tanh(u @ w) - 0.3 * jnp.sin(t) * u)

    return field, u0, (dtype(0.7), weights), mask


@pytest.mark.parametrize("name", EXPLICIT)
def test_tableau_matches_the_solver_and_skips_unused_stages(name):
    tableau = tableau_of(SOLVERS[name]())
    # the first-same-as-last stage of tsit5/dopri5/dopri8 is skipped (diffrax's dopri8 has 14 stages, 13 used;
    # STAGES lists 12 for it)
    assert sum(tableau.needed) == {"dopri8": 13}.get(name, STAGES[name])
    np.testing.assert_allclose(sum(tableau.b), 1.0, rtol=1e-12)  # consistency: order >= 1
    for row, c in zip(tableau.a[1:], tableau.c[1:]):
        np.testing.assert_allclose(sum(row), c, atol=1e-12)  # row sums are the stage times


def test_tableau_refuses_implicit_solvers_and_bad_shapes():
    with pytest.raises(ValueError, match="explicit Runge"):
        tableau_of(diffrax.Kvaerno3())
    with pytest.raises(ValueError, match="a\\[i\\] of length i"):
        Tableau(a=((), (0.5, 0.5)), b=(0.5, 0.5), c=(0.0, 1.0))
    assert tableau_of(diffrax.Euler()) is EULER


# one tableau of each kind (single stage, classical four, first-same-as-last with a skipped stage); the
# rest share the code (their tableaux are checked above)
@pytest.mark.parametrize("name", ["euler", "rk4", "tsit5"])
def test_discrete_adjoint_equals_autodiff_through_diffrax(name):
    """Same states as diffrax's fixed-step solve and the same gradient w.r.t. the initial state and every
    floating-point argument (the boolean mask gets none) as autodiff through diffrax's own steps (the stored
    adjoint, itself equal to diffrax's recursive checkpointing: test_solve), in float64."""
    field, u0, (scale, weights), mask = _tiny_problem()
    with jax.enable_x64(True):
        def run(adjoint, y0, scale, weights):
            ys, ok, steps = solve(field, y0, (scale, weights, jnp.asarray(mask)), 3.0, np.arange(4.0),
                                  SolverConfig(name, False, 0.25, adjoint=adjoint))
            return ys

        def loss(adjoint):
            def value(*x):
                ys = run(adjoint, *x)
                return jnp.sum(jnp.sin(ys) * jnp.arange(4.0)[:, None, None]), ys
            return jax.jit(jax.grad(value, argnums=(0, 1, 2), has_aux=True))

        inputs = (jnp.asarray(u0), jnp.asarray(scale), jnp.asarray(weights))
        got, ys = loss("discrete")(*inputs)
        want, ys_diffrax = loss("stored")(*inputs)
        np.testing.assert_allclose(ys, ys_diffrax, rtol=1e-13, atol=1e-13)
        for g, w in zip(got, want):
            assert float(jnp.abs(w).max()) > 1e-3  # every input matters
            np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-13)
        # the masked row never moves, so it stays y0's row at every save time, weighted 0 + 1 + 2 + 3
        np.testing.assert_allclose(got[0][3], 6 * np.cos(u0[3]), rtol=1e-12)


def test_discrete_adjoint_matches_finite_differences_in_float64():
    field, u0, (scale, weights), mask = _tiny_problem()
    with jax.enable_x64(True):
        direction = np.random.default_rng(1).normal(size=weights.shape)

        def loss(w):
            ys, _, _ = solve(field, jnp.asarray(u0), (jnp.asarray(scale), w, jnp.asarray(mask)), 2.0,
                             jnp.arange(3.0), SolverConfig("rk4", False, 0.5, adjoint="discrete"))
            return jnp.sum(ys[1:] ** 3)

        assert_directional_derivative(loss, jnp.asarray(weights), direction, rtol=1e-7)


def test_discrete_adjoint_solve_takes_pytree_states_and_checks_its_grid():
    def field(t, y, args):
        return {"a": -args * y["b"], "b": y["a"]}  # a harmonic oscillator as a dict state

    y0 = {"a": jnp.ones(2), "b": jnp.zeros(2)}
    ys = discrete_adjoint_solve(field, tableau_of(SOLVERS["rk4"]()), y0, 1.0, 0.01, 50, 2)
    np.testing.assert_allclose(ys["b"][2], np.sin(1.0), atol=1e-6)
    grad = jax.grad(lambda k: discrete_adjoint_solve(field, EULER, y0, k, 0.1, 5, 1)["b"][-1].sum())(1.0)
    assert np.isfinite(grad)
    with pytest.raises(ValueError, match="steps >= 1"):
        discrete_adjoint_solve(field, EULER, y0, 1.0, 0.1, 0, 1)


def test_discrete_adjoint_needs_fixed_steps_that_land_on_the_save_times():
    field = lambda t, u, args: -u  # noqa: E731
    with pytest.raises(ValueError, match="dt0 = 1/k"):
        solve(field, jnp.ones(2), None, 3.0, jnp.arange(4.0), SolverConfig("rk4", False, 0.3, adjoint="discrete"))
    ys, ok, _ = solve(field, jnp.ones(2), None, 3.0, jnp.arange(4.0),
                      SolverConfig("rk4", False, 0.25, max_steps=4, adjoint="discrete"))
    assert not bool(ok) and np.isnan(np.asarray(ys)).all()  # more steps than max_steps: reported


@pytest.mark.slow
@pytest.mark.parametrize("config, n, lengths", [(CHAIN, 7, (7, 4)), (GRID, 10, (10, 10))], ids=["chain", "grid"])
def test_surrogate_gradients_equal_the_stored_adjoint(config, n, lengths):
    """The attention-PDE surrogate (every term, padded inputs on the chain, the patch grid with a class token):
    the discrete adjoint's states and gradients w.r.t. every parameter equal the stored adjoint's in float32."""
    assert_trajectory_gradients_agree(config, n, lengths, SolverConfig("rk4", adaptive=False, dt0=1.0,
                                                                       adjoint="discrete"),
                                      SolverConfig("rk4", adaptive=False, dt0=1.0, adjoint="stored"))


@pytest.mark.slow
def test_multiple_shooting_vmaps_the_discrete_adjoint():
    """`interval_ends` solves every unit interval at once (vmap of the solve): same ends and gradients."""
    assert_shooting_gradients_agree(CHAIN, SolverConfig("heun", adaptive=False, dt0=1.0, adjoint="discrete"),
                                    SolverConfig("heun", adaptive=False, dt0=1.0, adjoint="stored"))
