import dataclasses

import jax
import numpy as np
import pytest

from pdeflow import metrics
from pdeflow.fit import FitConfig, evaluate_losses, fit_surrogate
from pdeflow.models import Trace
from pdeflow.pde import SolverConfig, SolverError, init_surrogate
from pdeflow.surrogate import predict_attention
from tests.tiny_teacher import FIT, SURROGATE, tiny_traces


@pytest.fixture(scope="module")
def traces():
    return tiny_traces()


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


def test_a_fit_that_explodes_stops_at_that_step_and_keeps_the_last_good_checkpoint(traces, tmp_path):
    """A far too large learning rate without clipping blows the PDE up after a few good steps: the error
    names the step and the remedy, and the checkpoint left behind is the last good step's, all finite."""
    import re

    import orbax.checkpoint as ocp

    from pdeflow.checkpoint import FitCheckpointer

    train, validation, _ = traces
    config = dataclasses.replace(FIT, steps=30, learning_rate=30.0, warmup_steps=1, clip_norm=1e9,
                                 checkpoint_every=1, eval_every=100)
    with pytest.raises(SolverError, match=r"fit step \d+: .*(Remedy|gradient clip)") as error:
        fit_surrogate(train, validation, SURROGATE, SolverConfig(max_steps=64), config, progress=False,
                      checkpoint_dir=tmp_path)
    step = int(re.search(r"fit step (\d+)", str(error.value)).group(1))
    assert step >= 2, str(error.value)  # some good steps came first
    checkpointer = FitCheckpointer(tmp_path)
    assert checkpointer.latest_step() == step - 1  # the last good step (the failed one kept its parameters)
    restored = checkpointer.manager.restore(step - 1, args=ocp.args.Composite(
        arrays=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
    leaves = jax.tree_util.tree_leaves(restored["arrays"]["params"])
    assert leaves and all(np.isfinite(np.asarray(x)).all() for x in leaves)


def test_nan_in_the_trace_or_mismatched_surrogate_is_rejected(traces):
    train, validation, _ = traces
    bad = Trace(np.where(np.arange(16) == 3, np.nan, train.hidden), train.attention, train.mask)
    with pytest.raises(ValueError, match="NaN"):
        fit_surrogate(bad, validation, SURROGATE, progress=False)
    with pytest.raises(ValueError, match="surrogate expects L=3"):
        fit_surrogate(train, validation, dataclasses.replace(SURROGATE, num_layers=3), progress=False)
    with pytest.raises(ValueError, match="learning_rate"):
        FitConfig(learning_rate=0.0)


def test_a_fit_compiles_its_step_once_and_never_again(traces):
    """Static shapes: after the first validation point no XLA compilation happens (step, evaluation or data)."""
    train, validation, _ = traces
    compiled, marks = [], []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiled.append(kw.get("fun_name"))
        if event == "/jax/core/compile/backend_compile_duration" else None)
    config = dataclasses.replace(FIT, steps=12, eval_every=3, seed=7)  # a seed no other test compiles with
    solver = SolverConfig("bosh3", rtol=2e-2)  # static arguments no other test uses: the first step compiles
    fit_surrogate(train, validation, SURROGATE, solver, config, progress=False,
                  on_eval=lambda record: marks.append(len(compiled)))
    assert any("_train_step" in str(name) for name in compiled[:marks[0]]), compiled
    assert marks[-1] == marks[0], f"compiled after the first validation point: {compiled[marks[0]:]}"
    assert sum("_train_step" in str(n) for n in compiled) <= 1, compiled
    # snapshots of the best parameters go to the host: no device copy is compiled once training has begun (the
    # copy that gives the fit its own buffers before the first step compiles only if no earlier test made it)
    first_step = next(i for i, name in enumerate(compiled) if "_train_step" in str(name))
    assert not [n for n in compiled[first_step:] if "copy" in str(n)], compiled
