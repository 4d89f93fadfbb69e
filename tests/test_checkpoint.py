import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from pdeflow.checkpoint import FitCheckpointer
from pdeflow.fit import fit_surrogate
from pdeflow.pde import SolverConfig
from tests.tiny_teacher import FIT, SURROGATE, tiny_traces

ROOT = Path(__file__).resolve().parents[1]

_FIT = """
import dataclasses, json, os, signal, sys
import jax, numpy as np
from pdeflow.fit import fit_surrogate
from pdeflow.pde import SolverConfig
from tests.tiny_teacher import FIT, SURROGATE, tiny_traces
mode, folder, out = sys.argv[1:4]
train, validation, _ = tiny_traces()
config = dataclasses.replace(FIT, steps=16, eval_every=4, checkpoint_every=3)
def on_eval(record):
    if record["step"] == 8 and mode in ("sigint", "sigkill"):
        os.kill(os.getpid(), signal.SIGINT if mode == "sigint" else signal.SIGKILL)
solver = SolverConfig("heun", adaptive=False, dt0=0.5, adjoint="stored")  # quick to compile; resume is solver-blind
result = fit_surrogate(train, validation, SURROGATE, solver, config, progress=False, on_eval=on_eval,
                       checkpoint_dir=None if mode == "plain" else folder, resume=mode == "resume")
np.savez(out, *[np.asarray(x) for x in jax.tree_util.tree_leaves(result.params)])
with open(out + ".json", "w") as f:
    json.dump(result.history, f)
"""


def _run(mode: str, folder: Path, out: Path, cache: Path) -> subprocess.CompletedProcess:
    # the runs share JAX's persistent compilation cache, so only the first compiles (the executables are the same)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_COMPILATION_CACHE_DIR": str(cache),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    return subprocess.run([sys.executable, "-c", _FIT, mode, str(folder), str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)


def _result(out: Path):
    with np.load(out) as arrays:
        leaves = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
    return leaves, json.loads(Path(str(out) + ".json").read_text())


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("compile_cache")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, compile_cache):
    out = tmp_path_factory.mktemp("plain") / "plain.npz"
    plain = _run("plain", out.parent / "unused", out, compile_cache)
    assert plain.returncode == 0, plain.stderr[-2000:]
    return _result(out)


@pytest.mark.slow
@pytest.mark.parametrize("signum, saved_step", [(signal.SIGINT, 8), (signal.SIGKILL, 6)])
def test_interrupted_fit_resumes_to_the_uninterrupted_result(tmp_path, uninterrupted, compile_cache, signum,
                                                            saved_step):
    """Kill a fit at step 8 (SIGINT: it finishes and saves the step; SIGKILL: the checkpoint of step 6
    survives), resume it, and get bit for bit the parameters and history of a fit never interrupted."""
    folder = tmp_path / "checkpoints"
    mode = "sigint" if signum == signal.SIGINT else "sigkill"
    killed = _run(mode, folder, tmp_path / "killed.npz", compile_cache)
    assert killed.returncode != 0 and not (tmp_path / "killed.npz").exists()
    if signum == signal.SIGINT:
        assert "fit interrupted after step 8" in killed.stderr
    assert FitCheckpointer(folder).latest_step() == saved_step
    resumed = _run("resume", folder, tmp_path / "resumed.npz", compile_cache)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected, expected_history = uninterrupted
    got, got_history = _result(tmp_path / "resumed.npz")
    assert got_history == expected_history
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_refuses_a_checkpoint_made_with_other_settings(tmp_path):
    train, validation, _ = tiny_traces()
    config = dataclasses.replace(FIT, steps=4, eval_every=2, checkpoint_every=2)
    solver = SolverConfig("heun", adaptive=False, dt0=0.5, adjoint="stored")
    fit_surrogate(train, validation, SURROGATE, solver, config, progress=False, checkpoint_dir=tmp_path)
    assert FitCheckpointer(tmp_path).latest_step() == 4
    with pytest.raises(ValueError, match=r"other settings \(fit.learning_rate"):
        fit_surrogate(train, validation, SURROGATE, solver, dataclasses.replace(config, learning_rate=1e-3),
                      progress=False, checkpoint_dir=tmp_path, resume=True)
    # a larger step budget is allowed: the fit continues from step 4
    longer = fit_surrogate(train, validation, SURROGATE, solver, dataclasses.replace(config, steps=6),
                           progress=False, checkpoint_dir=tmp_path, resume=True)
    assert [h["step"] for h in longer.history] == [2, 4, 6]
    with pytest.raises(ValueError, match="resume needs the checkpoint_dir"):
        fit_surrogate(train, validation, SURROGATE, solver, config, progress=False, resume=True)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(longer.params))


def test_a_checkpoint_folder_never_takes_what_pdeflow_did_not_write(tmp_path, monkeypatch):
    from pdeflow.checkpoint import MARKER, prepare_checkpoint_dir, remove_checkpoint_dir

    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "thesis.txt").write_text("thesis")
    with pytest.raises(ValueError, match="did not write.*sub, thesis.txt"):
        prepare_checkpoint_dir(precious)
    monkeypatch.chdir(tmp_path)
    for folder, protected in ((".", ()), (tmp_path.parent, ()), (Path.home(), ()), (tmp_path / "out", ("out",)),
                              (tmp_path, (tmp_path / "out",))):
        with pytest.raises(ValueError, match="is or contains"):
            prepare_checkpoint_dir(folder, protected)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="not a folder"):
        prepare_checkpoint_dir(tmp_path / "file")
    with pytest.raises(ValueError, match="cannot create"):
        prepare_checkpoint_dir(tmp_path / "file" / "checkpoints")
    # created here: removed whole at the end; a user's empty folder stays, emptied of what the fit wrote
    fresh, empty = tmp_path / "a" / "fresh", tmp_path / "empty"
    empty.mkdir()
    assert prepare_checkpoint_dir(fresh) and not prepare_checkpoint_dir(empty)
    for folder in (fresh, empty):
        (folder / "5").mkdir()
        (folder / "7.orbax-checkpoint-tmp-123").mkdir()
        assert not prepare_checkpoint_dir(folder)  # an earlier run's folder is taken up again (resume)
        remove_checkpoint_dir(folder)
    assert not fresh.exists() and (tmp_path / "a").is_dir()
    assert empty.is_dir() and list(empty.iterdir()) == []
    (precious / MARKER).write_text("")  # a marker does not make the user's files pdeflow's
    remove_checkpoint_dir(precious)
    assert (precious / "thesis.txt").read_text() == "thesis" and (precious / "sub").is_dir()
