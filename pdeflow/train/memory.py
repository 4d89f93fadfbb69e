"""Training `RPETransformer` s on the sparse-memory tasks, several seeds at once (vmap over seeds).

Every seed has its own initialisation and its own stream of training batches (`pdeflow.tasks.sparse_memory`);
the loss is the normalised MSE over valid positions. The test error is measured on a fixed set of fresh
sequences drawn from a key no training stream uses (inputs are continuous or long random strings, so a test
sequence is never a training sequence).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pdeflow.fitting.optim import OptimizerConfig
from pdeflow.fitting.train_loop import gradient_step
from pdeflow.models.rpe_transformer import RPETransformer, RPETransformerConfig
from pdeflow.tasks.sparse_memory import MemoryTask, normalised_mse, sample

TEST_STREAM = 2**31 - 1  # folded into a seed's key for its test set; training steps count up from 0


@dataclasses.dataclass(frozen=True)
class MemoryTrainConfig:
    """AdamW with linear warm-up and cosine decay.

    Attributes:
        steps: optimiser steps.
        batch_size: sequences per step (per seed).
        learning_rate: peak learning rate.
        warmup_steps: warm-up length.
        weight_decay: AdamW weight decay.
        clip_norm: global gradient-norm clip.
        test_size: held-out sequences for the test error.
    """

    steps: int = 1500
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    test_size: int = 512

    def __post_init__(self):
        if min(self.steps, self.batch_size, self.test_size) < 1 or not self.learning_rate > 0:
            raise ValueError("steps, batch_size and test_size must be positive and learning_rate > 0.")

    def optimizer(self) -> OptimizerConfig:
        """AdamW over ``steps`` steps: linear warm-up, cosine decay to 1 % of the peak, gradients clipped."""
        return OptimizerConfig(self.learning_rate, self.steps, self.warmup_steps, self.weight_decay, self.clip_norm,
                               end_fraction=0.01)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _train(task: MemoryTask, model_config: RPETransformerConfig, config: MemoryTrainConfig, keys, initial):
    """Train one model per key (``keys (S, 2)``) from its fresh initialisation, or from ``initial`` (params
    stacked over the S keys) when it is not None; returns stacked params and the loss curve ``(steps, S)``."""
    model = RPETransformer(model_config)
    optimizer = config.optimizer().make()

    def one(key, params):
        init_key, data_key = jax.random.split(key)
        if params is None:
            params = model.init(init_key, sample(task, jax.random.fold_in(data_key, 0), 1).inputs)

        def loss_fn(p, batch):
            predictions, _ = model.apply(p, batch.inputs)
            return normalised_mse(predictions, batch.targets, batch.valid)

        def step(carry, index):
            p, state = carry
            batch = sample(task, jax.random.fold_in(data_key, index), config.batch_size)
            p, state, info = gradient_step(loss_fn, optimizer, p, state, batch)  # un-jitted: inside the scan
            return (p, state), info["loss"]

        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), jnp.arange(config.steps))
        return params, losses

    params, losses = jax.vmap(one)(keys, initial)
    return params, losses.T


def seed_keys(seeds) -> jax.Array:
    return jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])


def train_memory_models(task: MemoryTask, model_config: RPETransformerConfig, config: MemoryTrainConfig,
                        seeds=(0, 1, 2), initial_params=None):
    """Train one model per seed. Returns ``(params stacked over seeds, losses (steps, S) numpy)``.

    ``initial_params`` (params stacked over the same seeds, e.g. from a first stage of a curriculum) replaces the
    fresh initialisation; the optimiser state and schedule start afresh, each seed's training stream is the same."""
    if model_config.input_dim != task.input_dim:
        raise ValueError(f"the model takes {model_config.input_dim}-dimensional tokens but the task gives "
                         f"{task.input_dim}; set RPETransformerConfig.input_dim = task.input_dim.")
    params, losses = _train(task, model_config, config, seed_keys(seeds), initial_params)
    return params, np.asarray(losses)


def held_out_batch(task: MemoryTask, config: MemoryTrainConfig, seed: int = 0):
    """The held-out sequences (shared by every model evaluated with this ``seed``)."""
    return sample(task, jax.random.fold_in(jax.random.PRNGKey(seed), TEST_STREAM), config.test_size)


@functools.partial(jax.jit, static_argnums=(0,))
def traces(model_config: RPETransformerConfig, params, inputs):
    """``(predictions (S, B, N), Trace with a leading seed axis)`` of stacked models on ``inputs``."""
    return jax.vmap(lambda p: RPETransformer(model_config).apply(p, inputs))(params)


def held_out_errors(task: MemoryTask, model_config: RPETransformerConfig, config: MemoryTrainConfig, params,
                    seed: int = 0) -> np.ndarray:
    """Normalised test MSE of each stacked model ``(S,)`` on `held_out_batch`."""
    batch = held_out_batch(task, config, seed)
    predictions, _ = traces(model_config, params, batch.inputs)
    return np.asarray(normalised_mse(predictions, batch.targets, batch.valid))
