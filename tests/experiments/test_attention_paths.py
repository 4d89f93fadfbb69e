"""The attention-paths experiment end to end at a tiny size (seconds): every output, and the hand-built head
found by the theory's head score."""

import json

import numpy as np

from experiments import attention_paths


def test_tiny_attention_paths_experiment_writes_its_numbers_and_figures(tmp_path):
    out = tmp_path / "paths"
    assert attention_paths.main(["--out", str(out), "--widths", "4", "--seeds", "1", "--sampler-steps", "200",
                                 "--num-train", "40", "--num-test", "100", "--action-steps", "100", "--no-vit-heads",
                                 "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["error_vs_width.png", "order_parameter.png", "pruning.png",
                                                      "results.json", "summary.md"]
    result = json.loads((out / "results.json").read_text())
    assert result["config"]["order_parameters"] == ["kronecker", "full"]
    for task in ("markov", "digits"):
        rows = result[task]["rows"]
        assert [r["width"] for r in rows] == [4]
        for row in rows:
            assert 0 <= row["gp_error"] <= 1 and row["gp_gap_to_sampled"] >= 0
            for form in ("kronecker", "full"):
                theory = row["theory"][form]
                assert 0 <= theory["error"] <= 1 and theory["action_end"] <= theory["action_start"]
                assert theory["gap_to_sampled"] >= 0
        pruning = result[task]["pruning"]
        assert len(pruning["single_head_drop"]) == 2
        for form in ("kronecker", "full"):
            scores = np.asarray(pruning["forms"][form]["head_scores"])
            assert scores.shape == (2, 4) and scores.max() == 1.0  # the authors' normalisation: largest = 1
            assert len(pruning["forms"][form]["score_order"]) == 7  # 8 heads, 1 kept per layer
    for form in ("kronecker", "full"):
        scores = np.asarray(result["markov"]["head_scores"][form])
        assert int(np.argmax(scores[0])) == 0  # the switch detector carries the order parameter in layer 1
    assert "| N | theory, Kronecker U: error | theory, full U: error |" in (out / "summary.md").read_text()
