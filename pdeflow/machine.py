"""The machine a run took its time on, in words: wall times mean little without it (two hosts that both call
themselves "AMD EPYC" can differ twofold in matmul peak, and an Intel Xeon with AMX runs bfloat16 products several
times faster than one without); and whether it multiplies bfloat16 faster than float32 (`fast_bfloat16`), which a
preset reads to pick its products' dtype."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import jax


def _cpu_info() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (``{}`` where it is absent)."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_flags() -> set[str]:
    """The CPU's feature flags as ``/proc/cpuinfo`` lists them (``avx2``, ``avx512_bf16``, ``amx_bf16``, …; empty
    where it is absent)."""
    return set(_cpu_info().get("flags", "").split())


def cpu_model() -> str:
    """The CPU's model name with its family/model numbers and its widest vector and matrix units, e.g. ``"AMD EPYC
    (family 26 model 2; avx2 avx512f avx512_bf16)"``; ``platform.processor()`` where ``/proc/cpuinfo`` is absent."""
    fields = _cpu_info()
    if "model name" not in fields:
        return platform.processor() or "unknown"
    flags = set(fields.get("flags", "").split())  # read once with the model's name, not again by `cpu_flags`
    units = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    return (f"{fields['model name']} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}; "
            f"{' '.join(units) or 'no AVX2'})")


BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def jax_started() -> bool:
    """Whether JAX has started its backends (made its devices) in this process; asking does not start them.
    Settings read when they start (``XLA_FLAGS``' host device count, ``JAX_PLATFORMS``) no longer change anything
    once this is true."""
    from jax._src import xla_bridge  # JAX has no public way to ask this without starting its backends

    return xla_bridge.backends_are_initialized()


def fast_bfloat16() -> bool:
    """Whether bfloat16 matrix products run faster than float32 ones where this process computes: on a GPU or TPU,
    and on a CPU with bfloat16 dot-product instructions (``BFLOAT16_CPU_FLAGS``: AVX-512 BF16 or AMX). Without them
    XLA:CPU widens every bfloat16 operand first, and the products run slower than in float32: on an AMD EPYC with
    AVX2 alone a (1536, 384) × (384, 768) product took 15.1 ms in bfloat16 against 7.4 ms in float32, and the
    faithful preset's fit step 3.77 s against 2.43 s.

    Decided without starting JAX's backends (a preset is read before ``--host-devices`` and ``jax.distributed``
    act): from JAX's device once JAX has started, else from ``JAX_PLATFORMS`` where it names an accelerator first,
    else from the CPU's flags."""
    if jax_started():
        platform_name = jax.devices()[0].platform
    else:
        platform_name = (jax.config.jax_platforms or "cpu").split(",")[0]  # JAX_PLATFORMS, as JAX read it
    if platform_name.strip().lower() != "cpu":
        return True
    return any(flag in cpu_flags() for flag in BFLOAT16_CPU_FLAGS)


def label() -> str:
    """One line naming the CPU, its cores and the device JAX computes on, e.g. ``"AMD EPYC (family 26 model 2;
    avx2 avx512f avx512_bf16), 2 cores; jax 0.10.2 on cpu"``."""
    device = jax.devices()[0]
    kind = device.platform if device.platform == "cpu" else f"{device.platform} ({device.device_kind})"
    return f"{cpu_model()}, {os.cpu_count()} cores; jax {jax.__version__} on {kind}"
