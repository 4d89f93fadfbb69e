"""What every benchmark shares: the machine's label, its matmul peak measured in the same run, peak memory,
an atomic JSON writer for ``benchmarks/results/`` and the history file every run appends its headline to
(``history.jsonl`` beside the results; `benchmarks.history` draws it)."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import resource
import subprocess
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from pdeflow import host_memory
from pdeflow.machine import cpu_model
from pdeflow.store import write_text_atomically

RESULTS = Path(__file__).parent / "results"


def matmul_precision() -> str:
    """JAX's default float32 matmul precision (``highest``: full float32; on a GPU the default may use TF32)."""
    try:
        return str(jax.config.jax_default_matmul_precision)
    except AttributeError:  # another JAX's config
        return os.environ.get("JAX_DEFAULT_MATMUL_PRECISION", "unknown")


def machine_label() -> dict:
    """Device, versions and date of this run."""
    import diffrax
    import equinox
    import optax

    device = jax.devices()[0]
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
            "device": f"{device.platform}:{device.device_kind}", "devices": jax.device_count(),
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "jax": jax.__version__, "diffrax": diffrax.__version__,
            "equinox": equinox.__version__, "optax": optax.__version__,
            "xla_flags": os.environ.get("XLA_FLAGS", ""), "malloc": host_memory.setting(),
            "cpu_async_dispatch": bool(jax.config.values.get("jax_cpu_enable_async_dispatch", True)),
            "jax_default_matmul_precision": matmul_precision()}


def matmul_peak(size: int = 2048, repeats: int = 10, dtype=jnp.float32) -> float:
    """GFLOP/s of a ``size x size`` matmul on the default device (best of ``repeats``), its operands in ``dtype``
    and its result accumulated in float32 (as the field's products are)."""
    # random operands: a GPU multiplies constant ones or zeros measurably faster (less switching power)
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32).astype(dtype)
    f = jax.jit(lambda x: jnp.matmul(x, x, preferred_element_type=jnp.float32))
    return 2 * size**3 / best_seconds(f, a, repeats) / 1e9


def best_seconds(f, x, repeats: int) -> float:
    """The shortest of ``repeats`` timed calls ``f(x)`` after one that compiles it."""
    f(x).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        f(x).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return best


