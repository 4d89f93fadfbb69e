"""The shared optimiser config, step and loop (`pdeflow.fitting.optim`, `pdeflow.fitting.train_loop`), on toy
problems."""

import dataclasses
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pdeflow.fitting.fit import FitConfig, make_optimizer
from pdeflow.fitting.optim import OptimizerConfig, warmup_cosine_adamw
from pdeflow.fitting.train_loop import gradient_step, make_train_step, train_loop

X = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
Y = X @ np.array([1.0, -2.0, 0.5], np.float32) + 0.3


def squared_error(params, x, y):
    return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def start():
    return {"w": jnp.zeros(3), "b": jnp.zeros(())}


def test_a_step_from_make_train_step_equals_a_hand_written_optax_step():
    optimizer = OptimizerConfig(0.1, total_steps=10, warmup_steps=2, weight_decay=0.01, clip_norm=1.0).make()

    @jax.jit
    def by_hand(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(squared_error)(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    step = make_train_step(squared_error, optimizer)
    a = b = start()
    state_a = state_b = optimizer.init(a)
    for _ in range(5):
        a, state_a, loss_a = by_hand(a, state_a, X, Y)
        b, state_b, info = step(b, state_b, X, Y)
        assert float(info["loss"]) == float(loss_a)
    for x, y in zip(jax.tree_util.tree_leaves((a, state_a)), jax.tree_util.tree_leaves((b, state_b)), strict=True):
        np.testing.assert_array_equal(x, y)
    assert make_train_step(squared_error, optimizer) is step  # equal arguments: one compiled function


def test_keep_last_good_keeps_the_parameters_when_the_loss_or_aux_ok_fails():
    optimizer = OptimizerConfig(0.1, total_steps=10).make()

    def loss_with_aux(params, x, y, ok):
        return squared_error(params, x, y) * jnp.where(ok, 1.0, jnp.nan), {"ok": jnp.asarray([ok, True])}

    params, opt_state = start(), optimizer.init(start())
    step = make_train_step(loss_with_aux, optimizer, has_aux=True, keep_last_good=True)
    moved, moved_state, info = step(params, opt_state, X, Y, True)
    assert bool(info["good"]) and not np.allclose(moved["w"], params["w"])
    kept, kept_state, info = step(moved, moved_state, X, Y, False)
    assert not bool(info["good"]) and info["ok"].tolist() == [False, True]
    for x, y in zip(jax.tree_util.tree_leaves((moved, moved_state)), jax.tree_util.tree_leaves((kept, kept_state))):
        np.testing.assert_array_equal(x, y)
    # un-jitted, inside a scan: the same numbers
    (scanned, _), _ = jax.lax.scan(lambda c, _: (gradient_step(squared_error, optimizer, *c, X, Y)[:2], None),
                                   (params, opt_state), None, length=1)
    np.testing.assert_array_equal(scanned["w"], moved["w"])


def test_the_loop_calls_its_hooks_at_the_right_steps_in_order():
    calls = []
    last = train_loop(lambda i: calls.append(("step", i)) or {"i": i}, 7, eval_every=3,
                      evaluate=lambda i, info: calls.append(("evaluate", i, info["i"])) or {"at": i},
                      report=lambda record: calls.append(("report", record["at"])), checkpoint_every=2,
                      checkpoint=lambda i: calls.append(("checkpoint", i)))
    assert last == 7
    assert calls == [("step", 1), ("step", 2), ("checkpoint", 2), ("step", 3), ("evaluate", 3, 3), ("report", 3),
                     ("step", 4), ("checkpoint", 4), ("step", 5), ("step", 6), ("evaluate", 6, 6),
                     ("checkpoint", 6), ("report", 6), ("step", 7), ("evaluate", 7, 7), ("report", 7),
                     ("checkpoint", 7)]  # the last step evaluates, and the end checkpoints


def test_every_evaluation_logs_one_line_with_the_step_and_the_postfix(caplog):
    with caplog.at_level("INFO", logger="pdeflow"):
        train_loop(lambda i: {"i": i}, 5, eval_every=2, evaluate=lambda i, info: {"loss": 1.0 / i},
                   postfix=lambda record: {"loss": f"{record['loss']:.3f}"}, name="toy")
    assert [r.getMessage() for r in caplog.records] == ["toy: step 2 of 5, loss 0.500", "toy: step 4 of 5, loss 0.250",
                                                        "toy: step 5 of 5, loss 0.200"]
    assert {r.name for r in caplog.records} == {"pdeflow.fitting.train_loop"}


def test_the_loop_resumes_from_a_step_and_stops_early():
    steps, stop = [], []
    last = train_loop(lambda i: steps.append(i), 10, start=4, eval_every=2, evaluate=lambda i, info: stop.append(i),
                      should_stop=lambda: len(stop) == 2)
    assert steps == [5, 6, 7, 8] and stop == [6, 8] and last == 8
    assert train_loop(lambda i: pytest.fail("ran a step"), 10, start=10) == 10
    assert train_loop(lambda i: pytest.fail("ran a step"), 10, should_stop=lambda: True) == 0


def test_sigint_finishes_the_step_checkpoints_it_and_raises():
    steps, saved = [], []

    def step(i):
        if i == 3:
            os.kill(os.getpid(), signal.SIGINT)  # arrives mid-step: the step still finishes
        steps.append(i)

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="toy interrupted after step 3; resume from x"):
        train_loop(step, 10, checkpoint_every=5, checkpoint=saved.append, name="toy", interrupt_hint="; resume from x")
    assert steps == [1, 2, 3] and saved == [3]
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


def test_the_optimizer_config_is_warmup_cosine_adamw_and_one_object_per_setting():
    config = OptimizerConfig(0.05, total_steps=8, warmup_steps=3, weight_decay=0.1, clip_norm=0.5, end_fraction=0.01)
    assert config.make() is OptimizerConfig(0.05, 8, 3, 0.1, 0.5, 0.01).make()
    reference = warmup_cosine_adamw(0.05, 3, 8, 0.1, clip_norm=0.5, end_fraction=0.01)
    grads = {"w": jnp.asarray([3.0, -1.0, 0.2]), "b": jnp.asarray(0.7)}
    ours, theirs = config.make().init(start()), reference.init(start())
    for _ in range(4):
        a, ours = config.make().update(grads, ours, start())
        b, theirs = reference.update(grads, theirs, start())
        jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)
    with pytest.raises(ValueError, match="learning_rate > 0"):
        OptimizerConfig(0.0, 10)
    with pytest.raises(ValueError, match="group_labels"):
        OptimizerConfig(0.1, 10, group_lr_scales=(("a", 0.5),))
    with pytest.raises(ValueError, match="finite"):
        OptimizerConfig(float("nan"), 10)


