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

from pdeflow.fitting.checkpoint import MARKER, FitCheckpointer
from pdeflow.fitting.fit import fit_surrogate
from pdeflow.pde import SolverConfig
from tests.tiny_teacher import FIT, SURROGATE, tiny_traces

ROOT = Path(__file__).resolve().parents[2]

_FIT = """
import dataclasses, json, os, signal, sys, threading, time
import jax, numpy as np
from pdeflow.fitting import fit as fit_module
from pdeflow.fitting.checkpoint import FitCheckpointer
from pdeflow.fitting.fit import fit_surrogate
from pdeflow.pde import SolverConfig
from tests.tiny_teacher import FIT, SURROGATE, tiny_traces
mode, folder, out = sys.argv[1:4]
kind, *at = mode.split(":")
train, validation, _ = tiny_traces()
config = dataclasses.replace(FIT, steps=16, eval_every=4, checkpoint_every=3)
def on_eval(record):
    if record["step"] == 8 and mode in ("sigint", "sigkill"):
        os.kill(os.getpid(), signal.SIGINT if mode == "sigint" else signal.SIGKILL)
def kill():
    os.kill(os.getpid(), signal.SIGKILL)
if kind == "chaos":  # SIGKILL as step at[0] starts (steps count from the checkpoint it resumes from)
    step = [FitCheckpointer(folder).latest_step() or 0 if os.path.isdir(folder) else 0]
    next_batch = fit_module.next_batch
    def counted(batches):
        step[0] += 1
        if step[0] == int(at[0]):
            kill()
        return next_batch(batches)
    fit_module.next_batch = counted
if kind == "killsave":  # SIGKILL at[1] ms into the save of step at[0]
    save = FitCheckpointer.save
    def timed(self, state, configs):
        if state.step == int(at[0]):
            threading.Timer(float(at[1]) / 1000, kill).start()
            save(self, state, configs)
            time.sleep(30)
        save(self, state, configs)
    FitCheckpointer.save = timed
if kind == "fulldisk":  # once step 3's checkpoint is written, a ballast file takes all but 4 pages of its disk
    save = FitCheckpointer.save
    def then_fill(self, state, configs):
        save(self, state, configs)
        if state.step == 3:
            disk = os.statvfs(at[0])
            with open(os.path.join(at[0], "ballast"), "wb") as ballast:
                os.posix_fallocate(ballast.fileno(), 0, disk.f_bavail * disk.f_frsize - 4 * 4096)
    FitCheckpointer.save = then_fill
solver = SolverConfig("heun", adaptive=False, dt0=0.5, adjoint="stored")  # quick to compile; resume is solver-blind
try:
    result = fit_surrogate(train, validation, SURROGATE, solver, config, progress=False, on_eval=on_eval,
                           checkpoint_dir=None if mode == "plain" else folder,
                           resume=kind in ("resume", "chaos", "killsave"))
except OSError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(3)
np.savez(out, *[np.asarray(x) for x in jax.tree_util.tree_leaves(result.params)])
with open(out + ".json", "w") as f:
    json.dump(result.history, f)
"""


def _run(mode: str, folder: Path, out: Path, cache: Path, prefix: tuple = ()) -> subprocess.CompletedProcess:
    # the runs share JAX's persistent compilation cache, so only the first compiles (the executables are the same)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_COMPILATION_CACHE_DIR": str(cache),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
    return subprocess.run([*prefix, sys.executable, "-c", _FIT, mode, str(folder), str(out)], env=env, cwd=ROOT,
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


def _assert_uninterrupted(out: Path, uninterrupted) -> None:
    expected, expected_history = uninterrupted
    got, got_history = _result(out)
    assert got_history == expected_history
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_chaos_a_fit_killed_at_random_steps_and_inside_saves_ends_bit_identical(tmp_path, uninterrupted,
                                                                               compile_cache):
    """SIGKILL at 5 seeded random steps, then 3 times at seeded delays into a checkpoint's save, resuming after
    each: the fit ends with bit for bit the parameters and history of a fit never interrupted."""
    rng = np.random.default_rng(2026)
    folder, out = tmp_path / "checkpoints", tmp_path / "chaos.npz"
    kills = sorted(rng.choice(np.arange(2, 16), size=5, replace=False).tolist())
    for step in kills:
        killed = _run(f"chaos:{step}", folder, out, compile_cache)
        assert killed.returncode == -signal.SIGKILL and not out.exists(), killed.stderr[-2000:]
        assert (FitCheckpointer(folder).latest_step() or 0) == (step - 1) // 3 * 3  # the last save before it
    survived = len(kills)
    for delay in rng.uniform(0, 30, size=3):  # ms into the save of the next checkpoint
        step = FitCheckpointer(folder).latest_step() + 3
        if step > 15:
            break
        killed = _run(f"killsave:{step}:{delay:.1f}", folder, out, compile_cache)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
        assert FitCheckpointer(folder).latest_step() in (step - 3, step)  # the save finished or never counted
        survived += 1
    resumed = _run("resume", folder, out, compile_cache)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_uninterrupted(out, uninterrupted)
    assert survived >= 6


def test_a_full_disk_stops_the_fit_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, uninterrupted,
                                                                                   compile_cache):
    """The checkpoint folder on a tmpfs of its own (a mount namespace of its own: `unshare -rm`) that fills up
    after the checkpoint of step 3: a ballast file leaves 4 pages, less than any checkpoint, so the save of
    step 6 runs out of space. (Sizing the disk to hold one checkpoint but not two was flaky: orbax's OCDBT
    writes a checkpoint of this fit in 17 to 23 files, 28 to 37 pages, as its writes happen to fall.)"""
    import shutil

    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {tmp_path}"],
            capture_output=True).returncode != 0:
        pytest.skip("this machine does not let a test mount a tmpfs (needs unshare -rm and user namespaces)")
    disk, kept = tmp_path / "disk", tmp_path / "kept"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=4m tmpfs {disk} && "
              f'"$@"; code=$?; cp -r {disk}/checkpoints {kept}; exit $code')
    full = _run(f"fulldisk:{disk}", disk / "checkpoints", tmp_path / "full.npz", compile_cache,
                prefix=("unshare", "-rm", "sh", "-c", script, "sh"))
    assert full.returncode == 3, full.stderr[-3000:]
    assert "no space left on the device of" in full.stderr, full.stderr[-3000:]
    assert "at step 6" in full.stderr and "newest intact checkpoint is step 3" in full.stderr, full.stderr[-3000:]
    assert FitCheckpointer(kept).all_steps() == [3]
    assert sorted(p.name for p in kept.iterdir()) == ["3", MARKER]  # the half-written step 6 was removed
    resumed = _run("resume", kept, tmp_path / "resumed.npz", compile_cache)  # the kept checkpoint is whole
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_uninterrupted(tmp_path / "resumed.npz", uninterrupted)


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
    # so is another field backward (hand-written or autodiff: the same gradients to round-off)
    custom = dataclasses.replace(SURROGATE, field_backward="custom")
    again = fit_surrogate(train, validation, custom, solver, dataclasses.replace(config, steps=6), progress=False,
                          checkpoint_dir=tmp_path, resume=True)
    assert [h["step"] for h in again.history] == [2, 4, 6]
    with pytest.raises(ValueError, match="resume needs the checkpoint_dir"):
        fit_surrogate(train, validation, SURROGATE, solver, config, progress=False, resume=True)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree_util.tree_leaves(longer.params))


