"""Exclusive folder locks: a second writer fails at once naming the holder, a dead holder's lock is taken over,
and (tests/test_store.py) a finished run never replaces results it did not write."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pdeflow.lock import FolderLockedError, folder_lock, holder_pid, lock_path
from pdeflow.store import atomic_folder

HOLD = ("import sys, time\nfrom pdeflow.lock import folder_lock\n"
        "locks = [folder_lock(p) for p in sys.argv[1:]]\n[lock.__enter__() for lock in locks]\n"
        "print('locked', flush=True)\ntime.sleep(120)\n")


@pytest.fixture
def holder():
    """Start a real process holding the locks of the given folders; yields ``start(*folders) -> Popen``."""
    started = []

    def start(*folders):
        process = subprocess.Popen([sys.executable, "-c", HOLD, *map(str, folders)], stdout=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "locked"
        return process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_the_lock_is_reentrant_in_a_process_and_leaves_nothing_behind(tmp_path):
    out = tmp_path / "run"
    with folder_lock(out) as path:
        assert path == lock_path(out) and holder_pid(out) == os.getpid()
        with folder_lock(out):
            pass
        assert path.exists()  # still held by the outer block
    assert not lock_path(out).exists() and list(tmp_path.iterdir()) == []


def test_a_second_process_is_refused_naming_the_holder_and_a_dead_holders_lock_is_taken_over(tmp_path, holder):
    out = tmp_path / "run"
    process = holder(out)
    with pytest.raises(FolderLockedError, match=f"pid {process.pid}"):
        with folder_lock(out):
            pass
    with pytest.raises(FolderLockedError):  # writing results takes the same lock
        with atomic_folder(out):
            pass
    assert not out.exists()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert lock_path(out).exists() and holder_pid(out) == process.pid  # stale: its holder is dead
    with folder_lock(out):
        assert holder_pid(out) == os.getpid()


def test_two_fits_into_one_folder_the_second_fails_at_once(tmp_path, holder):
    from tests.test_cli import TINY

    out, checkpoints = tmp_path / "run", tmp_path / "shared.checkpoints"
    process = holder(out)
    fit = subprocess.run([sys.executable, "-m", "pdeflow", "fit", "--out", str(out), *TINY], capture_output=True,
                         text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert fit.returncode == 2 and f"pid {process.pid}" in fit.stderr and "another pdeflow run" in fit.stderr
    assert not out.exists() and not (tmp_path / "run.checkpoints").exists()
    process.kill()
    process.wait()
    # another output, but the checkpoint folder of a running fit: refused as well
    process = holder(checkpoints)
    fit = subprocess.run([sys.executable, "-m", "pdeflow", "fit", "--out", str(tmp_path / "other"), "--checkpoints",
                          str(checkpoints), *TINY], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).parents[1])
    assert fit.returncode == 2 and f"pid {process.pid}" in fit.stderr and not (tmp_path / "other").exists()
    assert not checkpoints.exists()  # refused before anything was created
