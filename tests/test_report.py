"""Reading a report folder back: what `write_report` wrote comes back exactly, and a folder that was truncated,
bit-flipped, edited or left incomplete is refused with one clear error, never silently read."""

import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdeflow import report
from pdeflow.pde import SurrogateConfig
from pdeflow.pde.attention_pde import init_surrogate
from pdeflow.pipeline import RunConfig
from pdeflow.results import FitMetrics

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SURROGATE = SurrogateConfig(num_layers=2, num_heads=2, model_dim=12, width=6, key_dim=3, value_rank=2, mlp_width=5,
                            num_knots=2, max_distance=4)


class Written:
    config = RunConfig(surrogate=SURROGATE)
    params = jax.tree_util.tree_map(np.asarray, init_surrogate(jax.random.PRNGKey(0), SURROGATE))
    metrics = {"x": 1}
    example = {}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run"
    summary = report.summary_markdown
    report.summary_markdown = lambda metrics: "summary"  # the metrics of a real fit are not the point here
    try:
        report.write_report(Written, out, figures=False)
    finally:
        report.summary_markdown = summary
    return out


def _same(loaded) -> bool:
    params, surrogate, solver = loaded
    flat = jax.tree_util.tree_leaves_with_path(params)
    expected = jax.tree_util.tree_leaves_with_path(Written.params)
    return (surrogate == SURROGATE and solver == Written.config.solver and len(flat) == len(expected)
            and all(p == q and np.array_equal(a, b) for (p, a), (q, b) in zip(flat, expected)))


def _copy(folder, tmp_path):
    copy = tmp_path / "copy"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder, copy)
    return copy


def test_a_written_folder_reads_back_exactly(folder):
    assert _same(report.load_surrogate(folder))


@pytest.mark.parametrize("name", ["config.json", "params.safetensors"])
def test_a_missing_file_is_named(folder, tmp_path, name):
    copy = _copy(folder, tmp_path)
    (copy / name).unlink()
    with pytest.raises(FileNotFoundError, match=f"{name} is missing; fit it again"):
        report.load_surrogate(copy)


@pytest.mark.parametrize("edit, message", [
    ({"width": 10**9}, "does not match its config"),  # refused from the header: nothing of that size is allocated
    ({"num_heads": 3}, "does not match its config"),
    ({"varying": ["value"]}, "does not match its config"),
    ({"width": -1}, "valid surrogate and solver settings"),
    ({"shape": 1}, "valid surrogate and solver settings"),
    ({"residual_norm": "none"}, "was changed after the fit wrote it"),  # shapes agree: the checksum tells
])
def test_an_edited_config_is_refused(folder, tmp_path, edit, message):
    copy = _copy(folder, tmp_path)
    config = json.loads((copy / "config.json").read_text())
    config["surrogate"].update(edit)
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=message) as error:
        report.load_surrogate(copy)
    assert str(copy / "config.json") in str(error.value)  # the edited file is named, whichever check refuses it


def test_a_reformatted_config_still_reads(folder, tmp_path):
    copy = _copy(folder, tmp_path)
    (copy / "config.json").write_text(json.dumps(json.loads((copy / "config.json").read_text()), sort_keys=True))
    assert _same(report.load_surrogate(copy))


@SETTINGS
@given(data=st.data())
def test_a_truncated_parameter_file_is_refused(folder, tmp_path, data):
    copy = _copy(folder, tmp_path)
    raw = (copy / "params.safetensors").read_bytes()
    (copy / "params.safetensors").write_bytes(raw[:data.draw(st.integers(0, len(raw) - 1))])
    with pytest.raises(ValueError, match="params.safetensors"):
        report.load_surrogate(copy)


@SETTINGS
@given(name=st.sampled_from(["params.safetensors", "config.json"]), data=st.data())
def test_a_flipped_bit_is_refused_or_harmless(folder, tmp_path, name, data):
    copy = _copy(folder, tmp_path)
    raw = bytearray((copy / name).read_bytes())
    position = data.draw(st.integers(0, 8 * len(raw) - 1))
    raw[position // 8] ^= 1 << (position % 8)
    (copy / name).write_bytes(bytes(raw))
    try:
        loaded = report.load_surrogate(copy)
    except ValueError as error:
        assert name in str(error) and "fit it again" in str(error)
    else:  # only a flip that changes nothing read (e.g. JSON whitespace that stays whitespace) may pass
        assert _same(loaded)


COMMITTED = sorted((Path(__file__).resolve().parents[1] / "experiments" / "results").rglob("metrics.json"))


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.parent.name)
def test_every_committed_summary_is_reproduced_from_its_metrics(path):
    data = json.loads(path.read_text())
    expected = (path.parent / "summary.md").read_text()
    assert report.summary_markdown(data) == expected
    assert report.summary_markdown(FitMetrics.from_json(data)) == expected


def test_a_report_of_a_record_writes_the_metrics_it_was_read_from(tmp_path):
    path = COMMITTED[0]

    class FromRecord(Written):
        metrics = FitMetrics.from_json(json.loads(path.read_text()))

    out = report.write_report(FromRecord, tmp_path / "run", figures=False)
    assert (out / "metrics.json").read_text() == path.read_text()
    assert (out / "summary.md").read_text() == (path.parent / "summary.md").read_text()
    assert _same(report.load_surrogate(out))


def test_the_summary_names_the_machine_beside_the_wall_time():
    data = json.loads(COMMITTED[0].read_text())
    data["seconds"] = {"trace": 1.0, "fit": 2.0, "evaluate": 3.0, "total": 6.0, "machine": "Some CPU, 2 cores"}
    assert "Wall time 6 s (trace 1 s, fit 2 s, evaluation 3 s) on Some CPU, 2 cores." in report.summary_markdown(data)
    data["seconds"].pop("machine")
    assert "evaluation 3 s)." in report.summary_markdown(data)