def test_a_checkpoint_folder_never_takes_what_pdeflow_did_not_write(tmp_path, monkeypatch):
    from pdeflow.fitting.checkpoint import MARKER, prepare_checkpoint_dir, remove_checkpoint_dir

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
        (folder / "7.orbax-checkpoint-tmp-123").mkdir()
        assert not prepare_checkpoint_dir(folder)  # only a temporary (interrupted) save: a fresh fit may start
        (folder / "5").mkdir()
        assert not prepare_checkpoint_dir(folder, resume=True)  # an earlier run's folder is taken up again
        with pytest.raises(ValueError, match="earlier fit \\(newest: step 5\\); continue that fit with --resume"):
            prepare_checkpoint_dir(folder)  # a fresh fit would die at its first save ("step 5 already exists")
        remove_checkpoint_dir(folder)
    assert not fresh.exists() and (tmp_path / "a").is_dir()
    assert empty.is_dir() and list(empty.iterdir()) == []
    (precious / MARKER).write_text("")  # a marker does not make the user's files pdeflow's
    remove_checkpoint_dir(precious)
    assert (precious / "thesis.txt").read_text() == "thesis" and (precious / "sub").is_dir()


def test_resume_falls_back_past_a_damaged_newest_checkpoint(tmp_path):
    train, validation, _ = tiny_traces()
    config = dataclasses.replace(FIT, steps=6, eval_every=2, checkpoint_every=2)
    solver = SolverConfig("heun", adaptive=False, dt0=0.5, adjoint="stored")
    whole = fit_surrogate(train, validation, SURROGATE, solver, dataclasses.replace(config, steps=8), progress=False)
    fit_surrogate(train, validation, SURROGATE, solver, config, progress=False, checkpoint_dir=tmp_path)
    assert FitCheckpointer(tmp_path).all_steps() == [4, 6]
    for path in (tmp_path / "6").rglob("*"):  # the newest checkpoint damaged (a crash, a full disk, bit rot)
        if path.is_file():
            path.write_bytes(b"\x00garbage" + path.read_bytes()[:7])
    with pytest.warns(UserWarning, match="step 6 .* is damaged.*resuming from the newest intact one, step 4"):
        resumed = fit_surrogate(train, validation, SURROGATE, solver, dataclasses.replace(config, steps=8),
                                progress=False, checkpoint_dir=tmp_path, resume=True)
    assert [h["step"] for h in resumed.history] == [2, 4, 6, 8]
    for a, b in zip(jax.tree_util.tree_leaves(whole.params), jax.tree_util.tree_leaves(resumed.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert FitCheckpointer(tmp_path).all_steps() == [6, 8]  # step 6 saved again by the resumed fit
    for path in tmp_path.rglob("*"):  # and with nothing intact: one clear error
        if path.is_file() and path.parent != tmp_path:
            path.write_bytes(b"")
    with pytest.raises(ValueError, match="no intact checkpoint to resume from"):
        fit_surrogate(train, validation, SURROGATE, solver, dataclasses.replace(config, steps=10), progress=False,
                      checkpoint_dir=tmp_path, resume=True)
