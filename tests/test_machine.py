"""The machine label a fit's report records beside its wall time (`pdeflow.machine`)."""

import os
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
