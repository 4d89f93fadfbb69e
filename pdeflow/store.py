"""Files on disk: output folders written atomically, parameter pytrees as safetensors, JSON-ready values.

Everything is written into a temporary folder beside the destination and moved into place at the end, so
an interrupted or failed run never leaves a half-written folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def check_output_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Fail early, before any long work, if ``out`` cannot be written (creates nothing: missing parent folders
    are checked at the nearest one that exists, and made by `make_parents` when the writing starts)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another --out.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already holds results; pass --overwrite to replace them or choose another --out.")
    parent = out.resolve().parent
    existing = next(folder for folder in (parent, *parent.parents) if folder.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "not a folder")
        probe = tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=existing)
        Path(probe).rmdir()
    except OSError as error:
        raise PermissionError(f"cannot write into {existing} ({error.strerror}); choose a writable --out.") from error
    return out


def make_parents(path: str | Path) -> list[Path]:
    """Create ``path``'s missing parent folders; returns those it created, outermost first (for
    `remove_empty_folders` when the work fails)."""
    parent = Path(path).expanduser().resolve().parent
    missing = [folder for folder in (parent, *parent.parents) if not folder.exists()][::-1]
    parent.mkdir(parents=True, exist_ok=True)
    return missing


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove each of ``folders`` (innermost first) that is empty; leave the rest."""
    for folder in reversed(folders):
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def atomic_folder(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """``with atomic_folder(out) as staging:`` write files into ``staging``; on success it replaces ``out`` in
    one rename, on any error (or Ctrl-C) it is deleted and ``out`` is left as it was.

    ``out``'s lock (`pdeflow.lock.folder_lock`) is held throughout, so a second writer fails at once instead of
    replacing this one's results. Without ``overwrite`` a folder holding results is never replaced, not even one
    that appeared while ``staging`` was being written: then ``FileExistsError``, and the finished staging folder
    is kept beside it under a name the message gives."""
    from pdeflow.lock import folder_lock

    out = check_output_dir(out, overwrite)
    created = make_parents(out)
    try:
        with folder_lock(out):
            staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.resolve().parent))
            try:
                yield staging
                _move_into_place(staging, out, overwrite)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    except BaseException:
        remove_empty_folders(created)
        raise


