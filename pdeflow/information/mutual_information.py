"""Mutual-information estimators for the information plane, in bits by default.

* `binned_mutual_information`: equal-width bins per dimension, each sample's bin vector a discrete symbol,
  plug-in ``I = H(X) + H(Y) − H(X, Y)`` (the estimator of Shwartz-Ziv & Tishby 2017). Biased upwards when the
  bins are many for the sample count; for a deterministic ``T = f(X)`` of distinct inputs it returns
  ``H(T)``.
* `ksg_mutual_information`: Kraskov, Stögbauer & Grassberger (2004), algorithm 1, for two continuous
  variables (max-norm, k nearest neighbours).
* `mixed_ksg_mutual_information`: Ross (2014), the k-nearest-neighbour estimator between a continuous variable
  and a discrete one (layer states against class labels).
* `gaussian_mutual_information`: the closed form for jointly Gaussian variables (the estimators' sanity check).

These run in numpy on the host (neighbour searches with scikit-learn's KD-tree); they are measurement, not
the hot path.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import digamma


def _as_samples(x, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name} must have shape (n,) or (n, d) with n >= 2 samples; got {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or Inf; drop those samples.")
    return x


def _check_pair(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same samples; got {x.shape[0]} and {y.shape[0]} rows.")


def gaussian_mutual_information(covariance, dim_x: int, base: float = 2.0) -> float:
    """``I(X; Y) = ½ log(det Σ_X det Σ_Y / det Σ)`` for jointly Gaussian ``(X, Y)`` with covariance ``Σ`` whose
    first ``dim_x`` coordinates are X."""
    cov = np.asarray(covariance, np.float64)
    logdet = lambda m: np.linalg.slogdet(m)[1]  # noqa: E731
    nats = 0.5 * (logdet(cov[:dim_x, :dim_x]) + logdet(cov[dim_x:, dim_x:]) - logdet(cov))
    return float(nats / math.log(base))


def _symbols(values: np.ndarray, bins: int) -> np.ndarray:
    """Rows of ``(n, d)`` values -> ``(n,)`` integer symbols of their equal-width bin vectors."""
    low, high = values.min(0), values.max(0)
    width = np.where(high > low, (high - low) / bins, 1.0)
    index = np.clip(np.floor((values - low) / width), 0, bins - 1).astype(np.int64)
    return np.unique(index, axis=0, return_inverse=True)[1].ravel()


def discrete_entropy(symbols, base: float = 2.0) -> float:
    """Plug-in entropy of the empirical distribution of ``symbols`` (any hashable numpy values), in bits by
    default."""
    counts = np.unique(np.asarray(symbols), return_counts=True)[1]
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum() / math.log(base))


def binned_mutual_information(x, y, bins: int = 30, y_discrete: bool | None = None, base: float = 2.0) -> float:
    """Plug-in mutual information of binned samples.

    Args:
        x: ``(n,)`` or ``(n, d_x)`` continuous samples (each dimension cut into ``bins`` equal-width bins).
        y: ``(n,)`` integer labels (kept as they are) or ``(n, d_y)`` continuous samples (binned like x).
        y_discrete: whether ``y`` is already discrete; default: True for an integer array.
    """
    x = _as_samples(x, "x")
    y_raw = np.asarray(y)
    if bins < 2:
        raise ValueError(f"bins must be at least 2; got {bins}.")
    discrete = np.issubdtype(y_raw.dtype, np.integer) if y_discrete is None else y_discrete
    if discrete:
        if y_raw.ndim != 1:
            raise ValueError(f"discrete y must have shape (n,); got {y_raw.shape}.")
        sy = np.unique(y_raw, return_inverse=True)[1].ravel()
    else:
        sy = _symbols(_as_samples(y_raw, "y"), bins)
    _check_pair(x, sy[:, None])
    sx = _symbols(x, bins)
    joint = sx * (sy.max() + 1) + sy
    nats = discrete_entropy(sx, math.e) + discrete_entropy(sy, math.e) - discrete_entropy(joint, math.e)
    return float(max(nats, 0.0) / math.log(base))


def _count_within(tree, points: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Neighbours of each point within its radius (inclusive), the point itself excluded."""
    return tree.query_radius(points, radius, count_only=True) - 1


def ksg_mutual_information(x, y, k: int = 3, base: float = 2.0) -> float:
    """KSG estimator (algorithm 1) of ``I(X; Y)`` for continuous ``x (n, d_x)`` and ``y (n, d_y)``:
    ``ψ(k) + ψ(n) − ⟨ψ(n_x + 1) + ψ(n_y + 1)⟩`` with max-norm distances."""
    from sklearn.neighbors import KDTree

    x, y = _as_samples(x, "x"), _as_samples(y, "y")
    _check_pair(x, y)
    n = x.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, n) = [1, {n}); got {k}.")
    joint = np.concatenate([x, y], axis=1)
    distances, _ = KDTree(joint, metric="chebyshev").query(joint, k=k + 1)
    radius = np.nextafter(distances[:, -1], 0)  # strictly closer than the k-th neighbour in the joint space
    n_x = _count_within(KDTree(x, metric="chebyshev"), x, radius)
    n_y = _count_within(KDTree(y, metric="chebyshev"), y, radius)
    nats = digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_y + 1))
    return float(max(nats, 0.0) / math.log(base))


def mixed_ksg_mutual_information(x, labels, k: int = 3, base: float = 2.0) -> float:
    """Ross's (2014) estimator of ``I(X; Y)`` for continuous ``x (n, d)`` and discrete ``labels (n,)``:
    ``ψ(n) − ⟨ψ(n_y)⟩ + ψ(k) − ⟨ψ(m)⟩``, where ``n_y`` counts a sample's class, the radius is its distance to
    the k-th nearest sample of its class, and ``m`` counts all samples within that radius. Classes with a
    single sample are left out (they have no neighbour)."""
    from sklearn.neighbors import KDTree

    x = _as_samples(x, "x")
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (n,); got {labels.shape}.")
    _check_pair(x, labels[:, None])
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    keep = counts[inverse] > 1
    if not keep.any():
        raise ValueError("every class has a single sample; the estimator needs at least two per class.")
    x, inverse = x[keep], inverse[keep]
    counts = np.bincount(inverse, minlength=len(classes))
    radius = np.empty(x.shape[0])
    k_used = np.empty(x.shape[0])
    for c in np.flatnonzero(counts):
        members = np.flatnonzero(inverse == c)
        kc = min(k, len(members) - 1)
        distances, _ = KDTree(x[members], metric="chebyshev").query(x[members], k=kc + 1)
        radius[members] = distances[:, -1]
        k_used[members] = kc
    m = _count_within(KDTree(x, metric="chebyshev"), x, radius)
    n = x.shape[0]
    nats = digamma(n) - np.mean(digamma(counts[inverse])) + np.mean(digamma(k_used)) - np.mean(digamma(m))
    return float(max(nats, 0.0) / math.log(base))
