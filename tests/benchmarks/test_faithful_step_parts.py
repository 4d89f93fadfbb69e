"""`benchmarks.faithful_step_parts` at a toy size of the faithful preset: every case is timed, the coarse step is
its own unit, and removing a part builds a different step (no timing is asserted)."""

import dataclasses

import numpy as np

from benchmarks import faithful_step_parts
from pdeflow.pipeline import preset_config, surrogate_config_for
from pdeflow.sources.base import ModelShape


def _tiny_preset():
    config = preset_config("faithful", "minilm")
    surrogate = surrogate_config_for(ModelShape(2, 2, 8, 4), dataclasses.replace(
        config.surrogate, width=8, key_dim=4, value_rank=4, mlp_width=16, num_knots=2))
    return surrogate, config.solver, config.fit


def test_every_part_of_the_preset_step_is_timed_against_the_coarse_step():
    surrogate, solver, fit_config = _tiny_preset()
    rows = faithful_step_parts.run(surrogate, solver, fit_config, batch_size=2, tokens=6, rounds=1)
    names = [row["case"] for row in rows]
    assert names == list(faithful_step_parts.step_cases(surrogate, solver, fit_config))
    coarse = rows[names.index("coarse step")]
    assert coarse["of_coarse_step"] == 1.0
    assert all(np.isfinite(row["median_s"]) and row["median_s"] > 0 for row in rows)


def test_each_case_removes_what_its_name_says():
    surrogate, solver, fit_config = _tiny_preset()
    cases = faithful_step_parts.step_cases(surrogate, solver, fit_config)
    assert "attention" not in cases["coarse step, no attention term"][0].terms
    assert "residual" not in cases["coarse step, no residual MLP"][0].terms
    assert cases["coarse step, MLP of the state's width"][0].mlp_width == surrogate.width
    assert cases["coarse step, no hidden-state term"][2].hidden_weight == 0.0
    assert cases["coarse step"][1].dt0 == solver.dt0 * fit_config.coarse_factor
    assert cases["fine step"][1].dt0 == solver.dt0
    assert cases["shooting step"][3] and not cases["coarse step"][3]
    other = {"float32": "bfloat16", "bfloat16": "float32"}[surrogate.compute_dtype]
    assert cases[f"coarse step, {other} products"][0].compute_dtype == other
    other = {"stored": "discrete", "discrete": "stored"}[solver.adjoint]
    assert cases[f"coarse step, {other} adjoint"][1] == dataclasses.replace(cases["coarse step"][1], adjoint=other)
    assert cases[f"fine step, {other} adjoint"][1] == dataclasses.replace(solver, adjoint=other)
    assert cases[f"fine step, {other} adjoint"][0] == cases["fine step"][0]
