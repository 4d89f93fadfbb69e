"""The sparse-Boolean experiment: one sweep end to end at a tiny size, and the tables and figures of every sweep
from the committed results."""

import json
from pathlib import Path

import pytest

from experiments import sparse_boolean

COMMITTED = Path(__file__).resolve().parents[2] / "experiments" / "results" / "sparse_boolean" / "results.json"


@pytest.mark.slow  # one training compilation and the figure: 10–14 s on the loaded 2-core machine
def test_tiny_grid_writes_its_json_figure_and_summary(tmp_path):
    out = tmp_path / "boolean"
    assert sparse_boolean.main(["--out", str(out), "--sweeps", "heads_vs_width", "--seeds", "0", "1",
                                "--grid-steps", "5", "--grid-heads", "1", "--grid-widths", "4", "--targets", "and",
                                "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["heads_vs_width.json", "heads_vs_width.png", "results.json",
                                                      "summary.md"]
    (row,) = json.loads((out / "heads_vs_width.json").read_text())["rows"]
    assert (row["target"], row["lags"], row["length"], row["heads"], row["ffn_width"]) == ("and", [2, 9, 21], 64,
                                                                                           1, 4)
    assert len(row["errors"]) == len(row["sign_errors"]) == 2 and 0 <= row["sign_mean"] <= 1
    assert row["curve"]["steps"][-1] == 5
    assert "Heads H vs FFN width m" in (out / "summary.md").read_text()


@pytest.mark.skipif(not COMMITTED.exists(), reason="no committed results yet")
def test_every_sweep_has_a_table_and_a_figure(tmp_path):
    results = json.loads(COMMITTED.read_text())
    text = sparse_boolean.summary(results)
    for title in ("against the learning rate", "against sequence length", "curriculum", "Heads H vs FFN width"):
        assert title in text
    sparse_boolean.write_figures(results, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s}.png" for s in sparse_boolean.SWEEPS)


def test_bad_settings_say_what_to_fix():
    with pytest.raises(ValueError, match="unknown sweeps"):
        sparse_boolean.BooleanExperiment(sweeps=("parity",))
    with pytest.raises(ValueError, match="unknown targets"):
        sparse_boolean.BooleanExperiment(targets=("xor",))
