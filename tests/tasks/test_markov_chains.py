"""The hidden-Markov-chain task: reproducible, balanced, and with the switch statistics its classes state."""

import numpy as np
import pytest

from pdeflow.tasks import MarkovChainTask


def test_samples_are_reproducible_balanced_and_shaped():
    task = MarkovChainTask(length=30, dim=200)
    x, labels, states = task.sample(100, seed=3)
    assert x.shape == (100, 31, 231) and labels.shape == (100,) and states.shape == (100, 30)
    assert (labels == 1).sum() == 50
    again = task.sample(100, seed=3)
    np.testing.assert_array_equal(x, again[0])
    assert not np.array_equal(x, task.sample(100, seed=4)[0])
    np.testing.assert_array_equal(x[:, :, 200:], np.broadcast_to(np.eye(31), (100, 31, 31)))  # one-hot positions
    np.testing.assert_allclose(x[:, 0, :200], np.broadcast_to(task.vocabulary()[2], (100, 200)), rtol=1e-6)  # BOS


def test_classes_stay_in_their_state_as_often_as_stated():
    task = MarkovChainTask(length=30, noise=0.0)
    x, labels, states = task.sample(2000, seed=0)
    stays = (states[:, 1:] == states[:, :-1]).mean(1)
    assert stays[labels == 1].mean() == pytest.approx(0.7, abs=0.01)
    assert stays[labels == -1].mean() == pytest.approx(0.3, abs=0.01)
    v = task.vocabulary()
    np.testing.assert_allclose(x[:, 1:, :task.dim], np.where(states[..., None] == 1, v[0], v[1]), rtol=1e-6)
    with pytest.raises(ValueError, match="stay"):
        MarkovChainTask(stay=(1.2, 0.3))
