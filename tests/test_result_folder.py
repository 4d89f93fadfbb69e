"""The one writer of result folders (`pdeflow.store.result_folder`): every JSON file formatted alike, the folder
written all or nothing."""

import json

import numpy as np
import pytest

from pdeflow.store import json_text, result_folder


def test_a_result_folder_holds_what_was_written_formatted_alike(tmp_path):
    out = tmp_path / "deep" / "result"
    value = {"b": np.float32(0.5), "a": [1, np.nan, (2, 3)], "arr": np.arange(2)}
    with result_folder(out) as folder:
        folder.write_json("results.json", value)
        folder.write_text("summary.md", "# done\n")
        (folder.path / "figure.png").write_bytes(b"png")
        assert not out.exists()  # nothing is in place until the block ends
    assert sorted(p.name for p in out.iterdir()) == ["figure.png", "results.json", "summary.md"]
    text = (out / "results.json").read_text()
    assert text == json_text(value) == json.dumps({"b": 0.5, "a": [1, None, [2, 3]], "arr": [0, 1]}, indent=1)
    assert (out / "summary.md").read_text() == "# done\n"


def test_a_failed_result_leaves_nothing_and_a_full_folder_is_kept(tmp_path):
    out = tmp_path / "new" / "result"
    with pytest.raises(RuntimeError, match="figure failed"), result_folder(out) as folder:
        folder.write_json("results.json", {"x": 1})
        raise RuntimeError("figure failed")
    assert list(tmp_path.iterdir()) == []  # not even the parent folder it made
    kept = tmp_path / "kept"
    with result_folder(kept) as folder:
        folder.write_text("summary.md", "first")
    with pytest.raises(FileExistsError, match="--overwrite"), result_folder(kept):
        pass
    with result_folder(kept, overwrite=True) as folder:
        folder.write_text("summary.md", "second")
    assert (kept / "summary.md").read_text() == "second"
