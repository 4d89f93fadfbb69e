"""Files on disk: output folders written atomically, parameter pytrees as safetensors, JSON-ready values.

Everything is written into a temporary folder beside the destination and moved into place at the end, so
an interrupted or failed run never leaves a half-written folder.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np


def check_output_dir(out: str | Path, overwrite: bool = False) -> Path:
    """Fail early, before any long work, if ``out`` cannot be written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another --out.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already holds results; pass --overwrite to replace them or choose another --out.")
    parent = out.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{out.name}.probe-", dir=parent)
        Path(probe).rmdir()
    except OSError as error:
        raise PermissionError(f"cannot write into {parent} ({error.strerror}); choose a writable --out.") from error
    return out


@contextlib.contextmanager
def atomic_folder(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """``with atomic_folder(out) as staging:`` write files into ``staging``; on success it replaces ``out`` in
    one rename, on any error (or Ctrl-C) it is deleted and ``out`` is left as it was."""
    out = check_output_dir(out, overwrite)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.resolve().parent))
    try:
        yield staging
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.resolve().parent))
            out.rename(retired / "old")
            staging.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


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