def write_text_atomically(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through ``path.partial`` renamed into place: a reader sees the old file or the
    whole new one, never a half-written file (a single file; `atomic_folder` for folders)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(text)
    tmp.rename(path)
    return path


def json_text(value) -> str:
    """``value`` (`json_ready` first) as the JSON text of every result file: indented by one space, keys in
    their order."""
    import json

    return json.dumps(json_ready(value), indent=1)


@dataclasses.dataclass(frozen=True)
class ResultFolder:
    """The staging folder of a result being written (`result_folder`): files go into ``path``."""

    path: Path

    def write_json(self, name: str, value) -> Path:
        """Write ``value`` as ``name`` (`json_text`)."""
        return self.write_text(name, json_text(value))

    def write_text(self, name: str, text: str) -> Path:
        """Write ``text`` (e.g. Markdown) as ``name``."""
        path = self.path / name
        path.write_text(text)
        return path


@contextlib.contextmanager
def result_folder(out: str | Path, overwrite: bool = False) -> Iterator[ResultFolder]:
    """``with result_folder(out) as folder:`` ``folder.write_json("results.json", result)``,
    ``folder.write_text("summary.md", text)``, figures into ``folder.path``: the one way every result folder (fit
    reports, studies, experiments) is written, all or nothing (`atomic_folder`: locked, moved into place in one
    rename, nothing left behind on failure), every JSON file formatted alike (`json_text`)."""
    with atomic_folder(out, overwrite) as staging:
        yield ResultFolder(staging)


def save_figure(fig, folder: Path, name: str, dpi: int = 110, **layout) -> str:
    """Lay ``fig`` out (``layout``: `Figure.tight_layout`'s options), save it as ``folder / name`` and close it;
    returns ``name`` (for the list of files a report wrote)."""
    import matplotlib.pyplot as plt

    fig.tight_layout(**layout)
    fig.savefig(folder / name, dpi=dpi)
    plt.close(fig)
    return name


def _follow_umask(folder: Path) -> None:
    """Give ``folder`` and everything in it the permissions a plain ``mkdir``/``open`` would have (``mkdtemp``
    makes folders 0700 and safetensors files 0600, whatever the umask: a shared results folder would be unreadable
    to colleagues)."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for root, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(root, name), 0o666 & ~mask)


def _move_into_place(staging: Path, out: Path, overwrite: bool) -> None:
    _follow_umask(staging)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        kept = Path(tempfile.mkdtemp(prefix=f"{out.name}.kept-", dir=out.resolve().parent))
        staging.rename(kept / out.name)
        raise FileExistsError(f"{out} was filled by someone else while this run was writing; nothing was replaced, "
                              f"this run's results are in {kept / out.name}.")
    if out.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.resolve().parent))
        out.rename(retired / "old")
        staging.rename(out)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        staging.rename(out)


def json_ready(value):
    """``value`` with numpy numbers and arrays as Python ones, tuples as lists and non-finite floats as None
    (JSON has no inf/nan)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def flatten_params(params: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dict of arrays -> ``{"a/b/c": float32 array}`` (the safetensors layout)."""
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_params(value, name + "/"))
        else:
            flat[name] = np.ascontiguousarray(np.asarray(value, np.float32))
    return flat


def unflatten_params(flat: dict[str, np.ndarray]) -> dict:
    """Inverse of `flatten_params`."""
    params: dict = {}
    for name, value in flat.items():
        node = params
        *parents, leaf = name.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return params


def fingerprint(config) -> str:
    """A short hash of every field of a (nested) config dataclass: names cache folders by their settings."""
    import dataclasses
    import hashlib
    import json

    text = json.dumps(json_ready(dataclasses.asdict(config)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_root() -> Path:
    """Where models trained here are kept: ``$PDEFLOW_CACHE``, else ``~/.cache/pdeflow``."""
    import os

    return Path(os.environ.get("PDEFLOW_CACHE", Path.home() / ".cache" / "pdeflow"))


def save_params_folder(folder: str | Path, params: dict, meta: dict, overwrite: bool = False) -> Path:
    """Write ``params.safetensors`` and ``config.json`` (``meta``) into ``folder`` atomically."""
    import json

    with atomic_folder(folder, overwrite) as staging:
        save_checked_tensors(flatten_params(params), staging / "params.safetensors")
        (staging / "config.json").write_text(json.dumps(json_ready(meta), indent=1))
    return Path(folder)


def read_params_folder(folder: str | Path, retrain: str) -> tuple[dict, dict]:
    """``(meta, params)`` from a folder written by `save_params_folder`; ``FileNotFoundError`` / ``ValueError``
    naming the file and the fix (``retrain``, a command) when something is missing or unreadable."""
    import json

    folder = Path(folder)
    for name in ("config.json", "params.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing; train the model with `{retrain}`.")
    try:
        meta = json.loads((folder / "config.json").read_text())
    except ValueError as error:
        raise ValueError(f"{folder / 'config.json'} is not valid JSON ({error}); retrain with `{retrain}`.") from error
    flat, _ = read_checked_tensors(folder / "params.safetensors", None, f"retrain with `{retrain}`")
    return meta, unflatten_params(flat)


def tensors_checksum(flat: dict[str, np.ndarray]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order (stored in a safetensors file's
    metadata by `save_checked_tensors`, so that read-back notices a flipped bit)."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(flat):
        array = np.ascontiguousarray(flat[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_checked_tensors(flat: dict[str, np.ndarray], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """``save_file`` with the tensors' checksum (`tensors_checksum`) and ``metadata`` in the header."""
    from safetensors.numpy import save_file

    save_file(flat, path, metadata={**(metadata or {}), "tensors_sha256": tensors_checksum(flat)})


def read_checked_tensors(path: str | Path, expected: dict[str, tuple[tuple[int, ...], str]] | None,
                         fix: str, config: str | Path | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(tensors, header metadata)`` of a safetensors file, read only once its header matches ``expected``
    (``{name: (shape, dtype)}``, e.g. ``((6, 12, 64, 16), "float32")``; ``None``: not checked), and checked
    after reading against the checksum written with them (`save_checked_tensors`; files without one are read
    unchecked). Every failure is a ``ValueError`` (``FileNotFoundError`` for a missing file) naming the file,
    what is wrong and ``fix``; a header that does not match also names ``config``, the file ``expected`` was read
    from, since either file may be the one that changed. Nothing is allocated for a file whose header does not
    match, so a config edited to an absurd size is refused before any memory is taken."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {fix}.")
    try:
        with safe_open(path, framework="numpy") as reader:
            header = {name: (tuple(reader.get_slice(name).get_shape()), reader.get_slice(name).get_dtype())
                      for name in reader.keys()}
            stored = reader.metadata() or {}
            if expected is not None:
                _check_header(path, header, expected, fix, config)
            flat = {name: reader.get_tensor(name) for name in header}
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error}); {fix}.") from error
    checksum = stored.get("tensors_sha256")
    if checksum is not None and checksum != tensors_checksum(flat):
        raise ValueError(f"{path} is corrupt (its tensors do not match the checksum written with them); {fix}.")
    return flat, stored


