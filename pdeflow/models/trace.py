"""The `Trace` pytree: what a traced transformer hands to the rest of pdeflow."""

from __future__ import annotations

from typing import NamedTuple

import jax
import numpy as np


class Trace(NamedTuple):
    """Per-layer record of one forward pass over a batch.

    Attributes:
        hidden: hidden states, shape ``(L + 1, B, N, d)``; ``hidden[0]`` is the embedding output and
            ``hidden[l]`` the output of block ``l`` (1-based), so block ``l`` (0-based) reads ``hidden[l]``.
        attention: attention probabilities, shape ``(L, B, H, N, N)``; ``attention[l]`` is computed by
            block ``l`` (0-based) from ``hidden[l]``. Rows of padded queries are kept as the model made them
            and are ignored by every loss and metric.
        mask: ``(B, N)`` booleans, True for real tokens and False for padding.
    """

    hidden: jax.Array
    attention: jax.Array
    mask: jax.Array

    @property
    def num_layers(self) -> int:
        return self.attention.shape[0]

    @property
    def num_heads(self) -> int:
        return self.attention.shape[2]

    def take(self, index) -> Trace:
        """The sub-batch ``index`` (an integer array or slice over the batch axis)."""
        return Trace(self.hidden[:, index], self.attention[:, index], self.mask[index])

    def truncate(self, num_tokens: int) -> Trace:
        """The first ``num_tokens`` tokens of every input (dropping padding beyond the longest input)."""
        n = int(num_tokens)
        return Trace(self.hidden[:, :, :n], self.attention[..., :n, :n], self.mask[:, :n])


MAX_HIDDEN = 1e6  # larger hidden states are a scaling mistake, not a transformer (and overflow the fit in float32)


def check_trace(trace: Trace, *, atol: float = 1e-3) -> None:
    """Raise ``ValueError`` naming the problem if ``trace`` is not a well-formed trace.

    Checks ranks and matching sizes, that no value is NaN/Inf, that every sentence has at least one real
    token, and that every real attention row sums to one over the real keys (within ``atol``).
    """
    hidden, attention, mask = (np.asarray(x) for x in trace)
    if hidden.ndim != 4:
        raise ValueError(f"trace.hidden must have shape (L+1, B, N, d); got rank {hidden.ndim} {hidden.shape}.")
    if attention.ndim != 5:
        raise ValueError(
            f"trace.attention must have shape (L, B, H, N, N); got rank {attention.ndim} {attention.shape}."
        )
    if mask.ndim != 2:
        raise ValueError(f"trace.mask must have shape (B, N); got rank {mask.ndim} {mask.shape}.")
    num_layers, batch, _, n_q, n_k = attention.shape
    if hidden.shape[:3] != (num_layers + 1, batch, n_q) or n_q != n_k or mask.shape != (batch, n_q):
        raise ValueError(
            "trace shapes disagree: expected hidden (L+1, B, N, d), attention (L, B, H, N, N), mask (B, N) "
            f"with one L, B and N; got hidden {hidden.shape}, attention {attention.shape}, mask {mask.shape}."
        )
    for name, value in (("hidden", hidden), ("attention", attention)):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"trace.{name} contains NaN or Inf; re-run the model or drop those inputs.")
    largest = float(np.abs(hidden).max()) if hidden.size else 0.0
    if largest > MAX_HIDDEN:
        raise ValueError(f"trace.hidden has values up to {largest:.3g}, beyond {MAX_HIDDEN:g}: a transformer's hidden "
                         "states are far smaller; pass the states as the model made them (not rescaled).")
    if mask.dtype != bool and not (np.issubdtype(mask.dtype, np.number) and np.isin(mask, (0, 1)).all()):
        raise ValueError(f"trace.mask must be boolean (True for real tokens, False for padding) or 0/1; got "
                         f"{mask.dtype} values {np.unique(mask)[:5].tolist()}.")
    mask = mask.astype(bool)
    if batch == 0:
        raise ValueError("trace is empty (batch size 0); give at least one input.")
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ValueError(f"inputs {empty.tolist()} are all padding; every input needs at least one real token.")
    if np.any(attention < -atol):
        raise ValueError("trace.attention has negative entries; pass probabilities (after softmax), not logits.")
    row_sums = (attention * mask[None, :, None, None, :]).sum(-1)  # (L, B, H, N)
    error = np.abs(row_sums - 1.0) * mask[None, :, None, :]
    if np.any(error > atol):
        l, b, h, i = np.unravel_index(np.argmax(error), error.shape)
        raise ValueError(
            f"attention rows must sum to one over real tokens; layer {l}, input {b}, head {h}, query {i} sums "
            f"to {row_sums[l, b, h, i]:.4f}. Pass softmax probabilities with padded keys masked out."
        )


def run_in_batches(forward, inputs: tuple, batch_size: int) -> tuple[np.ndarray | None, Trace]:
    """``forward(*batch) -> (outputs (b, ...), Trace)`` (or just a `Trace`) over fixed-size batches of
    ``inputs`` (arrays sharing their first axis; the last batch is padded, so ``forward`` compiles once) -> numpy
    ``(outputs, Trace)`` for every input, the padding dropped (``outputs`` None when ``forward`` returns a
    `Trace` alone)."""
    from pdeflow.data.batches import fixed_size_batches

    count = inputs[0].shape[0]
    outputs, traces = [], []
    for index, keep in fixed_size_batches(count, min(batch_size, count)):
        result = forward(*(x[index] for x in inputs))
        out, trace = (None, result) if isinstance(result, Trace) else result
        if out is not None:
            outputs.append(np.asarray(out)[:keep])
        traces.append(Trace(np.asarray(trace.hidden)[:, :keep], np.asarray(trace.attention)[:, :keep],
                            np.asarray(trace.mask)[:keep]))
    return (np.concatenate(outputs) if outputs else None), Trace(
        *(np.concatenate([getattr(t, f) for t in traces], axis=0 if f == "mask" else 1) for f in Trace._fields))