def memory_bandwidth(megabytes: float = 256, repeats: int = 10) -> float:
    """GB/s of an element-wise pass over a ``megabytes`` float32 array on the default device (read once, written
    once, 16 passes in one compiled loop; best of ``repeats``): the rate an operation that moves as many bytes and
    does no arithmetic reaches — from the caches for small arrays, from memory for arrays far larger."""
    x = jnp.arange(int(megabytes * 2**20) // 4, dtype=jnp.float32)
    passes = 16  # in one compiled loop, as a solve's operations run: the call's overhead spread over them
    f = jax.jit(lambda x: jax.lax.fori_loop(0, passes, lambda _, y: y * 0.5 + 1.0, x))
    return 2 * passes * x.nbytes / best_seconds(f, x, repeats) / 1e9


def bandwidth_curve(megabytes=(0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256), repeats: int = 5) -> dict[int, float]:
    """``{bytes one pass moves: GB/s}`` of `memory_bandwidth` at each array size (a pass over an array of ``m`` MB
    moves ``2m`` MB)."""
    return {int(2 * m * 2**20): memory_bandwidth(m, repeats) for m in megabytes}


def bandwidth_at(curve: dict[int, float], moved: float) -> float:
    """The rate of ``curve`` (`bandwidth_curve`) for an operation that moves ``moved`` bytes: that of the
    measured pass whose bytes are nearest on a log scale."""
    nearest = min(curve, key=lambda size: abs(math.log(size) - math.log(max(moved, 1.0))))
    return curve[nearest]


def peak_memory_bytes() -> int:
    """Peak bytes in use on the accelerator, or the process's peak resident set on the CPU."""
    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def compiled_memory_bytes(jitted, *args) -> dict | None:
    """XLA's memory analysis of ``jitted`` compiled for ``args``: bytes of arguments, outputs and temporaries
    (their sum is the program's peak, as XLA plans it), or None where the backend does not report one."""
    try:
        analysis = jitted.lower(*args).compile().memory_analysis()
    except Exception:  # noqa: BLE001 (a backend without the analysis: the benchmark goes on without it)
        return None
    if analysis is None:
        return None
    sizes = {key: int(getattr(analysis, f"{key}_size_in_bytes", 0)) for key in ("argument", "output", "temp")}
    return {**sizes, "total": sum(sizes.values())}


def write_result(name: str, label: dict, rows: list, out: str | os.PathLike | None = None, **extra) -> Path:
    """Write ``{label, rows, **extra}`` to ``<out>/<name>_<platform>_<date>.json`` atomically, and put the run's
    headline numbers into ``<out>/history.jsonl`` (`append_history`)."""
    folder = Path(out) if out is not None else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    platform_name = label["device"].split(":")[0]
    path = write_text_atomically(folder / f"{name}_{platform_name}_{label['date']}.json",
                                 json.dumps({"label": label, "rows": rows, **extra}, indent=1))
    append_history(folder, name, label, headline(rows, extra), path.name)
    return path


# the numbers a run is tracked by: ratios measured within the run (comparable across hosts and commits)
HEADLINE_KEYS = ("speedup", "overhead", "fraction_of_matmul_peak", "steps_per_s", "xla_over_torch", "slope")
CASE_KEYS = ("B", "N", "r", "H", "L", "solver", "dt0", "mode", "adjoint", "pdeflow_adjoint", "compute_dtype",
             "field_backward", "product")
# a case key at this value is left out of the case's name: the runs made before the key was recorded (all at that
# value) and those made after stay one line in the history
CASE_DEFAULTS = {"field_backward": "autodiff"}


def headline(rows: list, extra: dict | None = None) -> dict:
    """``{case: {metric: value}}``: every number whose name holds one of ``HEADLINE_KEYS``, from each row (the case
    named by its ``CASE_KEYS``, e.g. ``"B=32 N=48 r=64 solver=rk4 mode=forward+backward adjoint=discrete"``, less
    those at their ``CASE_DEFAULTS`` value) and
    from the run's extra fields (one level of nesting: case ``"run"``)."""
    def metrics(record: dict) -> dict:
        return {key: float(value) for key, value in record.items()
                if any(k in key for k in HEADLINE_KEYS) and isinstance(value, (int, float))
                and not isinstance(value, bool) and value == value}

    out = {}
    for row in rows:
        case = " ".join(f"{key}={row[key]}" for key in CASE_KEYS
                        if row.get(key) is not None and row[key] != CASE_DEFAULTS.get(key))
        found = metrics(row)
        if found:
            out.setdefault(case or "run", {}).update(found)
    flat = {}
    for key, value in (extra or {}).items():
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    if metrics(flat):
        out.setdefault("run", {}).update(metrics(flat))
    return out


def git_commit(folder: str | os.PathLike = Path(__file__).parent) -> str:
    """The checkout's commit (short), with ``+dirty`` when tracked files differ from it; ``"unknown"`` outside git.
    ``BENCHMARK_COMMIT`` in the environment overrides it (a copy of the tree without ``.git``, e.g. on a GPU machine
    lent through the ``device`` tool: `benchmarks.gpu_suite` sets it from the packed manifest)."""
    if os.environ.get("BENCHMARK_COMMIT"):
        return os.environ["BENCHMARK_COMMIT"]
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=folder, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def append_history(folder: str | os.PathLike, name: str, label: dict, numbers: dict, result_file: str = "") -> Path:
    """Append one row ``{benchmark, commit, date, machine, versions, headline, file}`` to
    ``<folder>/history.jsonl``. A run that saves several times (after each measurement) keeps one row: a row of
    the same benchmark and date is replaced."""
    path = Path(folder) / "history.jsonl"
    versions = {key: label[key] for key in ("python", "jax", "diffrax", "equinox", "optax", "torch", "torchdiffeq")
                if key in label}
    machine = {key: label[key] for key in ("device", "devices", "cpu", "cpu_count", "machine", "xla_flags",
                                           "malloc", "cpu_async_dispatch") if key in label}
    row = {"benchmark": name, "commit": git_commit(), "date": label["date"], "machine": machine,
           "versions": versions, "headline": numbers, "file": result_file}
    return merge_history(path, [row])


def merge_history(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Add ``rows`` to the history file ``path`` (one JSON object a line, keys sorted), each replacing a row of
    the same benchmark and date already there (a run that saves several times, or a run merged twice)."""
    path = Path(path)
    new = {(row.get("benchmark"), row.get("date")) for row in rows}
    kept = [line for line in (path.read_text().splitlines() if path.exists() else []) if line.strip()]
    kept = [line for line in kept if (json.loads(line).get("benchmark"), json.loads(line).get("date")) not in new]
    lines = kept + [json.dumps(row, sort_keys=True) for row in rows]
    return write_text_atomically(path, "".join(line + "\n" for line in lines))
