"""Divergences and fidelity of attention maps, and the trivial baselines every figure stands beside.

Shapes: maps are ``(L, B, H, N, N)`` probabilities (rows = queries), masks ``(B, N)`` booleans. Only real
queries and real keys count. JS divergences are in bits (between 0 and 1).

The fidelity metrics are registered in `METRICS` (name → `Metric`: function, title, direction, unit); fidelity,
the report's tables and its figures iterate over it, so a new metric is added in one place (`register_metric`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


def _xlogy(x: Array, y: Array) -> Array:
    """``x · log(y)`` with ``0 · log(anything) = 0``."""
    return jnp.where(x > 0, x * jnp.log(jnp.where(x > 0, y, 1.0)), 0.0)


def _kl_rows(p: Array, log_q: Array) -> Array:
    """Row-wise ``KL(p ‖ q) = Σ_j p_j (log p_j − log q_j)`` over the last axis, from ``p`` and ``log q``."""
    return jnp.sum(_xlogy(p, p) - jnp.where(p > 0, p * log_q, 0.0), axis=-1)


def attention_kl(target: Array, log_predicted: Array, mask: Array) -> Array:
    """``KL(target ‖ predicted)`` per row, averaged over real query rows, for one input.

    Args:
        target: ``(..., N, N)`` probabilities; log_predicted: ``(..., N, N)`` log-probabilities;
        mask: ``(N,)``.
    Returns:
        ``(...)`` mean row KL in nats.
    """
    row = _kl_rows(jnp.where(mask[None, :], target, 0.0), log_predicted)
    m = mask.astype(row.dtype)
    return jnp.sum(row * m, axis=-1) / jnp.maximum(m.sum(), 1.0)


def _js_rows(p: Array, q: Array) -> Array:
    mid = 0.5 * (p + q)
    log_mid = jnp.log(jnp.where(mid > 0, mid, 1.0))  # mid > 0 wherever p > 0 or q > 0
    return jnp.maximum(0.5 * (_kl_rows(p, log_mid) + _kl_rows(q, log_mid)) / jnp.log(2.0), 0.0)


def map_cosine(p: Array, q: Array) -> Array:
    """Cosine similarity of two maps ``(..., N, N)`` over their last two axes -> ``(...)`` (entries outside the
    real ``n × n`` block must be zero in one of them)."""
    return jnp.sum(p * q, (-2, -1)) / jnp.sqrt(jnp.sum(p * p, (-2, -1)) * jnp.sum(q * q, (-2, -1)) + 1e-30)


def _cosine(p: Array, q: Array, mask: Array, top_k: Array) -> Array:
    """Cosine similarity of the two maps over the real ``n × n`` block."""
    return map_cosine(p, q)


def _js(p: Array, q: Array, mask: Array, top_k: Array) -> Array:
    """Mean row-wise Jensen–Shannon divergence (bits) over the real query rows."""
    m = mask.astype(p.dtype)
    return jnp.sum(_js_rows(p, q) * m, -1) / m.sum()


def _top_k(p: Array, q: Array, mask: Array, top_k: Array) -> Array:
    """Mean fraction, over the real query rows, of each row's top-``k`` keys that the two maps share."""
    m = mask.astype(p.dtype)
    rank_p = jnp.argsort(jnp.argsort(-jnp.where(mask, p, -1.0), -1), -1)  # 0 = largest
    rank_q = jnp.argsort(jnp.argsort(-jnp.where(mask, q, -1.0), -1), -1)
    k = jnp.minimum(top_k, m.sum()).astype(jnp.int32)
    shared = jnp.sum((rank_p < k) & (rank_q < k), -1) / k  # (H, N)
    return jnp.sum(shared * m, -1) / m.sum()