def _check_header(path: Path, header: dict, expected: dict, fix: str, config: str | Path | None = None) -> None:
    """``ValueError`` unless a safetensors header (``{name: (shape, "F32")}``) holds exactly ``expected``'s tensors
    (``{name: (shape, "float32")}``) with their shapes and dtypes; the message names ``config`` where given."""
    its = f"its config ({config})" if config is not None else "its config"
    want = {name: (tuple(shape), _SAFETENSORS_DTYPES.get(dtype, dtype)) for name, (shape, dtype) in expected.items()}
    if set(header) != set(want):
        missing, extra = sorted(set(want) - set(header)), sorted(set(header) - set(want))
        raise ValueError(f"{path} does not hold the tensors {its} describes (missing: "
                         f"{', '.join(missing[:3]) or 'none'}; unexpected: {', '.join(extra[:3]) or 'none'}); {fix}.")
    wrong = [f"{name} is {header[name]}, expected {want[name]}" for name in sorted(want) if header[name] != want[name]]
    if wrong:
        raise ValueError(f"{path} does not match {its}: {'; '.join(wrong[:3])}; {fix}.")


_SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int32": "I32",
                       "int64": "I64", "uint32": "U32"}


def check_params_match(expected, params, where: str) -> None:
    """Raise ``ValueError`` unless ``params`` has the tree structure and leaf shapes of ``expected`` (e.g. from
    ``jax.eval_shape`` of the model's init)."""
    import jax

    if jax.tree_util.tree_structure(expected) != jax.tree_util.tree_structure(params) or any(
            a.shape != b.shape for a, b in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(params))):
        raise ValueError(f"{where} does not match the model config in config.json; retrain the model.")


def load_or_train(folder: str | Path, config, load, train, save, what: str):
    """The model trained with ``config``: ``load(folder)`` if ``folder`` holds one (refused, naming the fix, if
    it was trained with other settings), else ``train()`` and ``save(model, folder, overwrite=True)``. A damaged
    entry of the cache (`cache_root`: unreadable, truncated, failing its checksum) is trained again, never used;
    a damaged folder elsewhere is refused with the loader's error.
    ``what`` names the model in the message, e.g. "a ViT"."""
    folder = Path(folder)
    if (folder / "config.json").is_file():
        try:
            model = load(folder)
        except (ValueError, FileNotFoundError) as error:
            if not Path(folder).resolve().is_relative_to(cache_root().resolve()):
                raise
            import warnings

            warnings.warn(f"the cache entry {folder} is damaged ({error}); training it again.", stacklevel=2)
            model = train()
            save(model, folder, overwrite=True)
            return model
        if model.config != config:
            raise ValueError(f"{folder} holds {what} trained with other settings; choose another folder or retrain "
                             "it with --overwrite.")
        return model
    model = train()
    save(model, folder, overwrite=True)
    return model
