"""The maps read off the states with a hand-written backward (`pdeflow.pde.maps_backward`, ``field_backward="custom"``):
the same log maps as the plain read-out (`attention_pde.log_maps_at` under ``vmap``), and the same VJP (w.r.t. the
states, every parameter leaf and the times) as ``jax.vjp`` of the plain read-out, for every geometry, norm and
position family, in float32, float64 and bfloat16."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde import SurrogateConfig, init_surrogate
from pdeflow.pde.attention_pde import batch_attention_log_maps, batch_log_maps_at
from tests.pde.backward_checks import assert_close, assert_same_vjp

BASE = SurrogateConfig(num_layers=3, num_heads=2, model_dim=6, width=6, key_dim=3, value_rank=2, mlp_width=5,
                       num_knots=3, max_distance=4)
CASES = {
    "chain": {},
    "causal": {"causal": True},
    "grid": {"grid": (2, 4), "prefix_tokens": 1},
    "grid-clipped": {"grid": (3, 3), "prefix_tokens": 0, "max_distance": 1},
    "layer-norm-knots-per-layer": {"state_norm": "layer", "num_knots": 6},
    "no-norm": {"state_norm": "none"},
    "t5": {"position_family": "t5", "position_buckets": 6},
    "linear": {"position_family": "linear"},
    "log-causal": {"position_family": "log", "causal": True},
    "no-bias": {"position_family": "none"},
}


def _problem(config, seed=0, dtype=jnp.float32):
    """Perturbed parameters, three inputs on a chain (N = 9, two padded) or the grid's N, states at three times
    between knots ``(T, B, N, r)`` and a cotangent of the log maps ``(T, B, H, N, N)`` (nonzero on padded keys too)."""
    rng = np.random.default_rng(seed)
    params = init_surrogate(jax.random.PRNGKey(seed), config)
    params = jax.tree.map(lambda x: jnp.asarray(x + 0.3 * rng.normal(size=x.shape), dtype), params)
    n = config.num_tokens or 9
    lengths = (n, n, n) if config.grid else (n, 5, 2)
    mask = jnp.asarray(np.arange(n)[None, :] < np.array(lengths)[:, None])
    times = jnp.asarray([0.0, 0.7, 1.6], dtype)
    states = jnp.asarray(rng.normal(size=(3, 3, n, config.width)), dtype)
    cotangent = jnp.asarray(rng.normal(size=(3, 3, config.num_heads, n, n)), dtype)
    return params, times, states, mask, cotangent


def _value_and_vjp(config, problem, backward, jit=False):
    """``(log maps, cotangents of (params, times, states))`` of `batch_log_maps_at` with ``field_backward=backward``."""
    params, times, states, mask, cotangent = problem
    c = dataclasses.replace(config, field_backward=backward)

    def value_and_vjp(params, times, states, cotangent):
        out, vjp = jax.vjp(lambda p, t, s: batch_log_maps_at(p, c, t, s, mask), params, times, states)
        return out, vjp(cotangent)

    return (jax.jit(value_and_vjp) if jit else value_and_vjp)(params, times, states, cotangent)


def _assert_same_maps(reference, value, mask, atol):
    """The maps (not the −1e9 of a masked key's log) agree to ``atol``, and a padded query row is a distribution."""
    maps = np.exp(np.asarray(value, np.float64))
    np.testing.assert_allclose(maps, np.exp(np.asarray(reference, np.float64)), rtol=0, atol=atol)
    np.testing.assert_allclose(maps.sum(-1), 1.0, atol=1e-5)
    assert np.all(maps[np.broadcast_to(~np.asarray(mask)[None, :, None, None, :], maps.shape)] == 0)  # padded keys


@pytest.mark.parametrize("case", list(CASES))
def test_custom_read_out_equals_autodiff(case):
    config = dataclasses.replace(BASE, **CASES[case])
    problem = _problem(config)
    computed = {backward: _value_and_vjp(config, problem, backward) for backward in ("autodiff", "custom")}
    _assert_same_maps(computed["autodiff"][0], computed["custom"][0], problem[3], atol=1e-6)

    def vjps(backward, inputs):
        return computed[backward][1] if inputs is problem else _value_and_vjp(config, inputs, backward)[1]

    grads = assert_same_vjp(vjps, problem)
    assert float(jnp.max(jnp.abs(grads[2]))) > 0.1  # a state gradient that can disagree
    assert float(jnp.max(jnp.abs(grads[1]))) > 1e-3  # and a gradient to the times (through the basis)


def test_custom_read_out_falls_back_to_the_gather_past_the_design_limit(monkeypatch):
    from pdeflow.pde import attention_pde

    monkeypatch.setattr(attention_pde, "_DESIGN_LIMIT", 1)
    problem = _problem(BASE, seed=2)
    assert_same_vjp(lambda backward, inputs: _value_and_vjp(BASE, inputs, backward)[1], problem)


@pytest.mark.parametrize("case", ["chain", "grid"])
def test_custom_read_out_in_bfloat16_is_within_bfloat16_round_off(case):
    """Compiled, as a fit compiles it: the maps agree to bfloat16's precision and the custom backward is as close to
    the float32 gradient as autodiff's is."""
    config = dataclasses.replace(BASE, compute_dtype="bfloat16", **CASES[case])
    problem = _problem(config, seed=3)
    (maps, grads), (maps_custom, grads_custom) = (_value_and_vjp(config, problem, b, jit=True)
                                                  for b in ("autodiff", "custom"))
    _assert_same_maps(maps, maps_custom, problem[3], atol=2e-2)
    assert_close(grads, grads_custom, rtol=5e-2)
    _, exact = _value_and_vjp(dataclasses.replace(config, compute_dtype="float32"), problem, "autodiff")
    error = lambda g: max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(exact)))  # noqa: E731
    assert error(grads_custom) < 3 * error(grads) + 1e-3


def test_every_block_s_maps_are_read_at_its_layer_time():
    """`batch_attention_log_maps` reads block l's maps at t = l on the state saved there (the last state is the
    output's, which no block reads)."""
    config = dataclasses.replace(BASE, field_backward="custom")
    params, _, states, mask, _ = _problem(config, seed=4)
    states = jnp.concatenate([states, states[:1]])  # (L + 1, B, N, r)
    maps = batch_attention_log_maps(params, config, states, mask)
    assert maps.shape == (3, 3, config.num_heads, 9, 9)
    np.testing.assert_allclose(maps[2], batch_log_maps_at(params, config, jnp.asarray([2.0]), states[2:3], mask)[0],
                               atol=1e-6)
