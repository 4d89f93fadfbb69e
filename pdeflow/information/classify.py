"""What entropy profiles tell apart: a plain k-nearest-neighbour classifier on profile vectors, measured by
grouped cross-validation beside a chance baseline.

Features are standardised on the training folds only (a `sklearn.pipeline.Pipeline` of `StandardScaler` and
`KNeighborsClassifier`). ``groups`` keep related samples (windows of one paragraph, tokens of one prompt, one
prompt seen by several models) on the same side of every split, so no score comes from a near-copy of a
training sample. Runs in numpy/scikit-learn on the host: measurement, not the hot path.

`entropy_lens_auc` is Entropy-Lens's own read-out instead, to the letter of its code: k = 29 on raw
(unstandardised) features, stratified 10-fold cross-validation without groups, macro one-vs-rest ROC AUC beside
a stratified dummy classifier, and a paired t-test over the folds.
"""

from __future__ import annotations

import numpy as np


def resample_depth(profile, points: int) -> np.ndarray:
    """``(..., L+1) -> (..., points)``: a profile over layers ``0..L`` linearly interpolated at ``points``
    evenly spaced normalised depths in ``[0, 1]``, so that models of different depth share one axis."""
    profile = np.asarray(profile, np.float64)
    if profile.shape[-1] < 2 or points < 2:
        raise ValueError(f"need at least 2 layers and 2 points; got {profile.shape[-1]} and {points}.")
    source = np.linspace(0.0, 1.0, profile.shape[-1])
    target = np.linspace(0.0, 1.0, points)
    flat = profile.reshape(-1, profile.shape[-1])
    return np.stack([np.interp(target, source, row) for row in flat]).reshape(*profile.shape[:-1], points)


def _check(features, labels, groups):
    features = np.asarray(features, np.float64)
    if features.ndim == 1:
        features = features[:, None]
    labels, groups = np.asarray(labels), np.asarray(groups)
    if features.ndim != 2 or labels.shape != (features.shape[0],) or groups.shape != labels.shape:
        raise ValueError(f"need features (n, f), labels (n,) and groups (n,); got {features.shape}, {labels.shape} "
                         f"and {groups.shape}.")
    if not np.all(np.isfinite(features)):
        raise ValueError("features contain NaN or Inf; drop padded tokens before classifying.")
    return features, labels, groups


