"""The sparse-memory experiment: one sweep end to end at a tiny size, and the tables and figures of every sweep
from the committed results."""

import json
from pathlib import Path

import pytest

from experiments import sparse_memory

COMMITTED = Path(__file__).resolve().parents[2] / "experiments" / "results" / "sparse_memory" / "results.json"


def test_tiny_dot_product_sweep_writes_its_json_figure_and_summary(tmp_path):
    out = tmp_path / "memory"
    assert sparse_memory.main(["--out", str(out), "--sweeps", "dot_product", "--seeds", "0", "1", "--steps", "20",
                               "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["dot_product.json", "dot_product.png", "results.json",
                                                      "summary.md"]
    sweep = json.loads((out / "dot_product.json").read_text())
    assert [(r["memory"], r["dot_product"]) for r in sweep["rows"]] == [
        ("adaptive", True), ("adaptive", False), ("fixed", True), ("fixed", False)]
    for row in sweep["rows"]:
        assert len(row["errors"]) == 2 and row["mean"] > 0 and row["parameters"] > 0
    assert "With and without dot-product attention" in (out / "summary.md").read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        sparse_memory.main(["--out", str(out), "--sweeps", "dot_product"])
    with pytest.raises(ValueError, match="unknown sweeps"):
        sparse_memory.MemoryExperiment(sweeps=("rpe",))


def test_every_sweep_has_a_table_and_a_figure(tmp_path):
    results = json.loads(COMMITTED.read_text())
    text = sparse_memory.summary(results)
    for title in ("Log- vs linear-type RPE", "One layer vs two", "dot-product attention", "Heads H vs FFN width",
                  "Depth vs heads", "position-bias family"):
        assert title in text
    sparse_memory.write_figures(results, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s}.png" for s in sparse_memory.SWEEPS)


def test_large_size_scales_every_task_and_keeps_lags_inside_the_exact_buckets():
    small, large = sparse_memory.MemoryExperiment(), sparse_memory.MemoryExperiment(large=True)
    assert large.train_config().steps == 4 * small.train_config().steps
    for make in ("heavy", "light", "fixed", "adaptive"):
        assert getattr(large, make)().length == 4 * getattr(small, make)().length
    for config in (small, large):
        task = config.fixed()
        model = config.model(task, rpe="t5")
        assert max(task.lags) < model.num_buckets // 2  # every lag has a T5 bucket of its own
