"""A user's own transformer: a checkpoint folder (`pdeflow.models.checkpoints`) traced on the user's texts or
images (`pdeflow.data.user_inputs`).

`model_source_for(model, texts=None, images=None)` is what the CLI and the Python API call: a registered name
gives the registered source, anything else is read as a checkpoint folder (``bert``, ``roberta``,
``distilbert``, ``vit``, ``gpt2``). The surrogate's grid follows the model: a token chain for text (causal for
``gpt2``), the patch grid after the class token for ``vit``. Nothing is downloaded: a hub id instead of a folder
is refused with the loader's advice.

The inputs are split into train / validation / held-out by `DataConfig`'s ``split_seed``; which inputs landed
where is recorded in the report (`CheckpointSource.describe`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pdeflow.data.text import split_indices
from pdeflow.data.user_inputs import TEXT_FORMAT, image_files, read_images, read_texts
from pdeflow.models.checkpoints import load_pretrained, read_shape
from pdeflow.models.checkpoints.folder import checkpoint_folder
from pdeflow.sources.base import DataConfig, ModelShape, ModelSource, Splits

SPLIT_FLAGS = "--num-train, --num-validation or --num-test (num_train, num_validation, num_test of DataConfig)"


def default_split_sizes(count: int, train_all: bool = False) -> tuple[int, int, int]:
    """``(train, validation, test)`` for ``count`` inputs: a fifth held out (at most 128), a tenth for validation
    (at most 64), each at least 1, and the rest for training (at most 512 unless ``train_all``)."""
    if count < 3:
        raise ValueError(f"need at least 3 inputs (one each to train, validate and hold out); got {count}.")
    test = min(128, max(1, round(count / 5)))
    validation = min(64, max(1, round(count / 10)))
    train = count - test - validation
    return (train if train_all else min(512, train)), validation, test


class CheckpointSource(ModelSource):
    """A checkpoint folder traced on the user's texts (a text model) or images (``vit``).

    Args:
        folder: the checkpoint folder (``config.json``, weights, tokenizer or preprocessor files).
        texts: a text file (`pdeflow.data.user_inputs.read_texts`: one text per line or JSON lines) or the texts
            themselves; for text models only.
        images: a folder of PNG / JPEG images (`pdeflow.data.user_inputs.read_images`; any sizes, the
            checkpoint's preprocessor resizes them) or ``[(name, PIL.Image)]``; for image models only.
        model: an already loaded `pdeflow.models.checkpoints.PretrainedModel` of ``folder`` (else it is loaded on
            first use; the shape is read from the config alone).

    Constructing reads the checkpoint's config and the list of inputs (texts are read, images only listed), so
    a wrong folder, a missing or empty input and a modality mismatch fail before anything heavy.
    """

    def __init__(self, folder: str | Path, texts: str | Path | Sequence[str] | None = None,
                 images: str | Path | Sequence | None = None, model=None):
        self.folder = Path(folder)
        self.name = str(folder)
        self._model = model
        self.info = model if model is not None else read_shape(self.folder)
        self.model_type, self.modality = self.info.model_type, self.info.modality
        self.block_input_norm = self.info.block_input_norm
        kind = f"{self.folder} is a {self.model_type} {self.modality} model"
        if texts is not None and images is not None:
            raise ValueError(f"{kind}; pass either texts or images, not both.")
        if self.modality == "text":
            if images is not None:
                raise ValueError(f"{kind}: it reads texts, not images; pass --texts FILE (texts= in Python) instead "
                                 "of --images.")
            if texts is None:
                raise ValueError(f"{kind}: pass the texts to trace it on with --texts FILE (texts= in Python), "
                                 f"{TEXT_FORMAT}.")
            self.inputs_path = None if _is_list(texts) else Path(texts)
            self.texts = list(texts) if _is_list(texts) else read_texts(texts)
            self._images, self.input_names = None, None
            if not self.texts or not all(isinstance(t, str) and t.strip() for t in self.texts):
                raise ValueError("texts must be a non-empty list of non-blank strings.")
        else:
            if texts is not None:
                raise ValueError(f"{kind}: it reads images, not texts; pass --images FOLDER (images= in Python) "
                                 "instead of --texts.")
            if images is None:
                raise ValueError(f"{kind}: pass a folder of PNG or JPEG images to trace it on with --images FOLDER "
                                 "(images= in Python).")
            self.texts = None
            if _is_list(images):
                self.inputs_path, self._images = None, [(str(name), image) for name, image in images]
                self.input_names = [name for name, _ in self._images]
            else:
                self.inputs_path, self._images = Path(images), None
                self.input_names = [p.name for p in image_files(images)]
            if not self.input_names:
                raise ValueError("images must be a non-empty list of (name, PIL.Image) pairs.")
        self.count = len(self.texts if self.texts is not None else self.input_names)
        self._split: dict = {}

    def load(self):
        """The loaded checkpoint (`PretrainedModel`), loaded now if it was not."""
        if self._model is None:
            self._model = load_pretrained(self.folder)
        return self._model

    def shape(self) -> ModelShape:
        info = self.info
        return ModelShape(info.num_layers, info.num_heads, info.model_dim, info.head_dim, grid=tuple(info.grid),
                          prefix_tokens=info.prefix_tokens, causal=bool(info.causal))

    def default_data(self) -> DataConfig:
        """Split sizes that fit the inputs (`default_split_sizes`); every text of 2 or more tokens is kept, texts
        are truncated to 48 tokens (or the model's limit)."""
        return self._data(default_split_sizes(self._usable_count()))

    def all_training_data(self) -> DataConfig:
        return self._data(default_split_sizes(self._usable_count(), train_all=True))

    def _usable_count(self) -> int:
        if self.count < 3:
            raise ValueError(f"{self._inputs_text()} holds {self.count} input(s); at least 3 are needed (one each "
                             "to train, validate and hold out).")
        return self.count

    def _data(self, sizes: tuple[int, int, int]) -> DataConfig:
        max_tokens = min(DataConfig.max_tokens, self.info.max_tokens)
        return DataConfig(*sizes, min_tokens=2, max_tokens=max_tokens)

    def check_data(self, data: DataConfig) -> None:
        if data.extra_training_sentences:
            raise ValueError("extra_training_sentences adds pydoc sentences, for MiniLM; a checkpoint is traced on "
                             "your inputs alone: leave it off (--no-extra-training-sentences).")
        if self.modality == "text" and data.max_tokens > self.info.max_tokens:
            raise ValueError(f"max_tokens {data.max_tokens} is more than {self.folder}'s {self.info.max_tokens} "
                             f"positions; lower --max-tokens to at most {self.info.max_tokens}.")
        self._check_count(self.count, data, "")

    def _check_count(self, available: int, data: DataConfig, why: str) -> None:
        sizes = (data.num_train, data.num_validation, data.num_test)
        if sum(sizes) > available:
            raise ValueError(f"{self._inputs_text()} has {available} {why}input(s) but the splits ask for "
                             f"{' + '.join(map(str, sizes))} = {sum(sizes)}; lower {SPLIT_FLAGS} so that they add up "
                             f"to at most {available}, or add inputs.")

    def _inputs_text(self) -> str:
        return str(self.inputs_path) if self.inputs_path is not None else f"the {self.modality} inputs given"

    def split(self, data: DataConfig) -> dict:
        """Which inputs each split takes, seeded by ``data.split_seed`` (what the report records):
        ``{"seed", "train", "validation", "test"}`` as text numbers (0-based, in file order, blank lines not
        counted) or image file names; for texts also ``"kept"`` (texts of at least ``min_tokens`` tokens, the
        others are left out) and ``"truncated"`` (kept texts longer than ``max_tokens``, cut to it)."""
        return self._record(data, *self._split_indices(data))

    def _record(self, data: DataConfig, parts: list[list[int]], counts: dict) -> dict:
        name = (lambda i: int(i)) if self.modality == "text" else (lambda i: self.input_names[i])
        return {"seed": data.split_seed, **counts,
                **{part: [name(i) for i in indices] for part, indices in zip(("train", "validation", "test"), parts)}}

    def _split_indices(self, data: DataConfig) -> tuple[list[list[int]], dict]:
        self.check_data(data)
        usable, counts = list(range(self.count)), {}
        if self.modality == "text":
            lengths = self.load().tokenize(self.texts, self.info.max_tokens).mask.sum(1)  # before truncation
            usable = [i for i, n in enumerate(lengths) if n >= data.min_tokens]
            self._check_count(len(usable), data, f"texts of at least {data.min_tokens} tokens (min_tokens) among its "
                                                 f"{self.count} ")
            counts = {"kept": len(usable), "truncated": int(sum(lengths[i] > data.max_tokens for i in usable))}
        parts = split_indices(len(usable), (data.num_train, data.num_validation, data.num_test), data.split_seed)
        return [[usable[j] for j in part] for part in parts], counts

    def trace_splits(self, data: DataConfig, progress: bool = False) -> Splits:
        model = self.load()
        parts, counts = self._split_indices(data)
        self._split = self._record(data, parts, counts)
        if self.modality == "text":
            def trace(indices):
                tokens = model.tokenize([self.texts[i] for i in indices], data.max_tokens, pad_to=data.max_tokens)
                return model.trace_tokens(tokens), tokens.tokens

            (train, _), (validation, _), (test, test_tokens) = (trace(part) for part in parts)
            return Splits(train, validation, test, tuple(test_tokens), tuple(self.texts[i] for i in parts[2]))
        images = self._images if self._images is not None else read_images(self.inputs_path)
        if [name for name, _ in images] != self.input_names:
            raise ValueError(f"{self.inputs_path} changed while pdeflow was reading it; run again.")
        train, validation, test = (model.trace_pixels(model.preprocess([images[i][1] for i in part]))
                                   for part in parts)
        h, w = self.info.grid
        tokens = ("[CLS]",) * self.info.prefix_tokens + tuple(f"{i},{j}" for i in range(h) for j in range(w))
        return Splits(train, validation, test, (tokens,) * len(parts[2]), tuple(images[i][0] for i in parts[2]))

    def block_weights(self):
        return self.load().block_weights()

    def describe(self) -> dict:
        model = self.load()
        inputs = f"{self.count} {'texts' if self.modality == 'text' else 'images'} " + (
            f"from {self.inputs_path}" if self.inputs_path is not None else "given in Python")
        return {"model": f"{self.model_type} checkpoint {self.folder}", "inputs": inputs,
                "parameters": model.parameters(),
                "checkpoint": {"folder": str(self.folder), "model_type": self.model_type, "modality": self.modality,
                               "causal": bool(self.info.causal),
                               "inputs": None if self.inputs_path is None else str(self.inputs_path),
                               "input_count": self.count, "split": self._split}}


def check_model_name(model: str) -> None:
    """Raise ``ValueError`` unless ``model`` is a registered model's name or an existing folder (a checkpoint,
    checked when it is read); the error says that nothing is downloaded and what to do with a hub id."""
    from pdeflow.sources import source_names

    if model in source_names() or (isinstance(model, (str, Path)) and str(model) and Path(model).is_dir()):
        return
    unknown = f"unknown model {str(model)!r}: not a registered model ({', '.join(source_names())})"
    if isinstance(model, (str, Path)) and str(model):
        try:
            checkpoint_folder(model)  # the loaders' words: a hub id is answered (pdeflow never downloads)
        except OSError as error:
            raise ValueError(f"{unknown}, and {error}") from error
    raise ValueError(f"{unknown} nor a checkpoint folder; pass a registered name or a checkpoint folder.")


def _is_list(inputs) -> bool:
    return isinstance(inputs, (list, tuple))


def model_source_for(model: str | Path | ModelSource, texts=None, images=None) -> ModelSource:
    """The source of ``model``: a `ModelSource` as given, a registered name's source, or else a checkpoint folder
    (`CheckpointSource`) traced on ``texts`` or ``images``. Texts and images are for checkpoint folders only (a
    registered model brings its own inputs)."""
    from pdeflow.sources import SOURCES, model_source

    if isinstance(model, ModelSource):
        source = model
    elif isinstance(model, str) and model in SOURCES:
        source = model_source(model)
    else:
        check_model_name(model)
        return CheckpointSource(model, texts=texts, images=images)
    if texts is not None or images is not None:
        raise ValueError(f"model {source.name!r} brings its own inputs; --texts and --images (texts=, images=) are "
                         "for checkpoint folders.")
    return source
