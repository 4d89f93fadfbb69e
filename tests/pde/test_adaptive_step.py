"""The discrete adjoint of adaptive explicit Runge–Kutta solves (`pdeflow.pde.adaptive_step`,
``SolverConfig(adaptive=True, adjoint="discrete")``): diffrax's values, and the gradient of diffrax's recursive
adjoint."""

import dataclasses

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde import SolverConfig
from pdeflow.pde.adaptive_step import adaptive_discrete_solve
from pdeflow.pde.solve import SOLVERS, solve
from tests.pde.adjoint_checks import (
    CHAIN,
    assert_directional_derivative,
    assert_shooting_gradients_agree,
    assert_trajectory_gradients_agree,
)

ADAPTIVE = ["heun", "bosh3", "tsit5", "dopri5"]  # without and with first-same-as-last; 2 to 7 stages


def _problem(dtype):
    """A nonlinear, time-dependent field of a (5, 4) state with a matrix, a vector and a boolean mask in args."""
    rng = np.random.default_rng(0)
    y0 = rng.normal(size=(5, 4)).astype(dtype)
    weights = (0.8 * rng.normal(size=(4, 4))).astype(dtype)
    bias = np.full(4, 0.5, dtype)
    mask = np.array([True, True, False, True, True])

    def field(t, y, args):
        w, b, m = args
        return jnp.tanh(y @ w + b * jnp.sin(t)) * m[:, None] - 0.3 * y

    return field, y0, weights, bias, mask


def _solves(name, field, mask, save, recorded_steps=16, rtol=1e-2, atol=1e-3):
    solver, controller = SOLVERS[name](), diffrax.PIDController(rtol=rtol, atol=atol)

    def diffrax_solve(y0, w, b):
        solution = diffrax.diffeqsolve(
            diffrax.ODETerm(field), solver, 0.0, 6.0, 0.25, y0, (w, b, mask), saveat=diffrax.SaveAt(ts=save),
            stepsize_controller=controller, adjoint=diffrax.RecursiveCheckpointAdjoint(), max_steps=256, throw=False)
        return solution.ys, solution.result == diffrax.RESULTS.successful, solution.stats["num_steps"]

    def discrete_solve(y0, w, b):
        return adaptive_discrete_solve(field, solver, controller, y0, (w, b, mask), 6.0, save, 0.25, 256,
                                       recorded_steps)

    return diffrax_solve, discrete_solve


def _gradient(solve_fn, save_count):
    def loss(*inputs):
        ys, _, _ = solve_fn(*inputs)
        return jnp.sum(jnp.sin(ys) * jnp.arange(save_count)[:, None, None])
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))


@pytest.mark.parametrize("name", ADAPTIVE)
def test_same_solve_as_diffrax_and_the_recursive_adjoints_gradient_in_float64(name):
    """The same states bit for bit and the same number of steps (accepted and rejected) as `diffrax.diffeqsolve`;
    the gradient w.r.t. the initial state and every floating-point argument equal to diffrax's recursive
    checkpointing to 1e-12 of its scale (they agree to about 1e-15). heun takes about 40 steps: more than the
    16 the buffer holds, so it is differentiated in three chunks, each but the last recorded by solving again."""
    field, y0, weights, bias, mask = _problem(np.float64)
    with jax.enable_x64(True):
        save = jnp.arange(7.0)
        reference, discrete = _solves(name, field, jnp.asarray(mask), save)
        inputs = tuple(jnp.asarray(x) for x in (y0, weights, bias))
        ys_ref, ok_ref, steps_ref = jax.jit(reference)(*inputs)
        ys, ok, steps = jax.jit(discrete)(*inputs)
        assert bool(ok) and bool(ok_ref)
        assert int(steps) == int(steps_ref) >= 4
        np.testing.assert_array_equal(ys, ys_ref)
        want, got = _gradient(reference, 7)(*inputs), _gradient(discrete, 7)(*inputs)
        for g, w in zip(got, want):
            scale = float(jnp.abs(w).max())
            assert scale > 1e-3  # every input matters
            np.testing.assert_allclose(g / scale, w / scale, atol=1e-12)


def test_chunks_give_the_gradient_of_one_buffer():
    """A buffer of 2 steps (a 6-step tsit5 solve in 3 chunks, two recorded again) gives the gradient that a
    buffer holding every step gives, and the same states."""
    field, y0, weights, bias, mask = _problem(np.float32)
    save = jnp.arange(7.0)
    _, whole = _solves("bosh3", field, jnp.asarray(mask), save, recorded_steps=16)
    _, chunked = _solves("bosh3", field, jnp.asarray(mask), save, recorded_steps=2)
    inputs = tuple(jnp.asarray(x) for x in (y0, weights, bias))
    assert int(jax.jit(whole)(*inputs)[2]) > 4
    np.testing.assert_array_equal(jax.jit(chunked)(*inputs)[0], jax.jit(whole)(*inputs)[0])
    for g, w in zip(_gradient(chunked, 7)(*inputs), _gradient(whole, 7)(*inputs)):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-7)


