import dataclasses

import jax
import numpy as np
import pytest

from pdeflow import metrics
from pdeflow.fitting.fit import FitConfig, evaluate_losses, fit_surrogate
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
    before, _, _ = evaluate_losses(initial, SURROGATE, solver, test, 16)
    result = fit_surrogate(train, validation, SURROGATE, solver, FIT, progress=False)
    after, _, _ = evaluate_losses(result.params, SURROGATE, solver, test, 16)
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
    solver = SolverConfig("heun", adaptive=False, dt0=0.5, adjoint="stored")  # quick to compile
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

    from pdeflow.fitting.checkpoint import FitCheckpointer

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
    assert any("train_step" in str(name) for name in compiled[:marks[0]]), compiled
    assert marks[-1] == marks[0], f"compiled after the first validation point: {compiled[marks[0]:]}"
    assert sum("train_step" in str(n) for n in compiled) <= 1, compiled
    # snapshots of the best parameters go to the host: no device copy is compiled once training has begun (the
    # copy that gives the fit its own buffers before the first step compiles only if no earlier test made it)
    first_step = next(i for i, name in enumerate(compiled) if "train_step" in str(name))
    assert not [n for n in compiled[first_step:] if "copy" in str(n)], compiled


def test_trimming_padding_leaves_the_losses_unchanged(traces):
    """Length bucketing trims a batch to its longest input: with fixed steps (whose solve does not depend on
    how many padded zeros the error norm averages over) the per-input losses must not change."""
    from pdeflow.data import token_lengths
    from pdeflow.fitting.losses import surrogate_losses
    from pdeflow.surrogate import token_laplacians

    train = traces[0].take(np.arange(16))
    shortest_first = train.take(np.argsort(token_lengths(train.mask)))
    batch = shortest_first.take(np.arange(8))  # the 8 shortest inputs
    length = int(token_lengths(batch.mask).max())
    assert length < batch.mask.shape[1]
    solver = SolverConfig("rk4", adaptive=False, dt0=0.5, adjoint="stored")
    params = init_surrogate(jax.random.PRNGKey(0), SURROGATE)
    losses = jax.jit(lambda trace: surrogate_losses(params, SURROGATE, solver, trace, token_laplacians(trace.mask)))
    full, trimmed = losses(batch), losses(batch.truncate(length))
    np.testing.assert_allclose(trimmed[0], full[0], rtol=1e-5, atol=1e-7)  # attention KL per input
    np.testing.assert_allclose(trimmed[1], full[1], rtol=1e-5, atol=1e-7)  # hidden-state error per input


def test_a_fit_of_the_maps_alone_reports_the_hidden_error_without_differentiating_it(traces):
    """``hidden_weight = 0``: the loss and its gradient are the attention KL's alone, while ``aux`` still reports
    the hidden error; its backward is not in the step (a weight of 0 times it would still be computed), and a
    weight > 0 puts it back."""
    from pdeflow.fitting.fit import FitLoss
    from pdeflow.fitting.losses import surrogate_losses
    from pdeflow.surrogate import token_laplacians

    batch = traces[0].take(np.arange(8))
    laplacians = token_laplacians(batch.mask)
    solver = SolverConfig("rk4", adaptive=False, dt0=0.5, adjoint="stored")
    params = init_surrogate(jax.random.PRNGKey(0), SURROGATE)
    maps_alone = FitLoss(SURROGATE, solver, hidden_weight=0.0)
    (loss, aux), grads = jax.jit(jax.value_and_grad(maps_alone, has_aux=True))(params, batch, laplacians)

    def kl_alone(p):
        kl, hidden_error, _ = surrogate_losses(p, SURROGATE, solver, batch, laplacians)
        return kl.mean(), hidden_error.mean()

    (kl, hidden_error), kl_grads = jax.jit(jax.value_and_grad(kl_alone, has_aux=True))(params)
    np.testing.assert_allclose(loss, kl, rtol=1e-6)
    np.testing.assert_allclose(aux["hidden_error"], hidden_error, rtol=1e-6)
    assert float(aux["hidden_error"]) > 0
    for g, k in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(kl_grads), strict=True):
        np.testing.assert_allclose(g, k, rtol=1e-5, atol=1e-8)
    assert not np.any(grads["readout"]["kernel"])  # only the hidden error reads the read-out
    operations = lambda weight: len(jax.make_jaxpr(jax.grad(  # noqa: E731
        lambda p: FitLoss(SURROGATE, solver, hidden_weight=weight)(p, batch, laplacians)[0]))(params).eqns)
    assert operations(0.0) < operations(1.0)


