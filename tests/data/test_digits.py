import numpy as np
import pytest

from pdeflow.data.digits import digit_images, digit_splits


def test_digits_are_bundled_scaled_and_split_stratified_without_overlap():
    images, labels = digit_images()
    assert images.shape == (1797, 8, 8) and images.dtype == np.float32
    assert images.min() == 0.0 and images.max() == 1.0
    splits = digit_splits(0.25, seed=0)
    assert len(splits.train_labels) + len(splits.test_labels) == 1797
    assert len(splits.test_labels) == 450
    # stratified: every class has the same share in both splits, to within one image
    train_counts, test_counts = np.bincount(splits.train_labels), np.bincount(splits.test_labels)
    np.testing.assert_allclose(test_counts, (train_counts + test_counts) * 0.25, atol=1.0)
    # together the two splits are exactly the whole set (no image dropped or used twice)
    whole = np.concatenate([splits.train_images, splits.test_images]).reshape(1797, -1)
    np.testing.assert_array_equal(np.sort(whole.sum(1)), np.sort(images.reshape(1797, -1).sum(1)))
    again = digit_splits(0.25, seed=0)
    np.testing.assert_array_equal(again.test_images, splits.test_images)  # the split is fixed by its seed
    with pytest.raises(ValueError, match="test_fraction"):
        digit_splits(1.5)
