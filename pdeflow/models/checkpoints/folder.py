"""Reading a Hugging Face-format checkpoint folder: ``config.json``, the safetensors weights (one file or shards
listed in ``model.safetensors.index.json``), ``tokenizer.json`` and ``preprocessor_config.json``, each with an
error that names the file and says what to do. pdeflow never downloads: the folder must be on disk.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

SUPPORTED_MODEL_TYPES = ("bert", "roberta", "distilbert", "vit", "gpt2")
MAX_WEIGHT_BYTES = 8 * 2**30  # float32 weights beyond this are refused before anything is loaded
CONVERT_HINT = ("convert it with transformers: `AutoModel.from_pretrained(DIR).save_pretrained(DIR, "
                "safe_serialization=True)`")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def checkpoint_folder(folder: str | Path) -> Path:
    """``folder`` as a `Path` if it is an existing folder; otherwise a ``FileNotFoundError`` saying why (a hub
    name is recognised and answered: pdeflow never downloads)."""
    if isinstance(folder, bytes) or not isinstance(folder, (str, Path)):
        raise TypeError(f"pass the checkpoint folder as a path (str or pathlib.Path), not {type(folder).__name__}.")
    path = Path(folder).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"{path} is a file; pass the folder that holds config.json and model.safetensors.")
    text = str(folder)
    if _HUB_ID.match(text):
        raise FileNotFoundError(
            f"{text!r} is not a folder on this machine ({path.absolute()} does not exist). It looks like a Hugging "
            f"Face Hub name, and pdeflow never downloads: download the checkpoint with your own tools, e.g. "
            f"`huggingface-cli download {text} --local-dir DIR`, and pass the folder DIR.")
    raise FileNotFoundError(f"the checkpoint folder {path} does not exist; pass a folder holding config.json, "
                            "model.safetensors and (text models) tokenizer.json or (ViT) preprocessor_config.json.")


def read_json(path: Path, what: str) -> dict:
    """The JSON object in ``path``; ``FileNotFoundError`` / ``ValueError`` naming the file and ``what`` it is for."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the checkpoint folder needs its {what}; save it next to the "
                                "weights (transformers' save_pretrained writes it).")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); restore the file from the checkpoint.") from error
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object; got {type(value).__name__}.")
    return value


def read_config(folder: Path) -> tuple[dict, str]:
    """``(config.json as a dict, its model_type)``; errors for a missing or unsupported model_type."""
    path = folder / "config.json"
    config = read_json(path, "config.json (the model's shape)")
    model_type = config.get("model_type")
    if model_type is None:
        raise ValueError(f"{path} has no \"model_type\"; add the model's type, one of {SUPPORTED_MODEL_TYPES}.")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"{path}: model_type {model_type!r} is not supported; pdeflow loads "
                         f"{', '.join(SUPPORTED_MODEL_TYPES)}.")
    return config, model_type


def config_value(config: dict, key: str, folder: Path, default=None, kind=int):
    """``config[key]`` checked to be of ``kind`` (``default`` when absent and a default is given)."""
    if key not in config or config[key] is None:
        if default is None:
            raise ValueError(f"{folder / 'config.json'} lacks {key!r}; add it (the model's {key}).")
        return default
    value = config[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) if kind is float else \
        isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok or (kind is int and value < 1):
        raise ValueError(f"{folder / 'config.json'}: {key} must be a positive {kind.__name__}; got {value!r}.")
    return value


def refuse(config: dict, folder: Path, key: str, allowed: tuple, default, meaning: str) -> None:
    """Raise ``ValueError`` if ``config[key]`` (``default`` when absent) is not one of ``allowed``: pdeflow refuses
    options it does not compute rather than silently computing another model."""
    value = config.get(key, default)
    if value is None:
        value = default
    if value not in allowed:
        raise ValueError(f"{folder / 'config.json'}: {key}={value!r} is not supported (pdeflow implements "
                         f"{', '.join(repr(a) for a in allowed)}: {meaning}); it would compute a different model.")


def check_heads(width: int, heads: int, folder: Path, width_key: str, heads_key: str) -> None:
    if width % heads:
        raise ValueError(f"{folder / 'config.json'}: {heads_key}={heads} must divide {width_key}={width}.")


