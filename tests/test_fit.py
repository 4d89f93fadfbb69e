import dataclasses

import jax
import numpy as np
import pytest

from pdeflow import metrics
from pdeflow.fit import FitConfig, evaluate_losses, fit_surrogate
from pdeflow.models import BertConfig, BertEncoder, Trace
from pdeflow.pde import SolverConfig, SolverError, SurrogateConfig, init_surrogate
from pdeflow.surrogate import predict_attention

TEACHER = BertConfig(vocab_size=30, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_positions=12)
SURROGATE = SurrogateConfig(num_layers=2, num_heads=2, model_dim=16, width=8, key_dim=4, value_rank=2, mlp_width=8,
                            num_knots=2, max_distance=4)
FIT = FitConfig(steps=80, batch_size=16, learning_rate=2e-2, warmup_steps=5, eval_every=20, patience=0)


@pytest.fixture(scope="module")
def traces():
    """Traces of a small random BERT (sharpened attention) on random token sequences of 5..10 tokens."""
    model = BertEncoder(TEACHER)
    n, count = 10, 96
    rng = np.random.default_rng(0)
    ids = rng.integers(1, TEACHER.vocab_size, size=(count, n)).astype(np.int32)
    mask = np.arange(n)[None, :] < rng.integers(5, n + 1, size=count)[:, None]
    ids = np.where(mask, ids, 0)
    params = model.init(jax.random.PRNGKey(1), ids[:1], np.zeros_like(ids[:1]), mask[:1])
    sharpen = lambda path, x: x * 4.0 if any(getattr(p, "key", None) in ("query", "key") for p in path) else x  # noqa
    params = jax.tree_util.tree_map_with_path(sharpen, params)
    trace = jax.tree_util.tree_map(np.asarray, model.apply(params, ids, np.zeros_like(ids), mask))
    return trace.take(slice(0, 48)), trace.take(slice(48, 64)), trace.take(slice(64, 96))


def test_tiny_fit_lowers_its_loss_and_beats_uniform_on_held_out_inputs(traces):
    train, validation, test = traces
    solver = SolverConfig()
    initial = init_surrogate(jax.random.PRNGKey(FIT.seed), SURROGATE, train.hidden[0][train.mask])
    before, _ = evaluate_losses(initial, SURROGATE, solver, test, 16)
    result = fit_surrogate(train, validation, SURROGATE, solver, FIT, progress=False)
    after, _ = evaluate_losses(result.params, SURROGATE, solver, test, 16)
    assert after < 0.7 * before, (before, after)
    val = [h["validation_kl"] for h in result.history]
    assert val[-1] < val[0]
    pde = metrics.summarise(metrics.attention_fidelity(test.attention, predict_attention(
        result.params, SURROGATE, solver, test, 16), test.mask))
    uniform = metrics.summarise(metrics.attention_fidelity(test.attention, metrics.uniform_maps(test.mask, 2, 2),
                                                           test.mask))
    for layer in range(2):
        assert pde["cosine"][layer] > uniform["cosine"][layer] + 0.05
        assert pde["js"][layer] < uniform["js"][layer]


def test_fit_is_reproducible_from_its_seed(traces):
    train, validation, _ = traces
    config = dataclasses.replace(FIT, steps=6, eval_every=3)
    solver = SolverConfig("heun", adaptive=False, dt0=0.5)
    a = fit_surrogate(train, validation, SURROGATE, solver, config, progress=False)
    b = fit_surrogate(train, validation, SURROGATE, solver, config, progress=False)
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)


def test_failed_solve_stops_the_fit_with_the_remedy(traces):
    train, validation, _ = traces
    with pytest.raises(SolverError, match=r"fit step 1: .*interval.*Remedy: raise max_steps"):
        fit_surrogate(train, validation, SURROGATE, SolverConfig(max_steps=1), dataclasses.replace(FIT, steps=2),
                      progress=False)


def test_nan_in_the_trace_or_mismatched_surrogate_is_rejected(traces):
    train, validation, _ = traces
    bad = Trace(np.where(np.arange(16) == 3, np.nan, train.hidden), train.attention, train.mask)
    with pytest.raises(ValueError, match="NaN"):
        fit_surrogate(bad, validation, SURROGATE, progress=False)
    with pytest.raises(ValueError, match="surrogate expects L=3"):
        fit_surrogate(train, validation, dataclasses.replace(SURROGATE, num_layers=3), progress=False)
    with pytest.raises(ValueError, match="learning_rate"):
        FitConfig(learning_rate=0.0)
