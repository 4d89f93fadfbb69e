"""The sparse-memory trainer: training can start from given parameters (a curriculum's earlier stage)."""

import numpy as np
import pytest

from pdeflow.models.rpe_transformer import RPETransformerConfig
from pdeflow.tasks.sparse_memory import FixedMemory
from pdeflow.train.memory import MemoryTrainConfig, train_memory_models

TASK = FixedMemory(lags=(1, 3), readout="linear", length=10)
MODEL = RPETransformerConfig(input_dim=1, model_dim=8, num_heads=1, head_dim=4, ffn_width=8, rpe="t5",
                             num_buckets=8, max_distance=16)
TRAIN = MemoryTrainConfig(steps=80, batch_size=16, learning_rate=2e-2, warmup_steps=5, test_size=1)


@pytest.mark.slow  # two compilations of the training scan: 14–22 s on the loaded 2-core machine
def test_training_continues_from_initial_params():
    first, first_losses = train_memory_models(TASK, MODEL, TRAIN, seeds=(0, 1))
    assert np.all(first_losses[0] > 3 * first_losses[-10:].mean(0))  # stage one learnt something
    # started from stage one's parameters, the first loss (before any update) is where stage one ended
    _, second_losses = train_memory_models(TASK, MODEL, TRAIN, seeds=(0, 1), initial_params=first)
    assert np.all(second_losses[0] < 1.5 * first_losses[-10:].max(0))
    assert np.all(second_losses[0] < 0.6 * first_losses[0])
    # without initial params the same call starts from the same fresh initialisation again
    _, again = train_memory_models(TASK, MODEL, TRAIN, seeds=(0, 1))
    np.testing.assert_allclose(again, first_losses, rtol=1e-6)
