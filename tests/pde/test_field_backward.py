"""The vector field's hand-written backward (`pdeflow.pde.field_backward`, ``field_backward="custom"``): the same
values as the plain field, and the same VJP (w.r.t. the state, every parameter leaf, the Laplacians and depth-time)
as ``jax.vjp`` of the plain field, for every term combination, geometry, norm, position family, time-varying
group and compute dtype; through a whole solve against finite differences in float64."""

import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde import SolverConfig, SurrogateConfig, init_surrogate, terms
from pdeflow.pde.attention_pde import batch_vector_field, trajectory
from pdeflow.surrogate import token_laplacians
from tests.pde.backward_checks import assert_close, assert_same_vjp

BASE = SurrogateConfig(num_layers=3, num_heads=2, model_dim=6, width=6, key_dim=3, value_rank=2, mlp_width=5,
                       num_knots=3, max_distance=4)
GEOMETRIES = {"chain": {}, "causal": {"causal": True}, "grid": {"grid": (2, 4), "prefix_tokens": 1}}
TERM_SETS = [combo for size in (1, 2, 3) for combo in itertools.combinations(("diffusion", "attention", "residual"),
                                                                                 size)]
# every term combination on the padded chain; the geometries' own parts (causal order, grid bias, prefix tokens,
# the grid Laplacian) with the terms that read them
CASES = [(on, "chain") for on in TERM_SETS] + [(on, geometry) for geometry in ("causal", "grid")
                                               for on in (("diffusion", "attention", "residual"), ("attention",))]


def _problem(config, seed=0, dtype=jnp.float32):
    """Perturbed parameters (every leaf nonzero, value correction included), a batch of 2 with one padded input
    on a chain (N = 9) or the grid's N, a cotangent and a depth-time between knots."""
    rng = np.random.default_rng(seed)
    params = init_surrogate(jax.random.PRNGKey(seed), config)
    params = jax.tree.map(lambda x: jnp.asarray(x + 0.3 * rng.normal(size=x.shape), dtype), params)
    n = config.num_tokens or 9  # as many tokens as the grid's 1 + 2·4: the cases share their operations' shapes
    lengths = (n, n) if config.grid else (n, 5)
    mask = jnp.asarray(np.arange(n)[None, :] < np.array(lengths)[:, None])
    u = jnp.asarray(rng.normal(size=(2, n, config.width)), dtype)
    cotangent = jnp.asarray(rng.normal(size=(2, n, config.width)), dtype)
    laplacians = token_laplacians(mask, config).astype(dtype)
    return params, u, laplacians, mask, cotangent, jnp.asarray(0.7, dtype)


def _value_and_vjp(config, problem, backward, jit=False):
    """``(du, cotangents of (params, u, laplacians, t))`` of the field with ``field_backward=backward`` (compiled as
    one program with ``jit``, as in a solve: XLA then picks the products' kernels for the whole backward)."""
    params, u, laplacians, mask, cotangent, t = problem
    c = dataclasses.replace(config, field_backward=backward)

    def value_and_vjp(params, u, laplacians, t, cotangent):
        du, vjp = jax.vjp(lambda p, x, lap, s: batch_vector_field(c, s, x, (p, lap, mask)), params, u, laplacians, t)
        return du, vjp(cotangent)

    return (jax.jit(value_and_vjp) if jit else value_and_vjp)(params, u, laplacians, t, cotangent)


def _values_and_vjps(config, problem, jit=False):
    """`_value_and_vjp` of the plain and of the custom field."""
    return [_value_and_vjp(config, problem, backward, jit) for backward in ("autodiff", "custom")]


def _assert_field_vjps_agree(config, problem):
    """The same values, bit for bit, and the same VJP (`backward_checks.assert_same_vjp`) from the plain and the
    custom field. Returns autodiff's float32 cotangents."""
    computed = dict(zip(("autodiff", "custom"), _values_and_vjps(config, problem), strict=True))
    np.testing.assert_array_equal(computed["custom"][0], computed["autodiff"][0])  # the same operations, same order

    def vjps(backward, inputs):  # float32: the ones computed above
        return computed[backward][1] if inputs is problem else _value_and_vjp(config, inputs, backward)[1]

    return assert_same_vjp(vjps, problem)


@pytest.mark.parametrize("on, geometry", CASES, ids=[f"{'+'.join(on)}-{geometry}" for on, geometry in CASES])
def test_custom_backward_equals_autodiff_for_every_term_combination(on, geometry):
    config = dataclasses.replace(BASE, terms=on, **GEOMETRIES[geometry])
    grads = _assert_field_vjps_agree(config, _problem(config))
    assert float(jnp.max(jnp.abs(grads[1]))) > 0.1  # a gradient that can disagree