def test_a_bucketed_fit_compiles_one_step_per_bucket_before_training_and_none_after(traces, tmp_path):
    from pdeflow.data import bucket_lengths, token_lengths

    compiled, marks = [], []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiled.append(kw.get("fun_name"))
        if event == "/jax/core/compile/backend_compile_duration" else None)
    config = dataclasses.replace(FIT, steps=12, eval_every=4, seed=11, length_buckets=2)
    buckets = bucket_lengths(token_lengths(traces[0].mask), 2)
    assert len(buckets) == 2 and buckets[0] < buckets[1]
    solver = SolverConfig("ralston", adaptive=False, dt0=0.5, adjoint="stored")  # static arguments no other test uses
    result = fit_surrogate(traces[0], traces[1], SURROGATE, solver, config, progress=False,
                           on_eval=lambda record: marks.append(len(compiled)))
    steps = [n for n in compiled[:marks[0]] if "train_step" in str(n)]
    assert len(steps) == 2, compiled  # one per bucket
    assert marks[-1] == marks[0], f"compiled after the first validation point: {compiled[marks[0]:]}"
    assert sum("train_step" in str(n) for n in compiled) == 2, compiled
    assert result.history[-1]["validation_kl"] < result.history[0]["validation_kl"]

    # stopped after step 8 and resumed from its checkpoint, the bucketed batch order picks up where it was
    class Stop(Exception):
        pass

    def stop_at_8(record):
        if record["step"] == 8:
            raise Stop

    with pytest.raises(Stop):
        fit_surrogate(traces[0], traces[1], SURROGATE, solver, dataclasses.replace(config, checkpoint_every=4),
                      progress=False, on_eval=stop_at_8, checkpoint_dir=tmp_path)
    resumed = fit_surrogate(traces[0], traces[1], SURROGATE, solver, config, progress=False,
                            checkpoint_dir=tmp_path, resume=True)
    assert resumed.history == result.history
    for a, b in zip(jax.tree_util.tree_leaves(result.params), jax.tree_util.tree_leaves(resumed.params), strict=True):
        np.testing.assert_array_equal(a, b)


