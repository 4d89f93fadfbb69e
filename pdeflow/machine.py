"""The machine a run took its time on, in words: wall times mean little without it (two hosts that both call
themselves "AMD EPYC" can differ twofold in matmul peak, and an Intel Xeon with AMX runs bfloat16 products several
times faster than one without)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import jax


def cpu_model() -> str:
    """The CPU's model name with its family/model numbers and its widest vector and matrix units, e.g. ``"AMD EPYC
    (family 26 model 2; avx2 avx512f avx512_bf16)"``; ``platform.processor()`` where ``/proc/cpuinfo`` is absent."""
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


def label() -> str:
    """One line naming the CPU, its cores and the device JAX computes on, e.g. ``"AMD EPYC (family 26 model 2;
    avx2 avx512f avx512_bf16), 2 cores; jax 0.10.2 on cpu"``."""
    device = jax.devices()[0]
    kind = device.platform if device.platform == "cpu" else f"{device.platform} ({device.device_kind})"
    return f"{cpu_model()}, {os.cpu_count()} cores; jax {jax.__version__} on {kind}"
