"""Training the ViT on scikit-learn's bundled digits (`pdeflow train vit-digits`), saving and loading it.

A trained model is a folder with ``params.safetensors`` and ``config.json`` (the training config, the test
accuracy and the loss curve). `load_or_train_vit` keeps one folder per training config in the cache
(``$PDEFLOW_CACHE`` or ``~/.cache/pdeflow``), so later runs load instead of retraining.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pdeflow.data.digits import digit_splits
from pdeflow.fitting.optim import OptimizerConfig
from pdeflow.fitting.train_loop import make_train_step, train_loop
from pdeflow.models.trace import Trace
from pdeflow.models.vit import ViT, ViTConfig, run_vit
from pdeflow.store import (
    cache_root,
    check_params_match,
    fingerprint,
    load_or_train,
    read_params_folder,
    save_params_folder,
)
from pdeflow.validation import check_finite_numbers


@dataclasses.dataclass(frozen=True)
class ViTTrainConfig:
    """How the ViT is trained (AdamW, linear warm-up then cosine decay, random-translation augmentation).

    Attributes:
        model: the ViT's shape.
        epochs: passes over the training images.
        batch_size: images per step.
        learning_rate: peak learning rate.
        warmup_steps: steps of linear warm-up.
        weight_decay: AdamW weight decay.
        label_smoothing: smoothing of the one-hot targets.
        shift: augmentation; each training image is translated by up to ``±shift`` pixels per axis (zero fill).
        test_fraction: share of the 1,797 digits held out as the test set (stratified).
        split_seed: seeds the train/test split.
        seed: seeds initialisation, batch order and augmentation.
    """

    model: ViTConfig = ViTConfig()
    epochs: int = 150
    batch_size: int = 64
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.05
    label_smoothing: float = 0.0
    shift: int = 1
    test_fraction: float = 0.25
    split_seed: int = 0
    seed: int = 0

    def __post_init__(self):
        check_finite_numbers(self)
        if isinstance(self.model, dict):
            object.__setattr__(self, "model", ViTConfig(**self.model))
        if self.epochs < 1 or self.batch_size < 1 or self.shift < 0:
            raise ValueError("epochs and batch_size must be positive and shift >= 0.")
        if not self.learning_rate > 0 or not 0 <= self.label_smoothing < 1:
            raise ValueError("need learning_rate > 0 and 0 <= label_smoothing < 1.")

    def fingerprint(self) -> str:
        """A short hash of every setting: the cache folder's name."""
        return fingerprint(self)

    def optimizer(self, steps_per_epoch: int) -> OptimizerConfig:
        """AdamW over ``epochs · steps_per_epoch`` steps: linear warm-up, cosine decay to 0, no gradient clip."""
        return OptimizerConfig(self.learning_rate, self.epochs * steps_per_epoch, self.warmup_steps,
                               self.weight_decay)


@dataclasses.dataclass(frozen=True, eq=False)
class TrainedViT:
    """A trained ViT: its training config, parameters, accuracy on the held-out test digits, loss curve."""

    config: ViTTrainConfig
    params: dict
    test_accuracy: float
    history: list[dict]

    @property
    def module(self) -> ViT:
        return ViT(self.config.model)

    def run(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, Trace]:
        """`pdeflow.models.vit.run_vit` with this ViT: ``(logits (B, classes), Trace)`` of ``images (B, S, S)``."""
        return run_vit(self.config.model, self.params, images, batch_size)

    def logits(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """``(B, S, S) -> (B, classes)`` (numpy)."""
        return self.run(images, batch_size)[0]

    def trace(self, images: np.ndarray, batch_size: int = 256) -> Trace:
        """The `Trace` of ``images`` (see `run`)."""
        return self.run(images, batch_size)[1]


@jax.jit
def _accuracy_from_logits(logits, labels):
    return jnp.mean(jnp.argmax(logits, -1) == labels)


@functools.partial(jax.jit, static_argnums=2)
def _translate(key, images, shift: int):
    """Each image moved by a random integer offset in ``[−shift, shift]²`` (zero fill)."""
    size = images.shape[-1]
    padded = jnp.pad(images, ((0, 0), (shift, shift), (shift, shift)))
    offsets = jax.random.randint(key, (images.shape[0], 2), 0, 2 * shift + 1)
    return jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1]), (size, size)))(padded, offsets)