@dataclasses.dataclass(frozen=True)
class Metric:
    """One measure of how close predicted attention maps are to the reference ones.

    Attributes:
        name: the key in fidelity dicts and in ``metrics.json`` (e.g. ``"cosine"``).
        title: what it is, in words, for table headings (e.g. ``"cosine similarity"``).
        short_title: the same in a few words, for figure panels (e.g. ``"cosine"``).
        direction: ``"higher"`` or ``"lower"``: which is better.
        unit: the unit of its values (e.g. ``"bits"``); ``""`` for a pure number.
        compute: ``compute(p, q, mask, top_k) -> (H,)`` for one input: ``p`` the reference and ``q`` the predicted
            maps ``(H, N, N)`` with padded queries and keys set to 0, ``mask`` its real tokens ``(N,)``, ``top_k``
            the ``k`` of top-``k`` measures. Traced by JAX (``jit`` and ``vmap`` over inputs).
    """

    name: str
    title: str
    short_title: str
    direction: str
    unit: str
    compute: Callable[[Array, Array, Array, Array], Array]

    def __post_init__(self):
        if self.direction not in ("higher", "lower"):
            raise ValueError(f"metric {self.name!r}: direction must be 'higher' or 'lower' (which is better), "
                             f"not {self.direction!r}.")

    @property
    def heading(self) -> str:
        """Its title with unit and direction, e.g. ``"row-wise Jensen–Shannon divergence, bits (lower is
        better)"`` (the headings of ``summary.md``)."""
        unit = f", {self.unit}" if self.unit else ""
        return f"{self.title}{unit} ({self.direction} is better)"

    @property
    def axis_title(self) -> str:
        """Its short title with unit and an arrow pointing to better, e.g. ``"Jensen–Shannon (bits) ↓"``."""
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.short_title}{unit} {'↑' if self.direction == 'higher' else '↓'}"


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("cosine", "cosine similarity", "cosine", "higher", "", _cosine),
    Metric("js", "row-wise Jensen–Shannon divergence", "Jensen–Shannon", "lower", "bits", _js),
    Metric("top_k", "top-k agreement", "top-k agreement", "higher", "", _top_k),
)}
"""Every fidelity metric, by name, in the order of ``metrics.json``, tables and figures: the one place a metric is
added (`register_metric`). Functions that take ``registry`` default to this one as it is when they are called."""


def register_metric(metric: Metric) -> Metric:
    """Add ``metric`` to `METRICS` (after the others); ``ValueError`` if its name is taken."""
    if metric.name in METRICS:
        raise ValueError(f"a metric named {metric.name!r} is already registered; choose another name.")
    METRICS[metric.name] = metric
    return metric


@contextlib.contextmanager
def registered_metrics(*extra: Metric) -> Iterator[dict[str, Metric]]:
    """``with registered_metrics(Metric(...)):`` `METRICS` holds ``extra`` too, until the block ends."""
    added = []
    try:
        for metric in extra:
            added.append(register_metric(metric).name)
        yield METRICS
    finally:
        for name in added:
            del METRICS[name]


def _fidelity_one(computes: tuple, p: Array, q: Array, mask: Array, top_k: Array) -> tuple[Array, ...]:
    """p, q: (H, N, N) for one input -> each metric's (H,)."""
    m = mask.astype(p.dtype)
    pair = m[:, None] * m[None, :]
    p, q = p * pair, q * pair
    return tuple(compute(p, q, mask, top_k) for compute in computes)


@functools.cache
def _fidelity_batch(computes: tuple):
    return jax.jit(jax.vmap(functools.partial(_fidelity_one, computes), in_axes=(0, 0, 0, None)))


