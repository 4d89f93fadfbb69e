from pathlib import Path

import pytest

from experiments.cross_modality import config_for, table_markdown
from experiments.fidelity_vs_size import pareto_front, smallest_reaching
from pdeflow.pipeline import RunConfig, preset_config
from pdeflow.results import FitMetrics, FitSummary, ParameterCounts, SplitSizes, Timings, per_layer


def test_pareto_front_keeps_exactly_the_undominated_sizes():
    points = [(100, 0.90), (50, 0.80), (200, 0.89), (400, 0.95), (50, 0.85), (300, 0.95)]
    assert sorted(pareto_front(points)) == [0, 4, 5]  # (50, .85), (100, .90), (300, .95)


def test_smallest_reaching_needs_every_block():
    runs = [{"parameters": 10, "min_cosine": 0.97}, {"parameters": 30, "min_cosine": 0.981},
            {"parameters": 20, "min_cosine": 0.985}]
    assert smallest_reaching({"runs": runs}, 0.98)["parameters"] == 20
    assert smallest_reaching({"runs": runs}, 0.99) is None


def test_cross_modality_table_lists_every_method_per_block():
    held_out = {m: {"cosine": [0.9, 0.8], "js": [0.1, 0.2], "top_k": [0.7, 0.6]}
                for m in ("pde", "pde_without_attention", "uniform")}
    held_out["previous_layer"] = {"cosine": [None, 0.5], "js": [None, 0.3], "top_k": [None, 0.4]}
    metrics = FitMetrics(model="m", text="t", splits=SplitSizes(1, 1, 1),
                         parameters=ParameterCounts(surrogate=1, surrogate_used_by_attention_fit=1, transformer=2,
                                                    transformer_blocks=1),
                         held_out=per_layer(held_out), held_out_per_head={},
                         fit=FitSummary(best_step=2, stopped_early=False, steps_run=3, history=()), preset="",
                         coefficients={}, notes=(), seconds=Timings(trace=0.0, fit=1.0, evaluate=0.0, total=1.0))
    text = table_markdown({"minilm": metrics, "vit-digits": metrics}, RunConfig())
    assert text.count("| attention-PDE | 0.900 | 0.800 | 0.850 |") == 2
    assert "| previous layer | n/a | 0.500 | 0.500 |" in text  # the mean skips blocks without a prediction
    with pytest.raises(KeyError):
        table_markdown({"gpt": metrics}, RunConfig())


def test_cross_modality_keeps_one_budget_and_buckets_only_token_chains():
    # the MiniLM default with its four length buckets: a patch grid has one length (fit_surrogate refuses buckets)
    text = preset_config("default")
    image = config_for("vit-digits", text)
    assert text.fit.length_buckets == 4 and image.fit.length_buckets == 1
    assert image.fit.steps == text.fit.steps and image.surrogate.state_norm == "layer"
    assert config_for("minilm", text) == text


def test_report_points_of_the_committed_faithful_fits_name_their_seed_and_worst_block():
    from experiments.fidelity_vs_size import report_point

    folders = Path(__file__).resolve().parents[2] / "experiments" / "results" / "faithful_preset"
    seed0, seed1 = (report_point(folders / name) for name in ("minilm", "minilm-seed1"))
    assert (seed0["label"], seed1["label"]) == ("faithful", "faithful (seed 1)")
    assert seed0["min_cosine"] == min(seed0["per_block"]) and seed0["min_cosine"] >= 0.98  # block 5, 0.98056
    assert seed1["min_cosine"] == min(seed1["per_block"]) and seed1["min_cosine"] >= 0.98  # block 5, 0.98018
    with pytest.raises(FileNotFoundError, match="--reports takes folders written by `pdeflow fit`"):
        report_point(folders)
