import itertools

import numpy as np

from pdeflow.data import fixed_size_batches, shuffled_batches


def test_fixed_size_batches_cover_everything_once_with_full_batches():
    batches = list(fixed_size_batches(10, 4))
    assert all(len(index) == 4 for index, _ in batches)
    kept = np.concatenate([index[:keep] for index, keep in batches])
    np.testing.assert_array_equal(kept, np.arange(10))
    np.testing.assert_array_equal(batches[-1][0], [8, 9, 0, 1])  # the last batch wraps around


def test_shuffled_batches_visit_every_item_once_per_epoch_and_are_seeded():
    first = np.concatenate(list(itertools.islice(shuffled_batches(12, 4, np.random.default_rng(0)), 3)))
    np.testing.assert_array_equal(np.sort(first), np.arange(12))
    again = np.concatenate(list(itertools.islice(shuffled_batches(12, 4, np.random.default_rng(0)), 3)))
    np.testing.assert_array_equal(first, again)
    assert all(len(b) == 5 for b in itertools.islice(shuffled_batches(7, 5, np.random.default_rng(1)), 6))