def attention_fidelity(reference, predicted, mask, top_k: int = 3,
                       registry: Mapping[str, Metric] | None = None) -> dict[str, np.ndarray]:
    """Per-input fidelity of ``predicted`` to ``reference`` maps, by every metric of ``registry`` (default
    `METRICS`).

    Args:
        reference, predicted: ``(L, B, H, N, N)`` probabilities; mask: ``(B, N)``.
    Returns:
        ``{name: (L, B, H)}`` in the registry's order; by default ``"cosine"``, ``"js"`` and ``"top_k"``: cosine
        similarity of the maps over real tokens, mean row-wise Jensen–Shannon divergence (bits), and the mean
        fraction of each row's top-``k`` keys that the two maps share. A block whose prediction is NaN (e.g. the
        previous-layer baseline at 0) is NaN.
    """
    registry = METRICS if registry is None else registry
    reference, predicted, mask = np.asarray(reference), np.asarray(predicted), np.asarray(mask, bool)
    if (reference.shape != predicted.shape or reference.ndim != 5
            or mask.shape != reference.shape[1:2] + reference.shape[-1:]):
        raise ValueError(f"need reference and predicted of one shape (L, B, H, N, N) and mask (B, N); got "
                         f"{reference.shape}, {predicted.shape}, {mask.shape}.")
    batch = _fidelity_batch(tuple(metric.compute for metric in registry.values()))
    out = {name: np.zeros(reference.shape[:3]) for name in registry}
    for l in range(reference.shape[0]):
        if np.isnan(predicted[l]).any():  # no prediction for this block (e.g. the previous-layer baseline at 0)
            for name in out:
                out[name][l] = np.nan
            continue
        values = batch(reference[l], predicted[l], mask, top_k)
        for name, value in zip(registry, values):
            out[name][l] = np.asarray(value)
    return out


def summarise(fidelity: dict[str, np.ndarray]) -> dict[str, list[float]]:
    """Average ``(L, B, H)`` fidelity over inputs and heads: per-layer lists (NaN layers stay NaN), by metric, in
    ``fidelity``'s order (`attention_fidelity` gives the registry's)."""
    return {name: [float(x) for x in value.mean(axis=(1, 2))] for name, value in fidelity.items()}


# ---- baselines ------------------------------------------------------------------------------------------


def uniform_maps(mask, num_layers: int, num_heads: int, causal: bool = False) -> np.ndarray:
    """Uniform attention over the real keys (``causal``: over the real keys no later than the query):
    ``(L, B, H, N, N)``."""
    m = np.asarray(mask, np.float32)
    if causal:
        keys = m[:, None, :] * np.tril(np.ones((m.shape[1],) * 2, np.float32))  # (B, N, N)
        rows = keys / np.maximum(keys.sum(-1, keepdims=True), 1.0)
        maps = np.broadcast_to(rows[:, None], (m.shape[0], num_heads, m.shape[1], m.shape[1]))
    else:
        rows = m / m.sum(-1, keepdims=True)  # (B, N)
        maps = np.broadcast_to(rows[:, None, None, :], (m.shape[0], num_heads, m.shape[1], m.shape[1]))
    return np.broadcast_to(maps[None], (num_layers,) + maps.shape).copy()


def previous_layer_maps(attention) -> np.ndarray:
    """Block ``l`` predicted by block ``l − 1``'s maps; block 0 has no predecessor and is NaN."""
    attention = np.asarray(attention)
    return np.concatenate([np.full_like(attention[:1], np.nan), attention[:-1]], axis=0)


def mean_attention(attention, mask) -> np.ndarray:
    """Mean map per block and head over training inputs, position by position: ``(L, H, N, N)``.
    Each query row is averaged over the inputs in which that query is real."""
    attention, m = np.asarray(attention), np.asarray(mask, np.float32)
    total = np.einsum("lbhij,bi->lhij", attention, m)
    return total / np.maximum(m.sum(0), 1.0)[None, None, :, None]


def mean_attention_maps(mean_map, mask) -> np.ndarray:
    """The mean training map cut to each input's real keys and renormalised: ``(L, B, H, N, N)``
    (a row with no mass on the real keys falls back to uniform)."""
    mean_map, m = np.asarray(mean_map), np.asarray(mask, np.float32)
    n = m.shape[1]
    if mean_map.shape[-1] < n:
        mean_map = np.pad(mean_map, [(0, 0)] * 2 + [(0, n - mean_map.shape[-2]), (0, n - mean_map.shape[-1])])
    maps = mean_map[:, None, :, :n, :n] * m[None, :, None, None, :]
    sums = maps.sum(-1, keepdims=True)
    uniform = np.broadcast_to(m[None, :, None, None, :] / m.sum(-1)[None, :, None, None, None], maps.shape)
    return np.where(sums > 1e-12, maps / np.maximum(sums, 1e-30), uniform)
