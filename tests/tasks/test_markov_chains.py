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


def test_digit_sequences_hold_the_patches_in_grid_order_and_the_test_set_out():
    from pdeflow.data.digits import digit_splits
    from pdeflow.tasks import digit_pair_task, digit_sequences

    images = np.arange(64, dtype=np.float32).reshape(1, 8, 8) + 1
    x = digit_sequences(images)
    assert x.shape == (1, 17, 64 + 1 + 17)
    assert np.flatnonzero(x[0, 1, :64]).tolist() == [0, 1, 8, 9]  # top-left 2x2 patch, where it sits
    assert np.flatnonzero(x[0, 2, :64]).tolist() == [2, 3, 10, 11]  # the next patch to its right
    np.testing.assert_allclose(x[0, 1:, :64].sum(0) * 16, images.ravel())  # the tokens add up to the image
    assert x[0, 0, 64] == 1 and x[0, 1:, 64].sum() == 0
    x_train, y_train, x_test, y_test = digit_pair_task((3, 8), num_train=40)
    assert x_train.shape == (40, 17, 82) and (y_train == 1).sum() == 20
    splits = digit_splits()
    assert len(y_test) == np.isin(splits.test_labels, (3, 8)).sum()
    train_rows = {r.tobytes() for r in x_train.reshape(40, -1)}
    assert not train_rows & {r.tobytes() for r in x_test.reshape(len(x_test), -1)}
