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


def test_entropy_lens_protocol_is_an_option_beside_the_default():
    assert LensConfig().protocol == "ours"
    args = cli.build_parser().parse_args(["lens", "--protocol", "entropy-lens", "--alphas", "0", "0.5", "1", "5",
                                          "inf", "--temperature", "0", "--generate-tokens", "4", "--windows", "2"])
    config = cli._section(LensConfig, (), args)
    assert config.protocol == "entropy-lens" and config.alphas == (0.0, 0.5, 1.0, 5.0, math.inf)
    assert (config.temperature, config.generate_tokens, config.windows) == (0.0, 4, 2)
    with pytest.raises(ValueError, match="protocol"):
        LensConfig(protocol="anchor")
    with pytest.raises(ValueError, match="windows"):
        LensConfig(generate_tokens=8, windows=3)


def test_task_prompts_pair_every_story_with_every_kind_in_four_forms():
    from pdeflow.studies.lens import PROMPT_FORMS, task_prompts

    config = LensConfig(protocol="entropy-lens", stories=5)
    prompts = task_prompts(config)
    assert len(prompts) == 5 * 4 * 4 and np.all(np.bincount(prompts.kind) == 20)
    piece = config.piece_length()
    assert {len(t) for t in prompts.text} == {2 * piece + 4}  # + generated tokens fills the context
    base, rev, scramble, scramble_rev = (prompts.text[i] for i in range(4))
    assert [PROMPT_FORMS[f] for f in prompts.form[:4]] == list(PROMPT_FORMS)
    story, cue = base[:piece], base[piece + 2:2 * piece + 2]
    assert rev == f"{cue}\n\n{story}\n\n" and scramble.endswith(f"\n\n{cue}\n\n")
    assert sorted(scramble[:piece].split(" ")) == sorted(story.split(" ")) and scramble_rev.startswith(cue)
    # the story is shared by all four kinds: it says nothing about the label
    assert all(prompts.text[16 * s + 4 * k][:piece] == prompts.text[16 * s][:piece] for s in range(5)
               for k in range(4))


@pytest.mark.slow
def test_tiny_entropy_lens_study_writes_auc_tables(tmp_path, monkeypatch, capsys):
    # untrained models (random weights) stand in for the trained ones: this checks the plumbing, not the numbers
    import jax

    from pdeflow.data.pydoc_corpus import corpus_vocabulary
    from pdeflow.models.gpt import GPT
    from pdeflow.studies import lens
    from pdeflow.train.lm import TrainedLM

    def untrained(config, progress=False):  # random weights without compiling an initialiser
        vocabulary = corpus_vocabulary()
        shapes = jax.eval_shape(GPT(config.model(len(vocabulary))).init, jax.random.PRNGKey(0),
                                np.zeros((1, 2), np.int32))
        rng = np.random.default_rng(config.num_layers)
        params = jax.tree_util.tree_map_with_path(
            lambda path, s: np.ones(s.shape, np.float32) if "scale" in jax.tree_util.keystr(path)
            else rng.normal(0, 0.3, s.shape).astype(np.float32), shapes)
        return TrainedLM(config, vocabulary, params, 6.0, [])

    monkeypatch.setattr(lens, "load_or_train_lm", untrained)
    out = tmp_path / "el"
    assert cli.main(["lens", "--protocol", "entropy-lens", "--depths", "1", "2", "--stories", "10", "--alphas", "0",
                     "1", "--generate-tokens", "4", "--windows", "2", "--out", str(out), "--no-progress"]) == 0
    assert "Entropy-Lens's protocol" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["entropy_lens_auc.png", "results.json", "summary.md"]
    result = json.loads((out / "results.json").read_text())
    assert result["protocol"] == "entropy-lens" and result["prompts"]["per_kind"]["code"] == 40
    assert list(result["identification"]) == ["pre-ln-L1", "pre-ln-L2", "post-ln-L1", "post-ln-L2"]
    row = result["identification"]["post-ln-L2"]["1.0"]
    for folds in ("anchor_folds", "grouped_folds"):
        for r in (row[folds]["profile"], row[folds]["final_entropy_only"]):
            assert 0 <= r["auc"] <= 1 and len(r["auc_by_fold"]) == 10 and r["k"] == 29
    assert row["grouped_folds"]["profile"]["grouped"] and not row["anchor_folds"]["profile"]["grouped"]
    assert list(row["by_form"]) == ["base", "rev", "scramble", "scramble_rev"]
    # a softmax over the characters keeps every probability above 1e-20 here: H_0 is flat, so its AUC is 1/2
    assert result["identification"]["pre-ln-L1"]["0.0"]["anchor_folds"]["profile"]["auc"] == pytest.approx(0.5)
    assert "| post-ln-L2 | 1.0 |" in (out / "summary.md").read_text()