def test_group_scales_hold_or_slow_their_group():
    def labels(params):
        return {name: "slow" if name == "b" else "rest" for name in params}

    grads = {"w": jnp.ones(3), "b": jnp.asarray(1.0)}
    for scale in (0.0, 0.5):
        optimizer = OptimizerConfig(0.1, 10, group_lr_scales=(("slow", scale), ("rest", 1.0)),
                                    group_labels=labels).make()
        updates, _ = optimizer.update(grads, optimizer.init(start()), start())
        plain, _ = OptimizerConfig(0.1, 10).make().update(grads, OptimizerConfig(0.1, 10).make().init(start()),
                                                          start())
        np.testing.assert_allclose(updates["w"], plain["w"], rtol=1e-6)  # the other group: full rate
        np.testing.assert_allclose(updates["b"], scale * plain["b"], rtol=1e-6)


def test_decayed_groups_decay_only_the_groups_named():
    def labels(params):
        return {name: "kept" if name == "b" else "decayed" for name in params}

    grads = {"w": jnp.zeros(3), "b": jnp.asarray(0.0)}  # no gradient: what moves the parameters is the decay
    config = OptimizerConfig(0.1, 10, weight_decay=0.5, group_lr_scales=(("kept", 1.0), ("decayed", 1.0)),
                             group_labels=labels, decayed_groups=("decayed",))
    optimizer = config.make()
    params = {"w": jnp.asarray([1.0, -2.0, 3.0]), "b": jnp.asarray(4.0)}
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    assert float(jnp.abs(updates["b"])) == 0.0
    np.testing.assert_allclose(updates["w"], -0.1 * 0.5 * params["w"], rtol=1e-5)  # lr · decay · w at step 0
    every = dataclasses.replace(config, decayed_groups=None).make()
    assert float(every.update(grads, every.init(params), params)[0]["b"]) == pytest.approx(-0.1 * 0.5 * 4.0)
    with pytest.raises(ValueError, match="decayed_groups"):
        OptimizerConfig(0.1, 10, group_lr_scales=(("kept", 1.0),), group_labels=labels, decayed_groups=("other",))
    free = FitConfig(steps=10, weight_decay=0.1, decay_kernel=False).optimizer()
    assert free.decayed_groups == ("dynamics",) and FitConfig().optimizer().decayed_groups is None


def test_the_fit_config_builds_its_phases_optimizers():
    config = FitConfig(steps=100, shooting_steps=30, learning_rate=0.01, shooting_learning_rate=0.02,
                       kernel_lr_scale=0.5)
    free, shooting = config.optimizer(), config.optimizer(shooting=True)
    assert (free.learning_rate, free.total_steps, dict(free.group_lr_scales)["kernel"]) == (0.01, 70, 0.5)
    assert (shooting.learning_rate, shooting.total_steps, dict(shooting.group_lr_scales)["kernel"]) == (0.02, 30, 0.0)
    assert free.clip_norm == config.clip_norm and free.end_fraction == 0.01
    assert make_optimizer(config) is free.make()
    with pytest.raises(ValueError, match="no shooting phase"):
        FitConfig().optimizer(shooting=True)


def test_the_trainers_configs_build_their_optimizers_from_their_own_fields():
    from pdeflow.train import LMTrainConfig, MemoryTrainConfig, ViTTrainConfig

    assert LMTrainConfig().optimizer() == OptimizerConfig(3e-3, 600, 60, 0.01, clip_norm=1.0)
    assert ViTTrainConfig().optimizer(steps_per_epoch=21) == OptimizerConfig(2e-3, 150 * 21, 100, 0.05)
    assert MemoryTrainConfig().optimizer() == OptimizerConfig(3e-3, 1500, 100, 1e-4, 1.0, end_fraction=0.01)
