import diffrax  # noqa: F401
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde.grid import chain_laplacian
from pdeflow.pde.solve import SolverConfig, SolverError, solve
from pdeflow.surrogate import raise_if_failed


def _diffusion_problem():
    """du/dt = D Δu on a chain of 8 tokens (2 padded): exact solution exp(tDΔ) u0 by eigendecomposition."""
    lap = np.asarray(chain_laplacian(jnp.array([1] * 6 + [0] * 2, bool)), np.float64)
    u0 = np.random.default_rng(1).normal(size=(8, 2))
    u0[6:] = 0.0
    d = 0.7
    values, vectors = np.linalg.eigh(d * lap)

    def exact(t):
        return vectors @ np.diag(np.exp(values * t)) @ vectors.T @ u0

    return lap, u0, d, exact


# Tsit5's observed order approaches 5 from above (6.3, 5.9, 5.6, 5.3 as dt halves from 0.4), so it is measured
# at smaller steps and with a wider band; low-order methods are in their asymptotic regime already.
@pytest.mark.parametrize("name, order, steps, band", [
    ("euler", 1, (0.2, 0.1), 0.35), ("heun", 2, (0.2, 0.1), 0.35), ("midpoint", 2, (0.2, 0.1), 0.35),
    ("bosh3", 3, (0.2, 0.1), 0.35), ("rk4", 4, (0.2, 0.1), 0.35), ("tsit5", 5, (0.05, 0.025), 0.5)])
def test_fixed_step_convergence_order_on_linear_diffusion(name, order, steps, band):
    with jax.enable_x64(True):
        lap, u0, d, exact = _diffusion_problem()
        field = lambda t, u, args: args * (jnp.asarray(lap) @ u)  # noqa: E731
        errors = []
        for dt in steps:
            ys, ok, _ = solve(field, jnp.asarray(u0), d, 2.0, jnp.array([2.0]), SolverConfig(name, False, dt))
            assert bool(ok)
            errors.append(np.abs(np.asarray(ys[0]) - exact(2.0)).max())
        observed = np.log2(errors[0] / errors[1])
        assert abs(observed - order) < band, (errors, observed)


def test_adaptive_solve_meets_tolerance_and_conserves_mass():
    with jax.enable_x64(True):
        lap, u0, d, exact = _diffusion_problem()
        field = lambda t, u, args: args * (jnp.asarray(lap) @ u)  # noqa: E731
        times = jnp.arange(4.0)
        ys, ok, steps = solve(field, jnp.asarray(u0), d, 3.0, times, SolverConfig(rtol=1e-7, atol=1e-9))
        assert bool(ok) and int(steps) > 3
        for i, t in enumerate(np.asarray(times)):
            np.testing.assert_allclose(np.asarray(ys[i]), exact(t), atol=1e-6)
            np.testing.assert_allclose(np.asarray(ys[i]).sum(0), u0.sum(0), atol=1e-9)


def test_max_steps_is_reported_not_hidden():
    lap, u0, _, _ = _diffusion_problem()
    field = lambda t, u, args: args * (jnp.asarray(lap, jnp.float32) @ u)  # noqa: E731
    config = SolverConfig(max_steps=4)
    ys, ok, _ = solve(field, jnp.asarray(u0, jnp.float32), 500.0, 3.0, jnp.arange(4.0), config)
    assert not bool(ok)
    finite = int(jnp.cumprod(jnp.all(jnp.isfinite(ys), axis=(1, 2))).sum())
    with pytest.raises(SolverError, match=r"max_steps reached.*Remedy: raise max_steps"):
        raise_if_failed(ok, finite, 3, config, "test")


def test_solver_config_rejects_bad_choices():
    with pytest.raises(ValueError, match="adaptive=False"):
        SolverConfig("euler", adaptive=True)
    with pytest.raises(ValueError, match="adaptive=False"):
        SolverConfig("rk4", adaptive=True)
    with pytest.raises(ValueError, match="unknown solver"):
        SolverConfig("rk45")
    with pytest.raises(ValueError, match="unknown adjoint"):
        SolverConfig(adjoint="magic")


@pytest.mark.parametrize("name", ["rk4", "tsit5"])  # tsit5 carries solver state (first same as last)
def test_stored_adjoint_solves_and_differentiates_like_diffrax(name):
    """The stored adjoint runs diffrax's own solver steps in a scan: the same states, the same gradients."""
    with jax.enable_x64(True):
        lap, u0, d, exact = _diffusion_problem()
        field = lambda t, u, args: args * jnp.tanh(jnp.asarray(lap) @ u) + 0.1 * t * u  # noqa: E731
        times = jnp.arange(4.0)

        def run(adjoint, coefficient):
            config = SolverConfig(name, False, 0.25, adjoint=adjoint)
            ys, ok, steps = solve(field, jnp.asarray(u0), coefficient, 3.0, times, config)
            assert bool(ok) and int(steps) == 12
            return ys

        np.testing.assert_allclose(run("stored", d), run("recursive", d), rtol=1e-12, atol=1e-12)
        loss = lambda adjoint: lambda c: jnp.sum(run(adjoint, c) ** 2)  # noqa: E731
        np.testing.assert_allclose(jax.grad(loss("stored"))(d), jax.grad(loss("recursive"))(d), rtol=1e-10)
        eps = 1e-6  # and against finite differences
        numeric = (loss("stored")(d + eps) - loss("stored")(d - eps)) / (2 * eps)
        np.testing.assert_allclose(jax.grad(loss("stored"))(d), numeric, rtol=1e-6)


def test_stored_adjoint_needs_fixed_steps_that_land_on_the_save_times():
    with pytest.raises(ValueError, match="fixed steps"):
        SolverConfig(adjoint="stored")
    field = lambda t, u, args: -u  # noqa: E731
    with pytest.raises(ValueError, match="dt0 = 1/k"):
        solve(field, jnp.ones(2), None, 3.0, jnp.arange(4.0), SolverConfig("rk4", False, 0.3, adjoint="stored"))
    ys, ok, _ = solve(field, jnp.ones(2), None, 3.0, jnp.arange(4.0),
                      SolverConfig("rk4", False, 0.25, max_steps=4, adjoint="stored"))
    assert not bool(ok)  # more steps than max_steps: reported, like diffrax's own loop
