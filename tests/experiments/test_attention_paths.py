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
    assert [r["width"] for r in result["rows"]] == [4] and len(result["digits"]["rows"]) == 1
    for row in result["rows"] + result["digits"]["rows"]:
        assert 0 <= row["theory_error"] <= 1 and 0 <= row["gp_error"] <= 1 and row["action_end"] <= row["action_start"]
    scores = np.asarray(result["head_scores"])
    assert scores.shape == (2, 4)
    np.testing.assert_allclose(scores.sum(1), 1.0, rtol=1e-5)
    assert int(np.argmax(scores[0])) == 0  # the switch detector carries the order parameter in layer 1
    pruning = result["pruning"]
    assert len(pruning["single_head_drop"]) == 2 and len(pruning["score_order"]) == 7  # 8 heads, 1 kept per layer
