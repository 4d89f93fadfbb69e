"""The records of a fit's metrics: every committed ``metrics.json`` reads into them and writes back unchanged, and
`FitMetrics.measured` gives the JSON the pipeline has always written."""

import json
from pathlib import Path

import numpy as np
import pytest

from pdeflow import metrics
from pdeflow.results import (
    AttentionEntropy,
    FitMetrics,
    FitSummary,
    ParameterCounts,
    SplitSizes,
    Timings,
    as_fit_metrics,
)
from pdeflow.store import json_ready, json_text

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p for folder in ("experiments/results", "results") for p in (ROOT / folder).rglob("metrics.json"))


def test_there_are_committed_metrics_to_read():
    assert len(COMMITTED) >= 6


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_committed_metrics_file_round_trips(path):
    text = path.read_text()
    data = json.loads(text)
    record = FitMetrics.from_json(data)
    assert record.to_json() == data
    assert list(record.to_json()) == list(data)  # the keys in their order, too
    assert json_text(record.to_json()) == text  # byte for byte
    assert as_fit_metrics(data).to_json() == data
    assert record.num_layers == len(data["held_out"]["pde"]["cosine"])
    assert record.methods == tuple(data["held_out"])


def test_missing_numbers_are_nan_in_the_record_and_null_in_json():
    data = json.loads(COMMITTED[0].read_text())
    record = FitMetrics.from_json(data)
    assert np.isnan(record.held_out["previous_layer"]["cosine"][0])
    assert record.to_json()["held_out"]["previous_layer"]["cosine"][0] is None


def test_what_is_not_a_fits_metrics_is_refused_by_name():
    with pytest.raises(ValueError, match="missing: .*held_out"):
        FitMetrics.from_json({"x": 1})
    data = json.loads(COMMITTED[0].read_text())
    with pytest.raises(ValueError, match="SplitSizes needs the keys"):
        FitMetrics.from_json({**data, "splits": {"train": 1}})


class _Result:  # what FitSummary.from_result reads of a pdeflow.fitting.fit.FitResult
    best_step = 4
    stopped_early = True
    history = [{"step": 2, "train_loss": np.float32(0.5), "phase": "free"},
               {"step": 4, "train_loss": np.float64(0.25), "phase": "free"}]


def test_measured_gives_the_json_the_pipeline_built_by_hand():
    rng = np.random.default_rng(0)
    fidelity = {method: {name: rng.random((3, 5, 2)) for name in metrics.METRICS} for method in ("pde", "uniform")}
    fidelity["previous_layer"] = {name: np.concatenate([np.full((1, 5, 2), np.nan), rng.random((2, 5, 2))])
                                  for name in metrics.METRICS}
    entropy = np.abs(rng.normal(size=(3, 2))), np.linspace(0, 3, 7, dtype=np.float32), rng.random((7, 2))
    curves = {"t": np.linspace(0, 3, 4, dtype=np.float32).tolist(), "D": [0.1, 0.2, 0.3, 0.4],
              "alpha": [1.0] * 4, "beta": [0.5] * 4}
    notes = ["one", "two"]
    record = FitMetrics.measured(
        model="m", text="t", splits=SplitSizes(10, 2, 5), parameters=ParameterCounts(100, 90, 1000, 800),
        vit={"config": {"model": {"grid": (4, 4)}}, "test_accuracy": 0.9}, fidelity=fidelity,
        fit=FitSummary.from_result(_Result), preset="faithful", seconds=Timings(1.0, 2.0, 3.0, 6.5),
        coefficients=curves, attention_entropy=AttentionEntropy("bits", *entropy), notes=notes)
    # the dict `pdeflow.pipeline._fit_and_measure` built before the records existed
    by_hand = {
        "model": "m", "text": "t", "splits": {"train": 10, "validation": 2, "test": 5},
        "parameters": {"surrogate": 100, "surrogate_used_by_attention_fit": 90, "transformer": 1000,
                       "transformer_blocks": 800},
        "vit": {"config": {"model": {"grid": (4, 4)}}, "test_accuracy": 0.9},
        "held_out": {name: metrics.summarise(values) for name, values in fidelity.items()},
        "held_out_per_head": {name: {m: v.mean(axis=1).tolist() for m, v in values.items()}
                              for name, values in fidelity.items() if name == "pde"},
        "fit": {"best_step": 4, "stopped_early": True, "steps_run": 4, "history": _Result.history},
        "preset": "faithful",
        "seconds": {"trace": 1.0, "fit": 2.0, "evaluate": 3.0, "total": 6.5},
        "coefficients": curves,
        "attention_entropy": {"units": "bits", "transformer": entropy[0], "pde_t": entropy[1], "pde": entropy[2]},
        "notes": notes,
    }
    assert json_text(record.to_json()) == json_text(by_hand)
    assert FitMetrics.from_json(json.loads(json_text(record.to_json()))).to_json() == json_ready(by_hand)


def test_optional_parts_are_left_out_when_absent():
    data = json.loads(COMMITTED[0].read_text())
    for key in ("vit", "seconds", "attention_entropy"):
        data.pop(key, None)
    assert list(FitMetrics.from_json(data).to_json()) == list(data)


def test_timings_record_the_machine_and_older_reports_without_it_still_read():
    timed = Timings(1.0, 2.0, 3.0, 6.5, machine="Some CPU (family 1 model 2; avx2), 2 cores; jax 0.0 on cpu")
    assert Timings.from_json(json.loads(json.dumps(timed.to_json()))) == timed
    older = {"trace": 1.0, "fit": 2.0, "evaluate": 3.0, "total": 6.5}  # metrics.json before 2026-12-06
    assert Timings.from_json(older).machine == "" and Timings.from_json(older).to_json() == older
    with pytest.raises(ValueError, match="Timings needs the keys"):
        Timings.from_json(older | {"hours": 1.0})
