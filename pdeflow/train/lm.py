"""Training small causal language models on the pydoc topics (`pdeflow train lm`), in families.

A *family* is an architecture (`LM_FAMILIES`); its members differ only in depth. The default set
(`DEFAULT_FAMILY_DEPTHS`) is two families at depths 2, 4 and 8, which trains in a few minutes on 2 CPU cores.
Models learn characters from the training paragraphs of `pdeflow.data.pydoc_corpus.split_corpus` and report
their loss (bits per character) on the held-out paragraphs. A trained model is a folder with
``params.safetensors`` and ``config.json`` (training config, vocabulary, held-out loss, loss curve);
`load_or_train_lm` keeps one folder per config in the cache (``$PDEFLOW_CACHE`` or ``~/.cache/pdeflow``).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pdeflow.data.pydoc_corpus import corpus_vocabulary, encode, split_corpus
from pdeflow.fitting.optim import OptimizerConfig
from pdeflow.fitting.train_loop import make_train_step, train_loop
from pdeflow.models.gpt import GPT, GPTConfig, gpt_forward, run_gpt
from pdeflow.models.trace import Trace
from pdeflow.store import (
    cache_root,
    check_params_match,
    fingerprint,
    load_or_train,
    read_params_folder,
    save_params_folder,
)
from pdeflow.validation import check_finite_numbers

# family name -> the GPTConfig fields that define it (everything but depth)
LM_FAMILIES = {
    "pre-ln": {"norm": "pre", "mlp_ratio": 4, "tie_embeddings": True},
    "post-ln": {"norm": "post", "mlp_ratio": 2, "tie_embeddings": False},
}
DEFAULT_FAMILY_DEPTHS = (2, 4, 8)


@dataclasses.dataclass(frozen=True)
class LMTrainConfig:
    """How a character-level language model is trained (AdamW, warm-up then cosine decay).

    Attributes:
        family: the architecture family, one of LM_FAMILIES (sets norm, mlp_ratio, tie_embeddings).
        num_layers: depth of the model.
        hidden_size: width of the residual stream.
        num_heads: attention heads.
        context_size: training window, in characters.
        steps: optimiser steps.
        batch_size: windows per step.
        learning_rate: peak learning rate.
        warmup_steps: steps of linear warm-up.
        weight_decay: AdamW weight decay.
        held_out_fraction: share of each kind's paragraphs held out from training (stratified).
        split_seed: seeds the paragraph split.
        seed: seeds initialisation and the training windows.
    """

    family: str = "pre-ln"
    num_layers: int = 4
    hidden_size: int = 64
    num_heads: int = 4
    context_size: int = 64
    steps: int = 600
    batch_size: int = 32
    learning_rate: float = 3e-3
    warmup_steps: int = 60
    weight_decay: float = 0.01
    held_out_fraction: float = 0.3
    split_seed: int = 0
    seed: int = 0

    def __post_init__(self):
        check_finite_numbers(self)
        if self.family not in LM_FAMILIES:
            raise ValueError(f"family must be one of {sorted(LM_FAMILIES)}; got {self.family!r}.")
        if self.steps < 1 or self.batch_size < 1 or self.context_size < 2:
            raise ValueError("steps and batch_size must be positive and context_size at least 2.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive; got {self.learning_rate}.")

    def model(self, vocab_size: int) -> GPTConfig:
        """The `GPTConfig` of this family at this depth, for a vocabulary of ``vocab_size`` characters."""
        return GPTConfig(vocab_size=vocab_size, context_size=self.context_size, hidden_size=self.hidden_size,
                         num_layers=self.num_layers, num_heads=self.num_heads, **LM_FAMILIES[self.family])

    @property
    def name(self) -> str:
        """``family-L<depth>``, e.g. ``pre-ln-L4``."""
        return f"{self.family}-L{self.num_layers}"

    def optimizer(self) -> OptimizerConfig:
        """AdamW over ``steps`` steps: linear warm-up, cosine decay to 0, gradients clipped to global norm 1."""
        return OptimizerConfig(self.learning_rate, self.steps, self.warmup_steps, self.weight_decay, clip_norm=1.0)


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedLM:
    """A trained language model: its training config, character vocabulary, parameters, held-out loss (bits per
    character) and loss curve."""

    config: LMTrainConfig
    vocabulary: str
    params: dict
    held_out_bits_per_char: float
    history: list[dict]

    @property
    def model(self) -> GPTConfig:
        return self.config.model(len(self.vocabulary))

    def encode(self, texts) -> tuple[np.ndarray, np.ndarray]:
        """Texts -> ``(tokens (B, N), mask (B, N))``, right-padded to the longest (at most the context)."""
        texts = list(texts)
        n = max(len(t) for t in texts) if texts else 0
        if not texts or n == 0 or n > self.config.context_size:
            raise ValueError(f"need 1..{self.config.context_size} characters per text (the context); got "
                             f"{len(texts)} texts of up to {n}.")
        tokens = np.zeros((len(texts), n), np.int32)
        mask = np.zeros((len(texts), n), bool)
        for i, text in enumerate(texts):
            tokens[i, :len(text)] = encode(text, self.vocabulary)
            mask[i, :len(text)] = True
        return tokens, mask

    def run(self, tokens: np.ndarray, mask: np.ndarray | None = None,
            batch_size: int = 128) -> tuple[np.ndarray, Trace]:
        """`pdeflow.models.gpt.run_gpt` with this LM: ``(logits (B, N, V), Trace)`` for token ids (numpy)."""
        return run_gpt(self.model, self.params, tokens, mask, batch_size)


def _windows(ids: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    return ids[starts[:, None] + np.arange(length)[None]]


def bits_per_char(model: GPTConfig, params, ids: np.ndarray, windows: int = 64, seed: int = 0) -> float:
    """Mean next-character loss in bits over ``windows`` seeded random windows of ``ids``."""
    length = model.context_size + 1
    if len(ids) <= length:
        raise ValueError(f"the text has {len(ids)} characters; need more than the context ({length}).")
    starts = np.random.default_rng(seed).integers(0, len(ids) - length, windows)
    batch = _windows(ids, starts, length)
    logits, _ = gpt_forward(model, params, batch[:, :-1], np.ones(batch[:, :-1].shape, bool))
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()
    return float(loss) / math.log(2)


def train_lm(config: LMTrainConfig = LMTrainConfig(), progress: bool = False) -> TrainedLM:
    """Train one model on the training paragraphs; report its loss on the held-out paragraphs."""
    split = split_corpus(config.held_out_fraction, config.split_seed)
    vocabulary = corpus_vocabulary()
    train_ids = encode(split.train_text(), vocabulary)
    held_ids = encode("\n\n".join(p.text for p in split.held_out), vocabulary)
    model = config.model(len(vocabulary))
    module = GPT(model)
    optimizer = config.optimizer().make()
    params = module.init(jax.random.PRNGKey(config.seed), jnp.zeros((1, config.context_size), jnp.int32))
    opt_state = optimizer.init(params)

    def loss_fn(params, batch):
        logits, _ = module.apply(params, batch[:, :-1])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[:, 1:]).mean()

    step = make_train_step(loss_fn, optimizer)
    rng = np.random.default_rng(config.seed)
    history, losses = [], []
    started = time.perf_counter()

    def train_step(i: int) -> None:
        nonlocal params, opt_state
        starts = rng.integers(0, len(train_ids) - config.context_size - 1, config.batch_size)
        params, opt_state, info = step(params, opt_state, _windows(train_ids, starts, config.context_size + 1))
        losses.append(info["loss"])

    def report(i: int, info) -> None:
        mean = float(np.mean(jax.device_get(losses))) / math.log(2)
        losses.clear()
        if not np.isfinite(mean):
            raise FloatingPointError(f"{config.name} diverged by step {i} (loss is NaN/Inf); lower learning_rate.")
        history.append({"step": i, "train_bits_per_char": mean, "seconds": time.perf_counter() - started})

    train_loop(train_step, config.steps, eval_every=max(config.steps // 20, 1), evaluate=report, progress=progress,
               name=f"train {config.name}")
    params = jax.device_get(params)
    return TrainedLM(config, vocabulary, params, bits_per_char(model, params, held_ids), history)


def save_lm(model: TrainedLM, folder: str | Path, overwrite: bool = False) -> Path:
    """Write ``params.safetensors`` and ``config.json`` into ``folder`` atomically."""
    return save_params_folder(folder, model.params, {
        "kind": "lm", "train": dataclasses.asdict(model.config), "vocabulary": model.vocabulary,
        "held_out_bits_per_char": model.held_out_bits_per_char, "history": model.history}, overwrite)


def load_lm(folder: str | Path) -> TrainedLM:
    """Read a model written by `save_lm`; raises ``FileNotFoundError`` / ``ValueError`` naming what is wrong."""
    folder = Path(folder)
    meta, params = read_params_folder(folder, f"pdeflow train lm --out {folder}")
    try:
        config = LMTrainConfig(**meta["train"])
        vocabulary = str(meta["vocabulary"])
        loss = float(meta["held_out_bits_per_char"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{folder / 'config.json'} is not a pdeflow language-model config ({error}); retrain the "
                         "model.") from error
    model = config.model(len(vocabulary))
    expected = jax.eval_shape(lambda: GPT(model).init(jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.int32)))
    check_params_match(expected, params, str(folder / "params.safetensors"))
    return TrainedLM(config, vocabulary, params, loss, meta.get("history", []))


def default_lm_folder(config: LMTrainConfig = LMTrainConfig()) -> Path:
    """Where `load_or_train_lm` keeps the model trained with ``config``."""
    return cache_root() / f"lm-{config.name}-{fingerprint(config)}"


def load_or_train_lm(config: LMTrainConfig = LMTrainConfig(), folder: str | Path | None = None,
                     progress: bool = False) -> TrainedLM:
    """Load the model trained with ``config`` from ``folder`` (default: the cache), training and saving it first
    if it is not there. A folder holding a model trained with other settings is refused."""
    folder = default_lm_folder(config) if folder is None else Path(folder)
    model = load_or_train(folder, config, load_lm, lambda: train_lm(config, progress), save_lm, "a model")
    if model.vocabulary != corpus_vocabulary():
        raise ValueError(f"{folder} was trained on another Python's pydoc topics (its vocabulary differs); "
                         "retrain it here with --overwrite.")
    return model


def family_configs(families=tuple(LM_FAMILIES), depths=DEFAULT_FAMILY_DEPTHS, **settings) -> list[LMTrainConfig]:
    """One `LMTrainConfig` per (family, depth), other settings shared."""
    return [LMTrainConfig(family=f, num_layers=d, **settings) for f in families for d in depths]
