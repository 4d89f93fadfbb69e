import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pdeflow.fitting import distributed

ROOT = Path(__file__).resolve().parents[2]


def test_settings_come_from_arguments_or_the_environment(monkeypatch):
    for name in distributed.ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    assert distributed.settings() is None  # a single-process run
    assert distributed.settings("h:1", 2, 1) == {"coordinator_address": "h:1", "num_processes": 2, "process_id": 1}
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "host:99")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "4")
    monkeypatch.setenv("JAX_PROCESS_ID", "3")
    assert distributed.settings() == {"coordinator_address": "host:99", "num_processes": 4, "process_id": 3}
    with pytest.raises(ValueError, match=r"process_id must be in \[0, 4\)"):
        distributed.settings(process_id=4)
    monkeypatch.setenv("JAX_NUM_PROCESSES", "four")
    with pytest.raises(ValueError, match="JAX_NUM_PROCESSES must be an integer"):
        distributed.settings()
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS")
    with pytest.raises(ValueError, match="need a coordinator"):
        distributed.settings(num_processes=2, process_id=1)


_PROCESS = """
import dataclasses, json, sys
import jax, numpy as np
from pdeflow.fitting import distributed
coordinator, process_id, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if coordinator != "-":
    distributed.initialize(coordinator, 2, process_id)
from pdeflow.fitting.fit import fit_surrogate
from pdeflow.pde import SolverConfig
from tests.tiny_teacher import FIT, SURROGATE, tiny_traces
train, validation, _ = tiny_traces()
result = fit_surrogate(train, validation, SURROGATE, SolverConfig(), dataclasses.replace(FIT, steps=8, eval_every=4),
                       progress=False)
if distributed.is_primary():
    np.savez(out, *[np.asarray(x) for x in jax.tree_util.tree_leaves(result.params)])
    with open(out + ".json", "w") as f:
        json.dump({"devices": jax.device_count(), "processes": jax.process_count(),
                   "val": [h["validation_kl"] for h in result.history]}, f)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_fit_together_like_one(tmp_path):
    """Two local processes (one CPU device each, gloo collectives) split each batch between them and get the
    single-process fit to float tolerance."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("XLA_FLAGS", None)
    run = lambda *args: subprocess.Popen([sys.executable, "-c", _PROCESS, *args], env=env, cwd=ROOT,  # noqa: E731
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    coordinator = f"127.0.0.1:{_free_port()}"
    pair = [run(coordinator, str(i), str(tmp_path / "two.npz")) for i in range(2)]
    single = run("-", "0", str(tmp_path / "one.npz"))
    for process in (*pair, single):
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    two, one = (json.loads(Path(str(tmp_path / name) + ".json").read_text()) for name in ("two.npz", "one.npz"))
    assert (two["devices"], two["processes"]) == (2, 2) and (one["devices"], one["processes"]) == (1, 1)
    np.testing.assert_allclose(two["val"], one["val"], rtol=1e-4)
    with np.load(tmp_path / "two.npz") as a, np.load(tmp_path / "one.npz") as b:
        diff = max(float(np.abs(a[k] - b[k]).max()) for k in a.files)
    assert diff < 1e-4, diff
