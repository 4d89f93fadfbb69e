"""The benchmarks are run by hand, so these keep them from rotting: each runs at a toy size and must write a
labelled result whose numbers make sense (no timing is asserted)."""

import dataclasses
import json

import numpy as np
import pytest

from benchmarks import fit_throughput, solver_throughput
from pdeflow.pde import SolverConfig
from tests.tiny_teacher import FIT, SURROGATE, tiny_traces


def test_solver_throughput_writes_a_labelled_result_with_a_flop_count(tmp_path, capsys):
    solver_throughput.main(["--sizes", "2,8,8,2,2", "--solvers", "euler:1.0", "--adjoints", "stored",
                            "--repeats", "1", "--out", str(tmp_path)])
    (path,) = tmp_path.glob("solver_throughput_*.json")
    result = json.loads(path.read_text())
    assert result["label"]["matmul_peak_gflop_per_s"] > 0 and "jax" in result["label"]
    rows = result["rows"]
    assert [(r["mode"], r["adjoint"]) for r in rows] == [("forward", None), ("forward+backward", "stored")]
    assert all(r["solver_steps"] == 2 and r["gflop_per_s"] > 0 and r["compute_dtype"] == "float32" for r in rows)
    assert "% of peak" in capsys.readouterr().out


def test_fit_throughput_times_the_fit_step_without_recompiling():
    train = tiny_traces()[0]
    fit = dataclasses.replace(FIT, seed=5)  # one shape (test_fit checks the bucketed fit's compiles)
    counter = fit_throughput.CompileCounter()
    solver = SolverConfig("euler", adaptive=False, dt0=1.0, adjoint="stored")
    row = fit_throughput.time_steps(SURROGATE, solver, fit, train, 4, counter)
    assert row["recompilations_during_timed_steps"] == {}
    assert row["compiled_lengths"] == [train.mask.shape[1]]
    assert row["steps_per_s"] > 0 and np.isfinite(row["xla_compile_s"])
    json.dumps(row)  # goes into the result file as it is


def test_the_peer_field_agrees_with_pdeflows_at_a_toy_size():
    """Only where the benchmark-only peer is installed (`pip install -e '.[bench]'`); CI skips it."""
    pytest.importorskip("torchdiffeq")
    from benchmarks import peer_torchdiffeq

    rows = peer_torchdiffeq.compare_field("2,8,8,2,2", repeats=1)
    assert [r["mode"] for r in rows] == ["field", "field+vjp"]
    assert all(r["max_abs_field_diff"] < 1e-5 and r["max_rel_state_gradient_diff"] < 1e-4 for r in rows)
    assert all(r["pdeflow_steady_s"] > 0 and r["torch_steady_s"] > 0 for r in rows)
