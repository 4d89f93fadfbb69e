"""`pdeflow.information.depth`: the kernel's attention entropy along depth-time."""

import dataclasses

import jax
import numpy as np

from pdeflow.information import attention_entropy
from pdeflow.information.depth import attention_entropy_along_depth
from pdeflow.models.trace import Trace
from pdeflow.pde import attention_pde as pde
from pdeflow.pde.attention_pde import SurrogateConfig
from pdeflow.pde.solve import SolverConfig
from pdeflow.surrogate import predict_attention

L, N = 3, 7
CONFIG = SurrogateConfig(num_layers=L, num_heads=2, model_dim=12, width=8, key_dim=4, value_rank=2, mlp_width=8,
                         num_knots=L, depth_time="blockwise", held_maps=True)


def _trace():
    rng = np.random.default_rng(4)
    hidden = 2.0 * rng.normal(size=(L + 1, 4, N, 12)).astype(np.float32)
    attention = rng.dirichlet(np.ones(N), size=(L, 4, 2, N)).astype(np.float32)
    mask = np.ones((4, N), bool)
    mask[1, 5:] = False
    return Trace(hidden, attention, mask)


def test_with_held_maps_the_entropy_is_the_blocks_over_each_interval():
    """Held maps act over the whole interval [l, l+1], so the entropy along depth is flat there and equals that of
    the maps compared with block l; with maps read off the moving state it is not flat."""
    params = pde.init_surrogate(jax.random.PRNGKey(0), CONFIG)
    trace, solver = _trace(), SolverConfig("rk4", adaptive=False, dt0=0.25)
    t, entropy = attention_entropy_along_depth(params, CONFIG, solver, trace, points_per_layer=4, batch_size=2)
    assert t.shape == (4 * L + 1,) and entropy.shape == (4 * L + 1, 2)
    maps = predict_attention(params, CONFIG, solver, trace, batch_size=2)  # (L, B, H, N, N)
    mask = np.asarray(trace.mask)
    at_blocks = np.nansum(np.asarray(attention_entropy(maps, mask)), axis=(1, 3)) / mask.sum()  # (L, H)
    for block in range(L):
        np.testing.assert_allclose(entropy[4 * block:4 * block + 4], np.repeat(at_blocks[block:block + 1], 4, 0),
                                   rtol=1e-5)
    np.testing.assert_allclose(entropy[-1], at_blocks[-1], rtol=1e-5)  # t = L: the last interval's maps
    _, live = attention_entropy_along_depth(params, dataclasses.replace(CONFIG, held_maps=False), solver, trace,
                                            points_per_layer=4, batch_size=2)
    np.testing.assert_allclose(live[0], entropy[0], rtol=1e-5)  # the same kernel on the same u(0) at t = 0
    assert np.abs(live[1:4] - live[0]).max() > 1e-3  # read off the moving state, the maps change in an interval
