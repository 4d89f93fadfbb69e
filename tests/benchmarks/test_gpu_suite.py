"""The GPU suite runs only where a GPU is lent, so these keep its pieces honest on the CPU: the carried MiniLM
is MiniLM on every pydoc sentence, the parts fit their budget, and returned results merge into the history."""

import json
import sys

import numpy as np
import pytest

from benchmarks import gpu_carry, gpu_suite


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("carry") / "device"
    manifest = gpu_carry.pack(folder)
    site = gpu_carry.unpack(folder, tmp_path_factory.mktemp("site"))
    return folder, site, manifest


def test_the_packed_minilm_keeps_every_row_the_topics_use_and_fits_a_device_call(packed):
    from safetensors.numpy import load_file

    from pdeflow.models.minilm import minilm_directory

    folder, site, manifest = packed
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    assert size < 56 * 2**20  # the call carries 64 MiB with the repository (about 8 MiB)
    original = load_file(minilm_directory() / "model.safetensors")
    carried = load_file(site / gpu_carry.PACKAGE / "model" / "model.safetensors")
    assert original.keys() == carried.keys()
    for name in original:
        if name != gpu_carry.WORD_EMBEDDINGS:
            np.testing.assert_array_equal(carried[name], original[name])
    rows = carried[gpu_carry.WORD_EMBEDDINGS]
    kept = np.flatnonzero(np.abs(rows).sum(1) > 0)
    assert manifest["kept_word_rows"] >= kept.size > 3000  # a few rows of MiniLM's may be zero already
    np.testing.assert_array_equal(rows[kept], original[gpu_carry.WORD_EMBEDDINGS][kept])
    assert manifest["word_rows"] == rows.shape[0] == 30522


def test_unpacking_refuses_a_pack_that_lost_a_row_the_topics_use(packed, tmp_path):
    import shutil

    folder, site, _ = packed
    broken = tmp_path / "broken"
    shutil.copytree(site, broken)
    topics = (broken / "pydoc_data" / "topics.py").read_text()
    (broken / "pydoc_data" / "topics.py").write_text(topics + "\ntopics['zz'] = 'Zymurgy xylophones quixotically.'\n")
    with pytest.raises(SystemExit, match="token ids of the topics were trimmed"):
        gpu_carry._check(folder, broken)


def test_the_parts_stay_within_the_budget_and_the_longer_fit_stops_in_time(tmp_path):
    parts = gpu_suite.parts(tmp_path, smoke=False, longer_fit_steps=4000)
    assert [p.name for p in parts] == ["peer", "solver", "fit", "longer_fit"]
    assert sum(p.seconds for p in parts[:-1]) <= 360  # the benchmarks' call, its budget in the docstring
    assert all("cuda" in p.args for p in parts if p.name in ("peer", "fit"))
    assert all(str(tmp_path / "results") in p.args for p in parts[:-1])


def test_a_failing_part_does_not_stop_the_next_and_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_suite, "parts", lambda out, smoke, steps: [
        gpu_suite.Part("broken", "benchmarks.no_such_module", (), 30),
        gpu_suite.Part("fine", "json.tool", ("--help",), 30)])
    statuses = gpu_suite.run_suite(tmp_path, budget=100, carry=None, smoke=True, only=None, longer_fit_steps=1)
    assert [(s["part"], s["status"]) for s in statuses] == [("broken", "exit 1"), ("fine", "ok")]
    log = (tmp_path / "suite.log").read_text()
    assert "No module named benchmarks.no_such_module" in log and sys.executable in log


def test_returned_results_merge_into_the_history_replacing_the_same_run(tmp_path):
    returned, results = tmp_path / "returned", tmp_path / "results"
    (returned / "results").mkdir(parents=True)
    results.mkdir()
    row = {"benchmark": "peer_torchdiffeq", "date": "20261204T120000Z", "headline": {"run": {"speedup": 2.0}}}
    old = {"benchmark": "solver_throughput", "date": "20261201T000000Z", "headline": {}}
    (results / "history.jsonl").write_text(json.dumps(old) + "\n" + json.dumps({**row, "headline": {}}) + "\n")
    (returned / "results" / "history.jsonl").write_text(json.dumps(row) + "\n")
    (returned / "results" / "peer_torchdiffeq_gpu_20261204T120000Z.json").write_text("{}")
    copied = gpu_suite.merge(returned, results)
    assert [p.name for p in copied] == ["peer_torchdiffeq_gpu_20261204T120000Z.json"]
    lines = [json.loads(line) for line in (results / "history.jsonl").read_text().splitlines()]
    assert lines == [old, row]
