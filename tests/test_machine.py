"""The machine label a fit's report records beside its wall time (`pdeflow.machine`)."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from pdeflow import machine


def test_the_label_names_the_cpu_its_cores_and_the_jax_device():
    label = machine.label()
    assert label.startswith(machine.cpu_model())
    assert f", {os.cpu_count()} cores; jax {jax.__version__} on {jax.devices()[0].platform}" in label


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="no /proc/cpuinfo on this system")
def test_the_cpu_model_carries_family_model_and_vector_units():
    model = machine.cpu_model()
    assert "(family " in model and " model " in model
    assert model.endswith(")") and any(unit in model for unit in ("avx2", "no AVX2"))


def test_bfloat16_is_fast_only_where_the_cpu_has_bfloat16_products(monkeypatch):
    """On a CPU the flags decide: AVX-512 BF16 or AMX makes bfloat16 products fast, AVX2 alone does not (XLA widens
    each operand and multiplies slower than in float32)."""
    assert jax.devices()[0].platform == "cpu"
    for flags, fast in (({"avx2"}, False), ({"avx2", "avx512f"}, False), ({"avx2", "avx512f", "avx512_bf16"}, True),
                        ({"avx2", "amx_tile", "amx_bf16"}, True), (set(), False)):
        monkeypatch.setattr(machine, "cpu_flags", lambda flags=flags: flags)
        assert machine.fast_bfloat16() is fast, flags


def test_bfloat16_speed_is_read_without_starting_jax():
    """A preset reads it before `--host-devices` and `jax.distributed` act, so it must not start JAX's backends; an
    accelerator named in JAX_PLATFORMS counts as fast."""
    code = ("from jax._src import xla_bridge; from pdeflow import machine; fast = machine.fast_bfloat16(); "
            "assert not xla_bridge.backends_are_initialized() and not machine.jax_started(); print(fast); "
            "import jax.numpy as jnp; jnp.zeros(1); assert machine.jax_started()")
    root = Path(__file__).resolve().parents[1]
    for platforms, expected in (("cpu", str(any(f in machine.cpu_flags() for f in machine.BFLOAT16_CPU_FLAGS))),
                                ("cuda,cpu", "True")):
        env = {**os.environ, "PYTHONPATH": str(root), "JAX_PLATFORMS": platforms}
        run = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip() == expected, (platforms, run.stdout)
