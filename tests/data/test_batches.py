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


def test_shuffled_batches_resume_exactly_from_their_saved_state():
    import json

    from pdeflow.data.batches import ShuffledBatches

    batches = shuffled_batches(11, 4, np.random.default_rng(3))
    head = [next(batches) for _ in range(5)]  # stops mid-epoch
    saved = json.loads(json.dumps(batches.state()))
    rest = [next(batches) for _ in range(7)]
    resumed = ShuffledBatches.from_state(saved)
    for a, b in zip(rest, [next(resumed) for _ in range(7)], strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(head) == 5
