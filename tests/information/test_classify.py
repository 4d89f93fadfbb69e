"""The k-NN read-out of profiles: depth resampling, grouped cross-validation, chance baselines."""

import numpy as np
import pytest

from pdeflow.information.classify import (
    cross_validated_accuracy,
    cross_validated_auc,
    resample_depth,
    transfer_accuracy,
)


def test_resampling_is_exact_on_linear_profiles_and_the_identity_on_its_own_grid():
    layers = np.linspace(0, 1, 5)
    profile = np.stack([3 - 2 * layers, 1 + layers])  # (2, L+1) linear in depth
    resampled = resample_depth(profile, 9)
    np.testing.assert_allclose(resampled, np.stack([3 - 2 * np.linspace(0, 1, 9), 1 + np.linspace(0, 1, 9)]))
    curved = np.random.default_rng(0).normal(size=(3, 4, 7))
    np.testing.assert_allclose(resample_depth(curved, 7), curved)
    with pytest.raises(ValueError, match="at least 2"):
        resample_depth(np.ones((3, 1)), 5)


def test_separable_classes_are_found_and_random_labels_stay_at_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 60)
    features = rng.normal(size=(180, 4)) + 5 * labels[:, None]
    groups = np.arange(180)
    found = cross_validated_accuracy(features, labels, groups, k=5)
    assert found["accuracy"] > 0.97 and found["balanced_accuracy"] > 0.97
    assert found["chance"] == pytest.approx(1 / 3, abs=0.05)
    noise = cross_validated_accuracy(rng.normal(size=(180, 4)), labels, groups, k=5)
    assert noise["accuracy"] < 0.5


def test_groups_never_straddle_a_split():
    # every group is 6 copies of one random point with one random label: if copies leaked across the split,
    # 1-NN would find its twin and score 100 %; grouped folds keep it near chance
    rng = np.random.default_rng(1)
    centres, group_labels = rng.normal(size=(60, 3)), rng.integers(0, 2, 60)
    features, labels, groups = np.repeat(centres, 6, 0), np.repeat(group_labels, 6), np.repeat(np.arange(60), 6)
    assert cross_validated_accuracy(features, labels, groups, k=1)["accuracy"] < 0.75
    assert cross_validated_auc(features, labels, groups, k=1)["auc"] < 0.75


def test_auc_separates_and_is_half_on_noise():
    rng = np.random.default_rng(2)
    labels = rng.random(400) < 0.3
    features = rng.normal(size=(400, 2)) + 3 * labels[:, None]
    assert cross_validated_auc(features, labels, np.arange(400), k=15)["auc"] > 0.95
    noise = cross_validated_auc(rng.normal(size=(400, 2)), labels, np.arange(400), k=15)
    assert abs(noise["auc"] - 0.5) < 0.1 and noise["positive_rate"] == pytest.approx(labels.mean())
    with pytest.raises(ValueError, match="one value"):
        cross_validated_auc(features, np.ones(400, bool), np.arange(400))


def test_transfer_accuracy_and_bad_input():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 50)
    features = rng.normal(size=(100, 2)) + 4 * labels[:, None]
    result = transfer_accuracy(features[::2], labels[::2], features[1::2], labels[1::2], k=3)
    assert result["accuracy"] > 0.95 and result["chance"] == 0.5 and result["samples"] == 50
    with pytest.raises(ValueError, match="NaN"):
        cross_validated_accuracy(np.full((10, 2), np.nan), np.zeros(10), np.arange(10))
    with pytest.raises(ValueError, match="labels"):
        cross_validated_accuracy(np.zeros((10, 2)), np.zeros(9), np.arange(10))


def test_entropy_lens_auc_is_one_on_separable_profiles_and_half_on_shuffled_labels():
    from pdeflow.information.classify import entropy_lens_auc, paired_fold_p_value

    rng = np.random.default_rng(4)
    labels = np.repeat([0, 1, 2, 3], 50)  # four kinds, as the study's
    profiles = rng.normal(size=(200, 6)) + 6 * labels[:, None]
    found = entropy_lens_auc(profiles, labels)
    assert found["auc"] > 0.99 and found["k"] == 29 and found["folds"] == 10 and found["classes"] == 4
    assert found["p_value"] < 1e-6 and len(found["auc_by_fold"]) == 10
    shuffled = entropy_lens_auc(profiles, rng.permutation(labels))
    assert abs(shuffled["auc"] - 0.5) < 0.08 and shuffled["p_value"] > 0.01
    assert paired_fold_p_value(found, shuffled) < 1e-6
    # two classes: the positive class's probability; grouped folds keep groups on one side
    binary = labels % 2
    separable = rng.normal(size=(200, 2)) + 5 * binary[:, None]
    assert entropy_lens_auc(separable, binary)["auc"] > 0.99
    grouped = entropy_lens_auc(separable, binary, groups=np.arange(200) // 4)
    assert grouped["grouped"] and grouped["auc"] > 0.99
    # the stratified dummy draws labels at the class frequencies: AUC 1/2 (checked on folds of 200)
    many = np.repeat([0, 1, 2, 3], 500)
    dummy = entropy_lens_auc(rng.normal(size=(2000, 3)), many)
    assert abs(dummy["dummy_auc"] - 0.5) < 0.02 and abs(dummy["auc"] - 0.5) < 0.03
    with pytest.raises(ValueError, match="at least 10 samples"):
        entropy_lens_auc(profiles[::7], labels[::7])
    with pytest.raises(ValueError, match="same folds"):
        paired_fold_p_value(found, grouped)


def test_the_fast_auc_is_sklearns_roc_auc_score():
    from sklearn.metrics import roc_auc_score

    from pdeflow.information.classify import _auc

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, 300)
    probabilities = rng.multinomial(4, [0.25] * 4, 300) / 4.0  # vote fractions of 4 neighbours: many ties
    expected = roc_auc_score(labels, probabilities, multi_class="ovr", average="macro", labels=np.arange(4))
    assert _auc(labels, probabilities, np.arange(4)) == pytest.approx(expected, abs=1e-12)
    binary = labels % 2
    assert _auc(binary, probabilities[:, :2], np.arange(2)) == pytest.approx(roc_auc_score(binary, probabilities[:, 1]),
                                                                            abs=1e-12)