@pytest.mark.parametrize("options", [
    {"state_norm": "layer", "residual_norm": "none", "varying": ("value", "residual")},
    {"state_norm": "none", "residual_norm": "layer", "num_knots": 6},
    {"position_family": "t5", "position_buckets": 6},
    {"position_family": "linear"},
    {"position_family": "log", "causal": True},
    {"position_family": "none"},
    {"grid": (3, 3), "prefix_tokens": 0, "max_distance": 1},
], ids=["layer-varying", "knots-per-layer", "t5", "linear", "log-causal", "no-bias", "grid-clipped"])
def test_custom_backward_equals_autodiff_for_norms_families_and_varying_groups(options):
    config = dataclasses.replace(BASE, **options)
    _assert_field_vjps_agree(config, _problem(config, seed=1))


def test_custom_backward_falls_back_to_the_gather_past_the_design_limit(monkeypatch):
    """Beyond `_DESIGN_LIMIT` the position bias is a gather and its gradient the gather's transpose."""
    from pdeflow.pde import attention_pde

    monkeypatch.setattr(attention_pde, "_DESIGN_LIMIT", 1)
    _assert_field_vjps_agree(BASE, _problem(BASE, seed=2))


@pytest.mark.parametrize("geometry", ["chain", "grid"])
def test_custom_backward_in_bfloat16_is_within_bfloat16_round_off(geometry):
    """In bfloat16 both backwards round the products' operands, at different places (autodiff pairs float32
    cotangents with bfloat16 operands; the custom backward rounds both): they agree to bfloat16's precision,
    and the custom one is as close to the float32 gradient as autodiff's is. Compiled, as a solve compiles it
    (XLA:CPU once chose a kernel without bfloat16 products for one of the backward's layouts)."""
    config = dataclasses.replace(BASE, compute_dtype="bfloat16", **GEOMETRIES[geometry])
    problem = _problem(config, seed=3)
    (du, grads), (du_custom, grads_custom) = _values_and_vjps(config, problem, jit=True)
    np.testing.assert_array_equal(du_custom, du)
    assert_close(grads, grads_custom, rtol=3e-2)
    (_, exact), _ = _values_and_vjps(dataclasses.replace(config, compute_dtype="float32"), problem)
    error = lambda g: max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(exact)))  # noqa: E731
    assert error(grads_custom) < 3 * error(grads) + 1e-3


def test_custom_backward_refuses_terms_it_does_not_cover_and_bad_names():
    extra = terms.Term("drift", "γ", "gamma", "drift γ(t)", initial_value=1.0, positive=False,
                       parts=lambda x: terms.TermParts(pointwise=x.u))
    with terms.registered(extra):
        config = dataclasses.replace(BASE, terms=BASE.terms + ("drift",), field_backward="custom")
        problem = _problem(config)
        with pytest.raises(ValueError, match="field_backward='autodiff'"):
            batch_vector_field(config, problem[-1], problem[1], (problem[0], problem[2], problem[3]))
    with pytest.raises(ValueError, match="field_backward"):
        SurrogateConfig(field_backward="manual")


@pytest.mark.slow
def test_custom_backward_through_a_fixed_step_solve_matches_finite_differences_in_float64():
    """rk4 with the stored adjoint over the padded chain: the gradient w.r.t. every parameter along a random
    direction equals central differences of the loss in float64."""
    config = dataclasses.replace(BASE, num_layers=2, num_knots=2, field_backward="custom")
    solver = SolverConfig("rk4", adaptive=False, dt0=0.5, adjoint="stored")
    with jax.enable_x64(True):
        params, _, laplacians, mask, _, _ = _problem(config, seed=4, dtype=jnp.float64)
        rng = np.random.default_rng(4)
        hidden0 = jnp.asarray(rng.normal(size=(2, mask.shape[1], config.model_dim))) * mask[..., None]
        target = jnp.asarray(rng.normal(size=(config.num_layers + 1, 2, mask.shape[1], config.width)))

        def loss(params):
            states, _, _ = trajectory(params, config, solver, hidden0, laplacians, mask)
            return jnp.sum(target * jnp.tanh(states))

        grads = jax.jit(jax.grad(loss))(params)
        direction = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)
        analytic = sum(float(jnp.vdot(g, v)) for g, v in zip(jax.tree.leaves(grads), jax.tree.leaves(direction)))
        eps = 1e-6
        shifted = jax.jit(lambda s: loss(jax.tree.map(lambda x, v: x + s * eps * v, params, direction)))
        numeric = (float(shifted(1.0)) - float(shifted(-1.0))) / (2 * eps)
        assert abs(analytic) > 1e-2
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6)


def test_custom_backward_under_vmap_over_depth_time():
    """Multiple shooting vmaps the solve over intervals, so depth-time and the parameters evaluated at it are
    batched inside the custom VJP: the VJPs still equal autodiff's, interval by interval."""
    params, u, laplacians, mask, cotangent, _ = _problem(BASE, seed=5)

    def vjps(backward, inputs):
        params, u, laplacians, cotangent, times = inputs
        c = dataclasses.replace(BASE, field_backward=backward)
        field = lambda p, x, s: batch_vector_field(c, s, x, (p, laplacians, mask))  # noqa: E731
        return jax.jit(jax.vmap(lambda s: jax.vjp(field, params, u, s)[1](cotangent)))(times)

    assert_same_vjp(vjps, (params, u, laplacians, cotangent, jnp.asarray([0.2, 1.6])))
