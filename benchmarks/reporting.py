"""What every benchmark shares: the machine's label, its matmul peak measured in the same run, peak memory,
and an atomic JSON writer for ``benchmarks/results/``."""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import time
from pathlib import Path

import jax
import jax.numpy as jnp

RESULTS = Path(__file__).parent / "results"


def _cpu_model() -> str:
    """The CPU's model name with its family/model numbers and its widest vector units: two hosts that both call
    themselves "AMD EPYC" can differ twofold in matmul peak (e.g. full-width AVX-512 or not)."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    if "model name" not in fields:
        return platform.processor() or "unknown"
    flags = set(fields.get("flags", "").split())
    units = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return (f"{fields['model name']} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}; "
            f"{' '.join(units) or 'no AVX2'})")


def machine_label() -> dict:
    """Device, versions and date of this run."""
    import diffrax
    import equinox
    import optax

    device = jax.devices()[0]
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"),
            "device": f"{device.platform}:{device.device_kind}", "devices": jax.device_count(),
            "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "jax": jax.__version__, "diffrax": diffrax.__version__,
            "equinox": equinox.__version__, "optax": optax.__version__,
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def matmul_peak(size: int = 2048, repeats: int = 10, dtype=jnp.float32) -> float:
    """GFLOP/s of a ``size x size`` matmul on the default device (best of ``repeats``), its operands in ``dtype``
    and its result accumulated in float32 (as the field's products are)."""
    a = jnp.ones((size, size), dtype)
    f = jax.jit(lambda x: jnp.matmul(x, x, preferred_element_type=jnp.float32))
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def peak_memory_bytes() -> int:
    """Peak bytes in use on the accelerator, or the process's peak resident set on the CPU."""
    device = jax.devices()[0]
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def write_result(name: str, label: dict, rows: list, out: str | os.PathLike | None = None, **extra) -> Path:
    """Write ``{label, rows, **extra}`` to ``<out>/<name>_<platform>_<date>.json`` atomically."""
    folder = Path(out) if out is not None else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    platform_name = label["device"].split(":")[0]
    path = folder / f"{name}_{platform_name}_{label['date']}.json"
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps({"label": label, "rows": rows, **extra}, indent=1))
    tmp.rename(path)
    return path
