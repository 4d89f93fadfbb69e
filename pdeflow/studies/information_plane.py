"""The information plane of the ViT on digits (`pdeflow info`): I(X; T_l) and I(T_l; Y) for every layer l,
over training epochs, with two estimators.

``T_l`` is the whole residual stream entering block ``l`` (``Trace.hidden[l]``, all 17 tokens flattened; the
last one is the stream the classifier reads), measured on the held-out test digits. Neither estimator can work
in its 1,632 dimensions with 450 samples, so each layer is reduced to its top ``components`` principal
components (fitted on the same images, each standardised):

* **binning**: each component cut into ``bins`` equal-width bins. ``T`` is a deterministic function of
  distinct images, so ``I(X; T) = H(bin(T))``; ``I(T; Y)`` is the plug-in estimate with the labels.
* **KSG**: ``I(X; T)`` by Kraskov–Stögbauer–Grassberger between the image's and the layer's top components
  (the same number), ``I(T; Y)`` by Ross's mixed estimator with the labels.

Beside every ``I(T; Y)`` stands the same estimate against the labels randomly permuted (seeded): the
estimator's own bias on this many samples, which the true value of a shuffled label (zero) would not show.
The plug-in binning estimate in particular grows with the number of occupied cells (``bins ** components``):
with 3 components and 10 bins it gives 2.3 of H(Y) = 3.3 bits to shuffled labels on 450 digits.

Both are estimates of a projected, discretised or smoothed quantity, not of the (infinite) mutual information of
a deterministic network; the study shows how layers and epochs move relative to each other, which is what
the information plane is read for. Every number is in bits.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pdeflow.information.mutual_information import (
    binned_mutual_information,
    discrete_entropy,
    ksg_mutual_information,
    mixed_ksg_mutual_information,
)
from pdeflow.train.vit import TrainedViT, ViTTrainConfig, train_vit
from pdeflow.validation import check_finite_numbers

ESTIMATORS = ("binning", "ksg")


@dataclasses.dataclass(frozen=True)
class InfoPlaneConfig:
    """Settings of the information-plane study.

    Attributes:
        train: how the ViT is trained (its epochs bound the snapshots).
        snapshot_epochs: epochs at which the plane is measured (0 is the initialisation).
        components: principal components kept per layer (and of the images, for KSG).
        bins: equal-width bins per component for the binning estimator.
        k: neighbours of the KSG and mixed-KSG estimators.
        shuffle_seed: seeds the label permutation of the shuffled-label control.
    """

    train: ViTTrainConfig = ViTTrainConfig()
    snapshot_epochs: tuple[int, ...] = (0, 1, 3, 10, 30, 150)
    components: int = 3
    bins: int = 4
    k: int = 3
    shuffle_seed: int = 0

    def __post_init__(self):
        check_finite_numbers(self)
        if isinstance(self.train, dict):
            object.__setattr__(self, "train", ViTTrainConfig(**self.train))
        epochs = sorted(set(self.snapshot_epochs))
        if not epochs or epochs[0] < 0 or epochs[-1] > self.train.epochs:
            raise ValueError(f"snapshot_epochs must lie in [0, {self.train.epochs}] (the training epochs); got "
                             f"{list(self.snapshot_epochs)}.")
        if self.components < 1 or self.bins < 2 or self.k < 1:
            raise ValueError("need components >= 1, bins >= 2 and k >= 1.")


def principal_components(values: np.ndarray, components: int) -> np.ndarray:
    """``(n, f) -> (n, c)``: the top ``c`` principal components of the rows, each standardised (zero mean, unit
    variance; a component with no variance stays zero)."""
    values = np.asarray(values, np.float64).reshape(len(values), -1)
    centred = values - values.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ vt[:components].T
    scale = projected.std(0)
    return projected / np.where(scale > 1e-12, scale, 1.0)


def layer_information(hidden: np.ndarray, images: np.ndarray, labels: np.ndarray,
                      config: InfoPlaneConfig) -> dict[str, np.ndarray]:
    """``{"binning": (L+1, 3), "ksg": (L+1, 3)}``: ``[I(X; T_l), I(T_l; Y), I(T_l; shuffled Y)]`` per layer of
    one model (the last, the estimator's bias, is zero for an unbiased estimator).

    Args:
        hidden: ``(L+1, n, N, d)`` traced states on the measured images.
        images: ``(n, S, S)`` the images (for KSG's image components).
        labels: ``(n,)`` class labels.
    """
    n = len(labels)
    x = principal_components(images, config.components)
    identity = np.arange(n)
    shuffled = np.random.default_rng(config.shuffle_seed).permutation(labels)
    out = {name: np.zeros((hidden.shape[0], 3)) for name in ESTIMATORS}
    for layer, states in enumerate(hidden):
        t = principal_components(states, config.components)
        out["binning"][layer] = (binned_mutual_information(t, identity, config.bins),
                                 binned_mutual_information(t, labels, config.bins),
                                 binned_mutual_information(t, shuffled, config.bins))
        out["ksg"][layer] = (ksg_mutual_information(x, t, config.k), mixed_ksg_mutual_information(t, labels, config.k),
                             mixed_ksg_mutual_information(t, shuffled, config.k))
    return out


def information_plane(config: InfoPlaneConfig = InfoPlaneConfig(), progress: bool = False) -> dict:
    """Train the ViT with snapshots and measure the plane at every snapshot on the held-out test digits.

    Returns a JSON-ready dict: per estimator, ``plane[estimator]`` of shape ``(epochs, L+1, 3)`` as nested lists
    (``[I(X; T), I(T; Y), I(T; shuffled Y)]``),
    the snapshot epochs, the test accuracy at each snapshot, the final test accuracy, and the ceilings
    ``H(Y)`` (label entropy) and ``log2 n`` (the most any estimate of ``I(X; T)`` on n images can be)."""
    from pdeflow.data.digits import digit_splits

    splits = digit_splits(config.train.test_fraction, config.train.split_seed)
    wanted = sorted(set(config.snapshot_epochs))
    snapshots: dict[int, dict] = {}

    def keep(epoch, params):
        if epoch in wanted:
            snapshots[epoch] = params

    final = train_vit(config.train, progress, on_epoch=keep)
    planes = {name: [] for name in ESTIMATORS}
    accuracies = []
    for epoch in wanted:
        model = TrainedViT(config.train, snapshots[epoch], 0.0, [])
        logits, trace = model.run(splits.test_images)
        accuracies.append(float(np.mean(logits.argmax(-1) == splits.test_labels)))
        measured = layer_information(np.asarray(trace.hidden), splits.test_images, splits.test_labels, config)
        for name in ESTIMATORS:
            planes[name].append(measured[name])
    return {
        "config": dataclasses.asdict(config),
        "samples": int(len(splits.test_labels)),
        "epochs": wanted,
        "test_accuracy": accuracies,
        "final_test_accuracy": final.test_accuracy,
        "label_entropy_bits": discrete_entropy(splits.test_labels),
        "image_entropy_bits": float(np.log2(len(splits.test_labels))),
        "plane": {name: np.stack(planes[name]).tolist() for name in ESTIMATORS},
    }

