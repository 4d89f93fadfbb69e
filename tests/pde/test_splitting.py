"""``SurrogateConfig.splitting="lie"``: each unit interval [l, l+1] solved as its token-mixing terms (diffusion,
attention) over a unit of time, then its pointwise terms (the residual MLP) over another, as block l's attention comes
before its feed-forward network (Lie–Trotter splitting)."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.pde import attention_pde as pde
from pdeflow.pde.attention_pde import SurrogateConfig
from tests.pde.test_depth_time import L, _rk4_step
from tests.pde.test_held_maps import RK4, _maps
from tests.pde.test_held_maps import _setup as held_setup


def _setup(**kwargs):
    """`test_held_maps`'s blockwise surrogate (knots that differ, held maps, states large enough that the maps
    move within an interval), split."""
    config, params, hidden0, laplacians, mask = held_setup(**kwargs)
    return dataclasses.replace(config, splitting="lie"), params, hidden0, laplacians, mask


def _field(config, params, laplacians, mask, block, maps=None):
    held = () if maps is None else (maps,)
    return lambda y: pde.batch_vector_field(config, jnp.float32(block), y, (params, laplacians, mask, *held))


def test_the_phases_are_the_mixing_terms_then_the_pointwise_ones():
    config, *_ = _setup()
    assert [phase.terms for phase in pde.interval_phases(config)] == [("diffusion", "attention"), ("residual",)]
    assert all(phase.splitting == "none" for phase in pde.interval_phases(config))
    without_attention = dataclasses.replace(config, terms=("diffusion", "residual"))
    assert [phase.terms for phase in pde.interval_phases(without_attention)] == [("diffusion",), ("residual",)]
    assert pde.interval_phases(dataclasses.replace(config, terms=("residual",))) == (
        dataclasses.replace(config, terms=("residual",), splitting="none"),)
    unsplit = dataclasses.replace(config, splitting="none")
    assert pde.interval_phases(unsplit) == (unsplit,)


def test_each_interval_mixes_with_the_maps_of_u_l_then_moves_each_token_by_block_ls_mlp():
    config, params, hidden0, laplacians, mask = _setup()
    mixing, pointwise = pde.interval_phases(config)
    states, ok, steps = pde.trajectory(params, config, RK4, hidden0, laplacians, mask,
                                       np.linspace(0.0, L, 2 * L + 1, dtype=np.float32))
    assert bool(ok) and int(steps) == 2 * 2 * L  # two steps of 0.5 in each phase of each interval
    u = pde.initial_state(params, hidden0)
    for block in range(L):
        f = _field(mixing, params, laplacians, mask, block, _maps(params, config, block, u, mask))
        u = _rk4_step(f, _rk4_step(f, u, 0.5), 0.5)
        np.testing.assert_allclose(states[2 * block + 1], u, rtol=1e-5, atol=1e-6)  # t = l + 1/2: mixed
        f = _field(pointwise, params, laplacians, mask, block)
        u = _rk4_step(f, _rk4_step(f, u, 0.5), 0.5)
        np.testing.assert_allclose(states[2 * block + 2], u, rtol=1e-5, atol=1e-6)
    ends, *_ = pde.trajectory(params, config, RK4, hidden0, laplacians, mask)
    np.testing.assert_allclose(ends, states[::2], rtol=1e-6, atol=1e-7)
    together, *_ = pde.trajectory(params, dataclasses.replace(config, splitting="none"), RK4, hidden0, laplacians,
                                  mask)
    assert np.abs(np.asarray(together[-1] - ends[-1])).max() > 1e-3  # splitting is not the simultaneous flow


def test_with_terms_of_one_kind_the_split_is_the_simultaneous_solve():
    for terms in (("diffusion", "attention"), ("residual",)):
        config, params, hidden0, laplacians, mask = _setup(terms=terms)
        split, *_ = pde.trajectory(params, config, RK4, hidden0, laplacians, mask)
        together, *_ = pde.trajectory(params, dataclasses.replace(config, splitting="none"), RK4, hidden0,
                                      laplacians, mask)
        np.testing.assert_allclose(split, together, rtol=1e-6, atol=1e-7)


def test_the_split_differs_from_the_simultaneous_flow_at_second_order_in_the_pointwise_term():
    """With the MLP's output scaled by ε the two flows agree to first order in ε: the difference is the
    commutator's, ε times a fixed amount plus O(ε²), so halving ε halves it."""
    config, params, hidden0, laplacians, mask = _setup()
    fine = dataclasses.replace(RK4, dt0=1 / 8)
    together = dataclasses.replace(config, splitting="none")

    def difference(scale):
        p = dict(params, residual=dict(params["residual"], w2=scale * params["residual"]["w2"],
                                       b2=scale * params["residual"]["b2"]))
        a, *_ = pde.trajectory(p, config, fine, hidden0, laplacians, mask)
        b, *_ = pde.trajectory(p, together, fine, hidden0, laplacians, mask)
        return float(jnp.abs(a[1] - b[1]).max())  # the first interval: the same start

    coarse, half = difference(0.02), difference(0.01)
    assert coarse > 1e-5
    assert 1.8 < coarse / half < 2.2


def test_bad_splitting_settings_say_what_to_fix():
    with pytest.raises(ValueError, match="unknown splitting"):
        SurrogateConfig(splitting="strang")
    with pytest.raises(ValueError, match="depth_time='blockwise'"):
        SurrogateConfig(splitting="lie")
    config, params, hidden0, laplacians, mask = _setup()
    with pytest.raises(ValueError, match="1 or a multiple of 2 states per interval"):
        pde.trajectory(params, config, RK4, hidden0, laplacians, mask, np.linspace(0.0, L, 3 * L + 1))
