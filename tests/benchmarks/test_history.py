"""Benchmarks that track: every result written appends one labelled headline row to history.jsonl, and
`benchmarks.history` draws the rows."""

import json

import pytest

from benchmarks import history, reporting

LABEL = {"date": "20261204T000000Z", "device": "cpu:cpu", "devices": 1, "cpu": "Test CPU", "cpu_count": 2,
         "machine": "x86_64", "python": "3.11", "jax": "0.10.2", "diffrax": "0.7", "torch": "2.13.0"}
ROWS = [{"B": 32, "N": 48, "r": 64, "solver": "rk4", "mode": "forward+backward", "pdeflow_adjoint": "discrete",
         "speedup_median": 1.5, "pdeflow_overhead": 1.2, "pdeflow_steady_s": 0.8},
        {"B": 32, "N": 48, "r": 64, "mode": "field", "speedup_pdeflow_over_torch": 1.3, "max_abs_field_diff": 1e-7}]


def test_headline_keeps_the_ratios_of_each_case_and_the_runs_summary():
    numbers = reporting.headline(ROWS, {"speedup_pdeflow_over_peer": 1.1, "default_step": {"steps_per_s": 2.5},
                                        "peak_memory_bytes": 5, "flag": True})
    assert numbers == {
        "B=32 N=48 r=64 solver=rk4 mode=forward+backward pdeflow_adjoint=discrete":
            {"speedup_median": 1.5, "pdeflow_overhead": 1.2},  # times and differences are not headline numbers
        "B=32 N=48 r=64 mode=field": {"speedup_pdeflow_over_torch": 1.3},
        "run": {"speedup_pdeflow_over_peer": 1.1, "default_step.steps_per_s": 2.5}}


def test_a_case_key_at_its_default_leaves_the_case_name_as_runs_before_it_had_it():
    """A row timed with autodiff's field backward (the only one before rows recorded it) keeps its case's name;
    one timed with the hand-written backward is a case of its own."""
    autodiff, custom = ({**ROWS[1], "field_backward": backward} for backward in ("autodiff", "custom"))
    assert reporting.headline([autodiff]) == reporting.headline(ROWS[1:])
    assert reporting.headline([custom]) == {"B=32 N=48 r=64 mode=field field_backward=custom":
                                            {"speedup_pdeflow_over_torch": 1.3}}


def test_every_result_appends_one_labelled_row_and_a_resaved_run_keeps_one(tmp_path):
    reporting.write_result("peer_torchdiffeq", LABEL, ROWS, tmp_path)
    reporting.write_result("peer_torchdiffeq", LABEL, ROWS[:1], tmp_path)  # the same run saved again: replaced
    reporting.write_result("solver_throughput", {**LABEL, "date": "20261204T010000Z"}, ROWS[1:], tmp_path)
    rows = history.read_history(tmp_path / "history.jsonl")
    assert [(r["benchmark"], r["date"]) for r in rows] == [("peer_torchdiffeq", "20261204T000000Z"),
                                                          ("solver_throughput", "20261204T010000Z")]
    first = rows[0]
    assert first["commit"] != "" and first["file"] == "peer_torchdiffeq_cpu_20261204T000000Z.json"
    assert first["machine"]["cpu"] == "Test CPU" and first["versions"] == {"python": "3.11", "jax": "0.10.2",
                                                                           "diffrax": "0.7", "torch": "2.13.0"}
    assert list(first["headline"]) == ["B=32 N=48 r=64 solver=rk4 mode=forward+backward pdeflow_adjoint=discrete"]
    json.loads((tmp_path / first["file"]).read_text())  # the result file itself is beside it


def test_history_figure_is_drawn_from_the_file(tmp_path, capsys):
    with pytest.raises(SystemExit, match="no history"):
        history.main(["--folder", str(tmp_path)])
    for hour in range(3):
        reporting.write_result("peer_torchdiffeq", {**LABEL, "date": f"20261204T0{hour}0000Z"}, ROWS, tmp_path)
    panels = history.series(history.read_history(tmp_path / "history.jsonl"))
    assert panels[("peer_torchdiffeq", "pdeflow_overhead")] == {
        "B=32 N=48 r=64 solver=rk4 mode=forward+backward pdeflow_adjoint=discrete": [(0, 1.2), (1, 1.2), (2, 1.2)]}
    history.main(["--folder", str(tmp_path)])
    figure = tmp_path / "history.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "3 runs" in capsys.readouterr().out


def test_compiled_memory_is_reported_by_xla_or_none():
    import jax
    import jax.numpy as jnp

    memory = reporting.compiled_memory_bytes(jax.jit(lambda x: jnp.sin(x) @ x), jnp.ones((64, 64)))
    if memory is not None:  # CPU and GPU backends report it
        assert memory["argument"] == 64 * 64 * 4 and memory["output"] == 64 * 64 * 4
        assert memory["total"] == memory["argument"] + memory["output"] + memory["temp"]
    assert reporting.compiled_memory_bytes(lambda x: x, 1) is None  # not a jitted function: no analysis