def check_memory(num_floats: int, folder: Path) -> None:
    """Refuse, before loading, a model whose float32 weights (counted from the config) exceed 8 GiB."""
    if num_floats * 4 > MAX_WEIGHT_BYTES:
        raise ValueError(f"{folder / 'config.json'} describes about {num_floats / 1e9:.1f} billion weights, "
                         f"{num_floats * 4 / 2**30:.1f} GiB in float32, beyond pdeflow's {MAX_WEIGHT_BYTES // 2**30} "
                         "GiB limit for tracing on this machine; use a smaller checkpoint.")


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files holding the weights: ``model.safetensors``, or the shards that
    ``model.safetensors.index.json`` lists."""
    single, index = folder / "model.safetensors", folder / "model.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        weight_map = read_json(index, "shard index").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{index} has no \"weight_map\" of weight names to shard files; restore the file.")
        shards = [folder / name for name in dict.fromkeys(weight_map.values())]
        missing = [s.name for s in shards if not s.is_file()]
        if missing:
            raise FileNotFoundError(f"{index} lists shards missing from {folder}: {', '.join(missing)}; download "
                                    "every shard of the checkpoint.")
        return shards
    others = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".h5", ".msgpack", ".pt", ".pth", ".ckpt"))
    found = f" (found {', '.join(others)}, which pdeflow does not read: pickled PyTorch / TF / Flax weights)" \
        if others else ""
    raise FileNotFoundError(f"{single} is missing{found}. pdeflow reads weights only from safetensors; "
                            f"{CONVERT_HINT}, or download the checkpoint's model.safetensors.")


def read_weights(folder: Path) -> dict[str, np.ndarray]:
    """Every weight of the checkpoint (numpy, as stored)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    weights = {}
    for path in weight_files(folder):
        try:
            try:
                weights.update(load_file(path))
            except TypeError:  # a dtype numpy lacks: bfloat16 (the usual one), read through ml_dtypes
                weights.update(load_bfloat16_file(path))
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"{path} could not be read ({error}); the file is damaged or incomplete, "
                             "download it again.") from error
    return weights


def load_bfloat16_file(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file with bfloat16 tensors (which ``safetensors.numpy`` cannot hold), every tensor as float32
    (bfloat16 widens exactly); the format is an 8-byte little-endian header length, a JSON header of each tensor's
    dtype, shape and byte offsets, then the data."""
    import ml_dtypes

    dtypes = {"BF16": ml_dtypes.bfloat16, "F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64,
              "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in dtypes:
            raise ValueError(f"tensor {name!r} has dtype {entry['dtype']}, which pdeflow cannot read; save the model "
                             f"in float32 ({CONVERT_HINT})")
        start, end = entry["data_offsets"]
        raw = np.frombuffer(data, dtypes[entry["dtype"]], offset=8 + length + start,
                            count=(end - start) // np.dtype(dtypes[entry["dtype"]]).itemsize)
        out[name] = raw.reshape(entry["shape"]).astype(np.float32 if entry["dtype"] == "BF16" else raw.dtype)
    return out


def _modern_name(name: str) -> str:
    """``….LayerNorm.gamma`` / ``.beta`` -> ``.weight`` / ``.bias``, as Hugging Face renames them on loading."""
    for old, new in ((".gamma", ".weight"), (".beta", ".bias")):
        if name.endswith(old):
            return name[: -len(old)] + new
    return name


class WeightReader:
    """Looks up a checkpoint's weights by their name inside the model (the head-model prefix such as ``bert.``
    found once), checks each against the shape the config implies, and returns float32 arrays."""

    def __init__(self, weights: dict[str, np.ndarray], folder: Path, prefixes: tuple[str, ...], probe: str):
        # older checkpoints (e.g. bert-base-uncased) name LayerNorm gains and biases gamma and beta
        self.weights, self.folder = {_modern_name(k): v for k, v in weights.items()}, folder
        found = [p for p in (*prefixes, "") if p + probe in weights]
        if not found:
            raise ValueError(f"{folder}: the weights have no {probe!r} (nor with a prefix {', '.join(prefixes)}); "
                             "are they the model that config.json names?")
        self.prefix = found[0]

    def __call__(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        key = self.prefix + name
        if key not in self.weights:
            raise ValueError(f"{self.folder}: weight {key!r} (expected shape {tuple(shape)}) is missing from the "
                             "safetensors file(s); the checkpoint is incomplete or not the model config.json names.")
        value = self.weights[key]
        if tuple(value.shape) != tuple(shape):
            raise ValueError(f"{self.folder}: weight {key!r} has shape {tuple(value.shape)} but config.json implies "
                             f"{tuple(shape)}; the weights and config.json do not belong together.")
        return np.asarray(value, np.float32)

    def unprefixed(self) -> WeightReader:
        """A reader of the same weights by their full names (e.g. a head outside the ``transformer.`` trunk)."""
        reader = WeightReader.__new__(WeightReader)
        reader.weights, reader.folder, reader.prefix = self.weights, self.folder, ""
        return reader


def read_tokenizer(folder: Path):
    """The ``tokenizers.Tokenizer`` in ``tokenizer.json``."""
    from tokenizers import Tokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: a text model needs its fast tokenizer. Save it next to the "
                                "weights (`AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)` writes "
                                "tokenizer.json), or download the checkpoint's tokenizer.json.")
    try:
        return Tokenizer.from_file(str(path))
    except Exception as error:  # tokenizers raises a bare Exception for malformed files
        raise ValueError(f"{path} could not be read ({error}); restore the file from the checkpoint.") from error