def train_vit(config: ViTTrainConfig = ViTTrainConfig(), progress: bool = False,
              on_epoch: Callable[[int, dict], None] | None = None) -> TrainedViT:
    """Train the ViT on the digits' training split; report accuracy on the held-out test split.

    ``on_epoch(epoch, params)``, if given, is called before the first epoch (epoch 0, the initialisation) and
    after every epoch with the parameters on the host (e.g. to keep snapshots for the information plane)."""
    splits = digit_splits(config.test_fraction, config.split_seed)
    model = ViT(config.model)
    steps_per_epoch = max(len(splits.train_images) // config.batch_size, 1)
    optimizer = config.optimizer(steps_per_epoch).make()
    key = jax.random.PRNGKey(config.seed)
    key, init_key = jax.random.split(key)
    params = model.init(init_key, jnp.asarray(splits.train_images[:1]))
    opt_state = optimizer.init(params)
    classes = config.model.num_classes

    def loss_fn(params, images, labels, key):
        if config.shift:
            images = _translate(key, images, config.shift)
        logits, _ = model.apply(params, images)
        targets = optax.smooth_labels(jax.nn.one_hot(labels, classes), config.label_smoothing)
        return optax.softmax_cross_entropy(logits, targets).mean()

    step = make_train_step(loss_fn, optimizer)
    rng = np.random.default_rng(config.seed)
    history, losses, order = [], [], None
    started = time.perf_counter()

    def train_step(i: int) -> None:  # i counts steps over all epochs from 1; each epoch draws its own order
        nonlocal params, opt_state, key, order
        position = (i - 1) % steps_per_epoch
        if position == 0:
            order = rng.permutation(len(splits.train_images))
        index = order[position * config.batch_size:(position + 1) * config.batch_size]
        key, step_key = jax.random.split(key)
        params, opt_state, info = step(params, opt_state, splits.train_images[index], splits.train_labels[index],
                                       step_key)
        losses.append(info["loss"])

    def end_epoch(i: int, info) -> None:
        epoch = i // steps_per_epoch
        history.append({"epoch": epoch, "train_loss": float(np.mean(jax.device_get(losses))),
                        "seconds": time.perf_counter() - started})
        losses.clear()
        if not np.isfinite(history[-1]["train_loss"]):
            raise FloatingPointError(f"ViT training diverged at epoch {epoch} (loss is NaN/Inf); lower "
                                     "learning_rate.")
        if on_epoch is not None:
            on_epoch(epoch, jax.device_get(params))

    if on_epoch is not None:
        on_epoch(0, jax.device_get(params))
    train_loop(train_step, config.epochs * steps_per_epoch, eval_every=steps_per_epoch, evaluate=end_epoch,
               progress=progress, name="train vit-digits")
    trained = TrainedViT(config, jax.device_get(params), 0.0, history)
    accuracy = float(_accuracy_from_logits(trained.logits(splits.test_images), splits.test_labels))
    return dataclasses.replace(trained, test_accuracy=accuracy)


def save_vit(model: TrainedViT, folder: str | Path, overwrite: bool = False) -> Path:
    """Write ``params.safetensors`` and ``config.json`` into ``folder`` atomically."""
    return save_params_folder(folder, model.params, {
        "kind": "vit-digits", "train": dataclasses.asdict(model.config), "test_accuracy": model.test_accuracy,
        "history": model.history}, overwrite)


def load_vit(folder: str | Path) -> TrainedViT:
    """Read a ViT written by `save_vit`; raises ``FileNotFoundError`` / ``ValueError`` naming what is wrong."""
    folder = Path(folder)
    meta, params = read_params_folder(folder, f"pdeflow train vit-digits --out {folder}")
    try:
        config = ViTTrainConfig(**meta["train"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{folder / 'config.json'} is not a pdeflow ViT config ({error}); retrain the "
                         "model.") from error
    expected = jax.eval_shape(lambda: ViT(config.model).init(jax.random.PRNGKey(0), jnp.zeros(
        (1, config.model.image_size, config.model.image_size))))
    check_params_match(expected, params, str(folder / "params.safetensors"))
    return TrainedViT(config, params, float(meta["test_accuracy"]), meta.get("history", []))


def default_vit_folder(config: ViTTrainConfig = ViTTrainConfig()) -> Path:
    """Where `load_or_train_vit` keeps the model trained with ``config``."""
    return cache_root() / f"vit-digits-{config.fingerprint()}"


def load_or_train_vit(config: ViTTrainConfig = ViTTrainConfig(), folder: str | Path | None = None,
                      progress: bool = False) -> TrainedViT:
    """Load the ViT trained with ``config`` from ``folder`` (default: the cache), training and saving it first
    if it is not there. A folder holding a ViT trained with other settings is refused."""
    folder = default_vit_folder(config) if folder is None else Path(folder)
    return load_or_train(folder, config, load_vit, lambda: train_vit(config, progress), save_vit, "a ViT")