def test_approaches_the_odes_derivative_with_save_times_inside_steps():
    """Save times that fall inside steps (every 0.3 layers: the interpolation's cotangents), tight tolerances (so
    the computed solution's derivative, whose step sizes are constants of the gradient, approaches the ODE's):
    the directional derivative against central differences, in float64."""
    field, y0, weights, bias, mask = _problem(np.float64)
    with jax.enable_x64(True):
        save = jnp.linspace(0.0, 6.0, 21)
        _, discrete = _solves("tsit5", field, jnp.asarray(mask), save, rtol=1e-9, atol=1e-9)
        direction = np.random.default_rng(1).normal(size=weights.shape)

        def loss(w):
            ys, _, _ = discrete(jnp.asarray(y0), w, jnp.asarray(bias))
            return jnp.sum(ys[1:] ** 3)

        assert_directional_derivative(loss, jnp.asarray(weights), direction, rtol=1e-6)


def test_a_solve_that_runs_out_of_steps_fails_as_diffrax_does():
    field, y0, weights, bias, mask = _problem(np.float32)
    config = SolverConfig("tsit5", adaptive=True, rtol=1e-6, atol=1e-8, max_steps=3, adjoint="discrete")
    args = (jnp.asarray(weights), jnp.asarray(bias), jnp.asarray(mask))
    ys, ok, steps = solve(field, jnp.asarray(y0), args, 6.0, jnp.arange(7.0), config)
    ys_ref, ok_ref, steps_ref = solve(field, jnp.asarray(y0), args, 6.0, jnp.arange(7.0),
                                      SolverConfig("tsit5", adaptive=True, rtol=1e-6, atol=1e-8, max_steps=3))
    assert not bool(ok) and not bool(ok_ref)
    assert int(steps) == int(steps_ref) == 3
    np.testing.assert_array_equal(ys, ys_ref)


def test_the_discrete_adjoint_takes_adaptive_steps_and_refuses_what_it_cannot_do():
    assert SolverConfig(adjoint="discrete").adaptive  # adaptive tsit5, the default preset's adjoint
    with pytest.raises(ValueError, match="stored adjoint needs fixed steps"):
        SolverConfig(adjoint="stored")
    field = lambda t, u, args: -u  # noqa: E731
    with pytest.raises(TypeError, match="one array state"):
        solve(field, {"a": jnp.ones(2)}, None, 1.0, jnp.arange(2.0), SolverConfig(adjoint="discrete"))
    with pytest.raises(ValueError, match="recorded_steps >= 1"):
        adaptive_discrete_solve(field, SOLVERS["tsit5"](), diffrax.PIDController(rtol=1e-2, atol=1e-3),
                                jnp.ones(2), None, 1.0, jnp.arange(2.0), 0.25, 16, 0)


ADAPTIVE_DISCRETE = SolverConfig("tsit5", adaptive=True, adjoint="discrete")  # the default preset's solve


@pytest.mark.slow
def test_surrogate_gradients_equal_the_recursive_adjoint():
    """The attention-PDE surrogate (every term, padded inputs, the hand-written field backward) as the default
    preset solves it: the same states and number of steps as the recursive adjoint's diffrax solve, and its
    gradients w.r.t. every parameter, in float32. (The solve takes the field as a black box; the patch grid is
    checked with the fixed-step discrete adjoint, `test_fixed_step`.)"""
    assert_trajectory_gradients_agree(dataclasses.replace(CHAIN, field_backward="custom"), 7, (7, 4),
                                      ADAPTIVE_DISCRETE, dataclasses.replace(ADAPTIVE_DISCRETE, adjoint="recursive"),
                                      states_tol=1e-6)


@pytest.mark.slow
def test_multiple_shooting_vmaps_the_adaptive_discrete_adjoint():
    """`interval_ends` solves every unit interval at once (vmap of the adaptive solve): same ends and gradients.
    bosh3 (first-same-as-last, 3 stages): tsit5 under `vmap` took 48 s to compile and run here."""
    solver = SolverConfig("bosh3", adaptive=True, adjoint="discrete")
    assert_shooting_gradients_agree(dataclasses.replace(CHAIN, field_backward="custom"), solver,
                                    dataclasses.replace(solver, adjoint="recursive"))