def test_coarse_steps_train_on_the_coarser_solve_then_end_on_the_solver_as_given(traces):
    """The first coarse_steps steps are those of a fit with twice the step (bit for bit, shooting and buckets
    included, every phase compiled before the first step); the rest train, and every validation measures, on
    the solver as given."""
    train, validation, _ = traces
    compiled, marks, params_at = [], [], {}
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: compiled.append(kw.get("fun_name"))
        if event == "/jax/core/compile/backend_compile_duration" else None)
    fine = SolverConfig("midpoint", adaptive=False, dt0=0.25, adjoint="stored")  # static arguments no other test uses
    coarse = dataclasses.replace(fine, dt0=0.5)
    config = dataclasses.replace(FIT, steps=6, eval_every=3, shooting_steps=2, length_buckets=2, seed=5)

    def keep(name):
        def on_eval_params(record, params):
            params_at[name, record["step"]] = jax.tree_util.tree_map(np.array, params)
            marks.append(len(compiled))
        return on_eval_params

    mixed = fit_surrogate(train, validation, SURROGATE, fine, dataclasses.replace(config, coarse_steps=3),
                          progress=False, on_eval_params=keep("mixed"))
    steps = [n for n in compiled[:marks[0]] if "train_step" in str(n)]
    assert len(steps) == 6, compiled  # 2 buckets x (shooting coarse, free coarse, free fine)
    assert marks[1] == marks[0], f"compiled after the first validation point: {compiled[marks[0]:]}"
    coarse_fit = fit_surrogate(train, validation, SURROGATE, coarse, config, progress=False,
                               on_eval_params=keep("coarse"))
    for a, b in zip(jax.tree_util.tree_leaves(params_at["mixed", 3]), jax.tree_util.tree_leaves(params_at["coarse", 3]),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(params_at["mixed", 6]["residual"]["w2"], params_at["coarse", 6]["residual"]["w2"])
    for record in mixed.history:  # validated on the fine solve, the coarse fit on its own
        kl, _, _ = evaluate_losses(params_at["mixed", record["step"]], SURROGATE, fine, validation, config.batch_size)
        np.testing.assert_allclose(record["validation_kl"], kl, rtol=1e-5)
    assert mixed.history[0]["validation_kl"] != coarse_fit.history[0]["validation_kl"]


def test_coarse_settings_are_checked(traces):
    for bad in ({"coarse_steps": 80}, {"coarse_steps": -1}, {"coarse_factor": 1}, {"coarse_factor": 1.5}):
        with pytest.raises(ValueError, match="coarse_"):
            dataclasses.replace(FIT, **bad)
    with pytest.raises(ValueError, match="fixed-step solver"):
        fit_surrogate(traces[0], traces[1], SURROGATE, SolverConfig(), dataclasses.replace(FIT, coarse_steps=2),
                      progress=False)


def test_length_buckets_are_refused_on_a_patch_grid(traces):
    grid = dataclasses.replace(SURROGATE, grid=(2, 5))
    with pytest.raises(ValueError, match="length_buckets"):
        fit_surrogate(traces[0], traces[1], grid, SolverConfig(), dataclasses.replace(FIT, length_buckets=3),
                      progress=False)
    with pytest.raises(ValueError, match="length_buckets"):
        FitConfig(length_buckets=0)


@pytest.mark.parametrize("depth_time", ["smooth", "blockwise"])
def test_shooting_then_free_running_holds_what_it_is_told_to_hold(traces, depth_time):
    train, validation, _ = traces
    solver = SolverConfig("rk4", adaptive=False, dt0=0.5, adjoint="stored")
    surrogate = dataclasses.replace(SURROGATE, depth_time=depth_time)
    initial = init_surrogate(jax.random.PRNGKey(FIT.seed), surrogate, train.hidden[0][train.mask])
    config = dataclasses.replace(FIT, steps=12, eval_every=3, shooting_steps=6, kernel_lr_scale=0.0)
    result = fit_surrogate(train, validation, surrogate, solver, config, params=initial, progress=False)
    assert [h["phase"] for h in result.history] == ["shooting"] * 2 + ["free"] * 2
    for group in ("kernel", "projection", "readout"):  # held in both phases
        jax.tree_util.tree_map(np.testing.assert_array_equal, result.params[group], initial[group])
    assert not np.allclose(result.params["residual"]["w2"], initial["residual"]["w2"])
    assert all(np.isfinite(h["validation_kl"]) for h in result.history)


def test_shooting_and_init_settings_are_checked(traces):
    train, validation, _ = traces
    with pytest.raises(ValueError, match="shooting_steps"):
        FitConfig(steps=10, shooting_steps=10)
    with pytest.raises(ValueError, match="unknown init"):
        FitConfig(init="pretrained")
    with pytest.raises(ValueError, match="init_from_transformer"):
        fit_surrogate(train, validation, SURROGATE, SolverConfig(), dataclasses.replace(FIT, init="transformer"),
                      progress=False)


def test_depth_weighting_changes_what_the_fit_learns_and_is_checked(traces):
    train, validation, _ = traces
    solver = SolverConfig("heun", adaptive=False, dt0=0.5, adjoint="stored")  # quick to compile
    config = dataclasses.replace(FIT, steps=6, eval_every=3, shooting_steps=2)
    plain = fit_surrogate(train, validation, SURROGATE, solver, config, progress=False)
    deep = fit_surrogate(train, validation, SURROGATE, solver, dataclasses.replace(config, depth_weighting=3.0),
                         progress=False)
    assert all(np.isfinite(h["validation_kl"]) for h in deep.history)
    assert not np.allclose(plain.params["kernel"]["query"], deep.params["kernel"]["query"])
    with pytest.raises(ValueError, match="depth_weighting"):
        FitConfig(depth_weighting=-1.0)


def test_cosine_weight_changes_what_the_fit_learns_and_picks_by_its_validation_loss(traces):
    train, validation, _ = traces
    solver = SolverConfig("heun", adaptive=False, dt0=0.5, adjoint="stored")  # quick to compile
    config = dataclasses.replace(FIT, steps=6, eval_every=3)
    plain = fit_surrogate(train, validation, SURROGATE, solver, config, progress=False)
    weighted = fit_surrogate(train, validation, SURROGATE, solver, dataclasses.replace(config, cosine_weight=2.0),
                             progress=False)
    assert not np.allclose(plain.params["kernel"]["query"], weighted.params["kernel"]["query"])
    for record in plain.history + weighted.history:
        assert 0.0 < record["validation_cosine"] < 1.0
    for record in plain.history:  # the cosine is recorded but weighs nothing by default
        assert record["validation_loss"] == pytest.approx(record["validation_kl"]
                                                          + FIT.hidden_weight * record["validation_hidden_error"])
    for record in weighted.history:
        assert record["validation_loss"] == pytest.approx(
            record["validation_kl"] + FIT.hidden_weight * record["validation_hidden_error"]
            + 2.0 * (1.0 - record["validation_cosine"]))
    with pytest.raises(ValueError, match="cosine_weight"):
        FitConfig(cosine_weight=-0.5)
