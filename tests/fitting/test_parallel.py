import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from pdeflow.fitting.parallel import batch_sharded, check_divisible, data_mesh, shard_trace
from tests.tiny_teacher import tiny_traces

ROOT = Path(__file__).resolve().parents[2]


def test_one_device_mesh_keeps_shapes_and_values():
    mesh = data_mesh(1)
    train, _, _ = tiny_traces()
    sharded = shard_trace(train.take(np.arange(8)), mesh)
    for a, b in zip(sharded, train.take(np.arange(8)), strict=True):
        assert a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), b)
    assert batch_sharded(np.ones((4, 3)), mesh).shape == (4, 3)


def test_mesh_and_batch_errors_name_the_fix():
    with pytest.raises(ValueError, match="xla_force_host_platform_device_count"):
        data_mesh(jax.device_count() + 1)
    mesh = data_mesh(1)
    check_divisible(5, mesh)  # one device divides everything
    with pytest.raises(ValueError, match="devices must be 0"):
        from pdeflow.fitting.fit import FitConfig

        FitConfig(devices=-1)


_EIGHT_DEVICES = """
import dataclasses, json, jax, numpy as np
from pdeflow.fitting.fit import fit_surrogate
from pdeflow.pde import SolverConfig
from tests.tiny_teacher import FIT, SURROGATE, tiny_traces
assert jax.device_count() == 8, jax.devices()
train, validation, _ = tiny_traces()
config = dataclasses.replace(FIT, steps=12, eval_every=4)
runs = {}
for devices in (1, 8):
    result = fit_surrogate(train, validation, SURROGATE, SolverConfig(), dataclasses.replace(config, devices=devices),
                           progress=False)
    runs[devices] = result
diff = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree_util.tree_leaves(runs[1].params),
                                                        jax.tree_util.tree_leaves(runs[8].params)))
print(json.dumps({"param_diff": diff,
                  "val": [[h["validation_kl"] for h in runs[d].history] for d in (1, 8)]}))
"""


@pytest.mark.slow
def test_eight_host_devices_fit_like_one_device():
    """Data parallel over 8 CPU devices (batch 16 -> 2 per device) gives the single-device fit to float
    tolerance: same loss curve, same parameters."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", _EIGHT_DEVICES], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    one, eight = (np.array(v) for v in result["val"])
    np.testing.assert_allclose(eight, one, rtol=1e-4)
    assert result["param_diff"] < 1e-4, result
