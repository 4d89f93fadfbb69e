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


def test_token_lengths_count_up_to_the_last_real_token():
    from pdeflow.data import token_lengths

    mask = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(token_lengths(mask), [3, 4, 0, 5])


def test_bucket_lengths_are_quantiles_ending_at_the_longest():
    from pdeflow.data import bucket_lengths

    assert bucket_lengths(np.arange(1, 101), 4) == (25, 50, 75, 100)
    assert bucket_lengths([7, 7, 7, 9], 3) == (7, 9)  # repeated quantiles merge
    assert bucket_lengths([5, 3], 1) == (5,)


def _bucketed(seed=0, count=53, batch_size=8):
    from pdeflow.data.batches import BucketedBatches

    lengths = np.random.default_rng(seed).integers(3, 40, size=count)
    return lengths, BucketedBatches(lengths, (10, 20, 39), batch_size, np.random.default_rng(seed))


def test_bucketed_batches_are_full_fit_their_length_and_visit_every_input_each_epoch():
    lengths, batches = _bucketed()
    served = list(itertools.islice(batches, 56))
    for index, length in served:
        assert len(index) == 8 and len(set(index.tolist())) == 8
        assert length in (10, 20, 39) and lengths[index].max() <= length
    # 53 inputs make 7 batches an epoch (6 full, then 5 left over topped up with 3 others), dealt whole: every
    # block of 7 consecutive batches is one epoch and sees every input
    for epoch in range(8):
        seen = np.concatenate([index for index, _ in served[7 * epoch: 7 * epoch + 7]])
        np.testing.assert_array_equal(np.unique(seen), np.arange(53))
    assert {length for _, length in served} == {10, 20, 39}
    # short batches really are trimmed: a good share of batches is shorter than the longest bucket
    assert np.mean([length < 39 for _, length in served]) > 0.3


def test_bucketed_batches_resume_exactly_from_their_saved_state():
    import json

    from pdeflow.data.batches import batches_from_state

    _, batches = _bucketed(seed=4)
    [next(batches) for _ in range(9)]
    saved = json.loads(json.dumps(batches.state()))
    rest = [next(batches) for _ in range(15)]
    resumed = batches_from_state(saved)
    for (a, la), (b, lb) in zip(rest, [next(resumed) for _ in range(15)], strict=True):
        np.testing.assert_array_equal(a, b)
        assert la == lb


def test_bucketed_batches_refuse_buckets_that_cannot_hold_the_longest_input():
    import pytest

    from pdeflow.data.batches import BucketedBatches

    with pytest.raises(ValueError, match="longest"):
        BucketedBatches([3, 12], (5, 10), 1, np.random.default_rng(0))
