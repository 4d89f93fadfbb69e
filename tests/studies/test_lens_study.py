"""The entropy-lens study end to end (tiny models, a few prompts) and MiniLM's lens."""

import json
import math

import numpy as np
import pytest

from pdeflow import cli
from pdeflow.data.pydoc_corpus import Prompts
from pdeflow.studies.lens import LensConfig, minilm_profile

TINY = ["--depths", "1", "2", "--steps", "5", "--max-per-kind", "12", "--folds", "2", "--k", "3", "--no-minilm",
        "--no-progress"]


def test_lens_cli_defaults_are_the_python_api_defaults():
    args = cli.build_parser().parse_args(["lens"])
    assert cli._section(LensConfig, (), args) == LensConfig()
    args = cli.build_parser().parse_args(["lens", "--depths", "3", "5", "--alphas", "1", "inf"])
    config = cli._section(LensConfig, (), args)
    assert config.depths == (3, 5) and config.alphas == (1.0, math.inf)
    with pytest.raises(ValueError, match="Shannon"):
        LensConfig(alphas=(2.0,))
    with pytest.raises(ValueError, match="two families"):
        LensConfig(families=("pre-ln",))


def test_tiny_lens_study_writes_every_output_with_its_baselines(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PDEFLOW_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "lens"
    assert cli.main(["lens", "--out", str(out), *TINY]) == 0
    assert "Family" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["profiles.png", "profiles_by_kind.png", "renyi_vs_shannon.png",
                                                      "results.json", "summary.md"]
    result = json.loads((out / "results.json").read_text())
    assert [m["name"] for m in result["models"]] == ["pre-ln-L1", "pre-ln-L2", "post-ln-L1", "post-ln-L2"]
    assert result["prompts"]["per_kind"] == {"prose": 12, "code": 12, "list": 12, "grammar": 12}
    family = result["family"]
    assert family["seen_depths"]["profile"]["chance"] == pytest.approx(0.5)
    assert set(family["unseen_depth"]) == {"1", "2"}
    for r in (family["seen_depths"]["profile"], family["seen_depths"]["final_entropy_only"]):
        assert 0 <= r["accuracy"] <= 1 and r["k"] == 3
    for name in ("pre-ln-L1", "post-ln-L2"):
        assert 0 <= result["text_kind"][name]["profile"]["accuracy"] <= 1
        auc = result["correctness"][name]
        assert 0 <= auc["profile"]["auc"] <= 1 and 0 <= auc["final_entropy_only"]["auc"] <= 1
    # a profile per model, per α, one value per layer; Rényi entropies do not increase with α
    profile = result["profiles"]["pre-ln-L2"]
    assert len(profile["1.0"]["mean"]) == 3
    means = [np.asarray(profile[a]["mean"]) for a in ("0.5", "1.0", "2.0", "inf")]
    assert all(np.all(a >= b - 1e-6) for a, b in zip(means, means[1:]))
    assert result["renyi_vs_shannon_spearman"]["1.0"] == pytest.approx(1.0)
    # the models went into the cache: a second run loads them (and refuses to overwrite its output)
    assert len(list((tmp_path / "cache").iterdir())) == 4
    assert cli.main(["lens", "--out", str(out), *TINY]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_minilm_lens_reads_out_with_its_tied_word_embeddings():
    prompts = Prompts(("The for statement is used to iterate.", "   >>> x = 1"), np.array([0, 1]), np.array([0, 1]))
    profile = minilm_profile(prompts, (1.0, math.inf))
    assert profile.entropy.shape[:3] == (2, 7, 2)  # (A, L+1, P): six layers and the embeddings
    real = profile.entropy[:, :, profile.mask]
    assert np.all(np.isfinite(real)) and np.all(real >= 0) and np.all(real <= math.log2(30522) + 1e-3)
    assert np.all(real[1] <= real[0] + 1e-5)  # min-entropy <= Shannon
    assert profile.correct is None