def knn_classifier(k: int):
    """The classifier every comparison uses: standardise, then k nearest neighbours (Euclidean, uniform vote)."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k))


def _folds(labels, groups, folds: int, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold

    if len(np.unique(groups)) < folds:
        raise ValueError(f"{folds}-fold cross-validation needs at least {folds} groups; got "
                         f"{len(np.unique(groups))}.")
    return StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(labels, labels, groups)


def cross_validated_accuracy(features, labels, groups, k: int = 15, folds: int = 5, seed: int = 0) -> dict:
    """Out-of-fold accuracy of the k-NN classifier, with the chance baseline (the training folds' most frequent
    label) on the same folds.

    Returns:
        ``{"accuracy", "balanced_accuracy", "chance", "k", "folds", "samples"}``; balanced accuracy is the mean
        per-class recall (chance level ``1 / classes``).
    """
    from sklearn.metrics import balanced_accuracy_score

    features, labels, groups = _check(features, labels, groups)
    predicted = np.empty_like(labels)
    chance = np.empty_like(labels)
    for train, test in _folds(labels, groups, folds, seed):
        model = knn_classifier(min(k, len(train))).fit(features[train], labels[train])
        predicted[test] = model.predict(features[test])
        values, counts = np.unique(labels[train], return_counts=True)
        chance[test] = values[np.argmax(counts)]
    return {"accuracy": float(np.mean(predicted == labels)),
            "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
            "chance": float(np.mean(chance == labels)), "k": k, "folds": folds, "samples": int(len(labels))}


def transfer_accuracy(train_features, train_labels, test_features, test_labels, k: int = 15) -> dict:
    """Accuracy of the k-NN classifier fitted on one set and scored on another (e.g. other depths), with the
    chance baseline (the training set's most frequent label)."""
    train_features, train_labels, _ = _check(train_features, train_labels, np.zeros(len(train_labels)))
    test_features, test_labels, _ = _check(test_features, test_labels, np.zeros(len(test_labels)))
    model = knn_classifier(min(k, len(train_labels))).fit(train_features, train_labels)
    values, counts = np.unique(train_labels, return_counts=True)
    return {"accuracy": float(np.mean(model.predict(test_features) == test_labels)),
            "chance": float(np.mean(test_labels == values[np.argmax(counts)])), "k": k,
            "samples": int(len(test_labels))}


def cross_validated_auc(features, labels, groups, k: int = 15, folds: int = 5, seed: int = 0) -> dict:
    """Out-of-fold ROC AUC of the k-NN classifier's probability for a binary label (True/1 the positive class).
    Chance is 0.5 (a constant score).

    Returns:
        ``{"auc", "chance", "positive_rate", "k", "folds", "samples"}``.
    """
    from sklearn.metrics import roc_auc_score

    features, labels, groups = _check(features, labels, groups)
    labels = labels.astype(bool)
    if labels.all() or not labels.any():
        raise ValueError("the binary label takes one value only; the AUC is undefined.")
    scores = np.empty(len(labels))
    for train, test in _folds(labels, groups, folds, seed):
        model = knn_classifier(min(k, len(train))).fit(features[train], labels[train])
        scores[test] = model.predict_proba(features[test])[:, list(model.classes_).index(True)]
    return {"auc": float(roc_auc_score(labels, scores)), "chance": 0.5, "positive_rate": float(labels.mean()),
            "k": k, "folds": folds, "samples": int(len(labels))}


ENTROPY_LENS_K = 29
ENTROPY_LENS_FOLDS = 10
ENTROPY_LENS_SEED = 42


def entropy_lens_auc(features, labels, k: int = ENTROPY_LENS_K, folds: int = ENTROPY_LENS_FOLDS,
                     seed: int = ENTROPY_LENS_SEED, groups=None) -> dict:
    """Entropy-Lens's read-out (Ali et al. 2025, ``utils.evaluate_model_overall``): ROC AUC of a k-NN
    (k = 29, Euclidean, uniform vote, **no** standardisation) under stratified k-fold cross-validation
    (10 folds, shuffled, seed 42), beside a stratified `DummyClassifier` (same seed) on the same folds, and a
    paired t-test (`scipy.stats.ttest_rel`) of the per-fold AUCs. Several classes: macro one-vs-rest AUC of
    the predicted probabilities; two: the positive class's probability.

    ``groups`` (optional) switches to `StratifiedGroupKFold`, so that related samples (e.g. the four forms of
    one prompt) never straddle a split; the anchor does not group.

    Returns:
        ``{"auc", "dummy_auc", "improvement", "p_value", "auc_by_fold", "dummy_auc_by_fold", "k", "folds",
        "grouped", "classes", "samples"}``; ``p_value`` is NaN where the two sets of fold AUCs differ by the
        same amount on every fold.
    """
    from scipy.stats import ttest_rel
    from sklearn.dummy import DummyClassifier
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier

    features, labels, _ = _check(features, labels, np.zeros(len(labels)) if groups is None else groups)
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("the labels take one value only; the AUC is undefined.")
    if np.bincount(np.searchsorted(classes, labels)).min() < folds:
        raise ValueError(f"stratified {folds}-fold cross-validation needs at least {folds} samples of every class.")
    if groups is None:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels)
    else:
        splits = _folds(labels, np.asarray(groups), folds, seed)
    model_auc, dummy_auc = [], []
    for train, test in splits:
        model = KNeighborsClassifier(n_neighbors=min(k, len(train)), metric="euclidean").fit(features[train],
                                                                                            labels[train])
        dummy = DummyClassifier(strategy="stratified", random_state=seed).fit(features[train], labels[train])
        model_auc.append(_auc(labels[test], model.predict_proba(features[test]), model.classes_))
        dummy_auc.append(_auc(labels[test], dummy.predict_proba(features[test]), dummy.classes_))
    p_value = float(ttest_rel(model_auc, dummy_auc).pvalue)
    return {"auc": float(np.mean(model_auc)), "dummy_auc": float(np.mean(dummy_auc)),
            "improvement": float(np.mean(model_auc) - np.mean(dummy_auc)), "p_value": p_value,
            "auc_by_fold": [float(a) for a in model_auc], "dummy_auc_by_fold": [float(a) for a in dummy_auc],
            "k": k, "folds": folds, "grouped": groups is not None, "classes": int(len(classes)),
            "samples": int(len(labels))}


def paired_fold_p_value(a: dict, b: dict) -> float:
    """Paired t-test p-value between two `entropy_lens_auc` results' per-fold AUCs (the same folds: same labels,
    seed and grouping), e.g. the whole profile against the final layer's entropy alone."""
    from scipy.stats import ttest_rel

    if len(a["auc_by_fold"]) != len(b["auc_by_fold"]) or a["grouped"] != b["grouped"]:
        raise ValueError("the two results were not scored on the same folds.")
    return float(ttest_rel(a["auc_by_fold"], b["auc_by_fold"]).pvalue)


def _auc(labels, probabilities, classes) -> float:
    """``sklearn.metrics.roc_auc_score`` as the anchor calls it, without its per-call overhead (the study makes
    thousands of calls). Binary: AUC of the second class's probability; several classes: macro one-vs-rest
    (the mean over classes of the AUC of that class's probability; a fold's test set holds every class: the
    folds are stratified). Each AUC is the Mann–Whitney statistic with ties counted one half."""
    from scipy.stats import rankdata

    labels = np.asarray(labels)

    def binary(positive, score):
        ranks = rankdata(score)
        n_pos = int(positive.sum())
        n_neg = len(positive) - n_pos
        return (ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)

    if len(classes) == 2:
        return float(binary(labels == classes[1], probabilities[:, 1]))
    return float(np.mean([binary(labels == c, probabilities[:, i]) for i, c in enumerate(classes)]))
