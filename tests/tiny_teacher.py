"""A small random BERT teacher with sharpened attention, traced on random token sequences: the fit tests'
data (no weights to download, seconds to make)."""

import jax
import numpy as np

from pdeflow.fitting.fit import FitConfig
from pdeflow.models import BertConfig, BertEncoder
from pdeflow.pde import SurrogateConfig

TEACHER = BertConfig(vocab_size=30, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_positions=12)
SURROGATE = SurrogateConfig(num_layers=2, num_heads=2, model_dim=16, width=8, key_dim=4, value_rank=2, mlp_width=8,
                            num_knots=2, max_distance=4)
FIT = FitConfig(steps=80, batch_size=16, learning_rate=2e-2, warmup_steps=5, eval_every=20, patience=0)


def tiny_traces(n: int = 10, count: int = 96):
    """``(train 48, validation 16, test 32)`` traces of sequences of 5..``n`` tokens."""
    model = BertEncoder(TEACHER)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, TEACHER.vocab_size, size=(count, n)).astype(np.int32)
    mask = np.arange(n)[None, :] < rng.integers(5, n + 1, size=count)[:, None]
    ids = np.where(mask, ids, 0)
    params = model.init(jax.random.PRNGKey(1), ids[:1], np.zeros_like(ids[:1]), mask[:1])
    sharpen = lambda path, x: x * 4.0 if any(getattr(p, "key", None) in ("query", "key") for p in path) else x  # noqa
    params = jax.tree_util.tree_map_with_path(sharpen, params)
    trace = jax.tree_util.tree_map(np.asarray, model.apply(params, ids, np.zeros_like(ids), mask))
    return trace.take(slice(0, 48)), trace.take(slice(48, 64)), trace.take(slice(64, 96))
