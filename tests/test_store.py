"""Output folders written atomically: all or nothing, never replacing results they did not write, with the
permissions the umask asks for."""

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from pdeflow.store import atomic_folder


def test_results_that_appeared_meanwhile_are_never_replaced_without_overwrite(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(FileExistsError, match="nothing was replaced") as raised:
        with atomic_folder(out) as staging:
            (staging / "metrics.json").write_text("mine")
            out.mkdir()  # someone else's results, written without pdeflow's lock
            (out / "metrics.json").write_text("theirs")
    assert (out / "metrics.json").read_text() == "theirs"
    kept = Path(str(raised.value).rsplit(" are in ", 1)[1].rstrip("."))
    assert (kept / "metrics.json").read_text() == "mine"
    with atomic_folder(out, overwrite=True) as staging:  # with --overwrite they are replaced
        (staging / "metrics.json").write_text("mine")
    assert (out / "metrics.json").read_text() == "mine"


def test_a_written_folder_follows_the_umask(tmp_path):
    from safetensors.numpy import save_file

    previous = os.umask(0o027)
    try:
        with atomic_folder(tmp_path / "run") as staging:
            save_file({"a": np.zeros(2, np.float32)}, staging / "params.safetensors")  # safetensors makes it 0600
            (staging / "sub").mkdir()
            (staging / "sub" / "summary.md").write_text("x")
    finally:
        os.umask(previous)
    out = tmp_path / "run"
    assert stat.S_IMODE(out.stat().st_mode) == 0o750 and stat.S_IMODE((out / "sub").stat().st_mode) == 0o750
    for path in (out / "params.safetensors", out / "sub" / "summary.md"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
