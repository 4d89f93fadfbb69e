"""Entropy-Lens's protocol on a user's GPT-2-format checkpoint (`pdeflow.studies.checkpoint_entropy_lens`,
``pdeflow lens --model FOLDER --protocol entropy-lens --texts FILE``), on a tiny random gpt2 saved here with
``transformers``: generation through the checkpoint's own forward (a padded batch gives each prompt what it gives
alone; the first token is the argmax of its logits; the last block's lens is its own output), the prompts' four
forms, the command end to end, and the inputs it refuses (one line, nothing written)."""

import dataclasses
import json
import math

import jax
import numpy as np
import pytest

from pdeflow import cli
from pdeflow.information.entropy import renyi_entropy_from_logits
from pdeflow.information.generation import _generate, generate_with_lens
from pdeflow.models.minilm import Tokenized
from pdeflow.studies.checkpoint_entropy_lens import (
    LabelledPrompts,
    build_task_prompts,
    checkpoint_entropy_lens_summary,
    labelled_prompts,
    read_labelled_prompts,
    tokenize_prompts,
)
from pdeflow.studies.lens import PROMPT_FORMS

pytest.importorskip("transformers")

ALPHAS = (0.5, 1.0, 5.0, math.inf)
STEPS = 4


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from tests.sources.tiny_checkpoints import save_tiny_checkpoint

    root = tmp_path_factory.mktemp("entropy_lens")
    return {t: save_tiny_checkpoint(t, root / t) for t in ("gpt2", "bert")}


@pytest.fixture(scope="module")
def peaked(folders):
    """The tiny gpt2 with its (tied) token embedding scaled up, so that its next-token distributions are far from
    uniform and its argmax is not a near-tie."""
    from pdeflow.models.checkpoints import load_pretrained

    model = load_pretrained(folders["gpt2"])
    params = jax.tree_util.tree_map(lambda x: x, model.params)
    params["params"]["token_embedding"]["embedding"] = 40 * params["params"]["token_embedding"]["embedding"]
    return dataclasses.replace(model, params=params)


def _logits_of(model, sequences):
    """The checkpoint's own next-token logits (`PretrainedModel.logits`) of ragged token sequences."""
    width = max(map(len, sequences))
    ids, mask = np.zeros((len(sequences), width), np.int32), np.zeros((len(sequences), width), bool)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)], mask[row, :len(seq)] = seq, True
    return model.logits(Tokenized(ids, np.zeros_like(ids), mask, ()))


def test_a_padded_batch_generates_what_each_prompt_does_alone_through_the_models_own_head(peaked):
    texts = ["the value of a list", "Hi", "a model maps tokens to hidden states and\n\nback"]
    ids, lengths, truncated = tokenize_prompts(peaked, texts, 40)
    assert truncated == 1 and lengths.tolist() == [19, 2, 40] and ids.shape == (3, 40)
    batch = generate_with_lens(peaked, None, ids, lengths, STEPS, ALPHAS)
    entropy, tokens = np.asarray(batch.entropy), np.asarray(batch.tokens)
    assert entropy.shape == (4, STEPS, 2, 3) and tokens.shape == (3, STEPS)  # (A, T, L, B)
    for b in range(3):
        alone = generate_with_lens(peaked, None, ids[b:b + 1, :lengths[b]], lengths[b:b + 1], STEPS, ALPHAS)
        np.testing.assert_array_equal(alone.tokens[0], tokens[b])
        np.testing.assert_allclose(alone.entropy[..., 0], entropy[..., b], rtol=1e-5, atol=1e-5)
    # every step against the model's own logits on the prompt plus what was generated so far
    prompts = [list(ids[b, :lengths[b]]) for b in range(3)]
    sequences = [prompts[b] + list(tokens[b, :t]) for b in range(3) for t in range(STEPS)]
    logits = _logits_of(peaked, sequences)
    for row, sequence in enumerate(sequences):
        b, t = divmod(row, STEPS)
        own = logits[row, len(sequence) - 1]
        assert int(tokens[b, t]) == int(np.argmax(own))  # greedy: the argmax of PretrainedModel.logits
        for a, alpha in enumerate(ALPHAS):  # the last block's lens entropy is that of the model's own output
            np.testing.assert_allclose(entropy[a, t, -1, b], renyi_entropy_from_logits(own, alpha), rtol=1e-4,
                                       atol=1e-4)
    spread = entropy[1, :, -1]
    assert spread.min() < math.log2(257) - 0.5  # peaked: the check above is not one of uniform distributions
    assert np.all(np.diff(entropy, axis=0) <= 1e-4)  # Rényi orders do not increase


def test_every_prompt_comes_in_four_forms_with_its_own_or_a_borrowed_context():
    texts = tuple(f"prompt {i}" for i in range(20))
    prompts = LabelledPrompts(texts, tuple("ab"[i % 2] for i in range(20)),
                              tuple("the story so far" if i == 0 else None for i in range(20)))
    forms, tasks = build_task_prompts(prompts, seed=3)
    assert tasks == ["a", "b"] and len(forms) == 80
    assert forms.form.tolist() == list(range(4)) * 20
    assert forms.kind.tolist() == [i % 2 for i in range(20) for _ in range(4)]
    assert forms.cue_paragraph.tolist() == [i for i in range(20) for _ in range(4)]
    base, rev, scramble, scramble_rev = forms.text[:4]  # the first prompt has its own context
    assert base == "the story so far\n\nprompt 0\n\n" and rev == "prompt 0\n\nthe story so far\n\n"
    assert scramble.endswith("\n\nprompt 0\n\n") and scramble_rev.startswith("prompt 0\n\n")
    assert sorted(scramble.split("\n\n")[0].split(" ")) == sorted("the story so far".split(" "))
    for i in range(1, 20):  # the others borrow another prompt's text
        source = forms.story[4 * i]
        assert source != i and forms.text[4 * i] == f"{texts[source]}\n\n{texts[i]}\n\n"
    assert len(set(forms.story[4::4])) > 5  # chosen at random, not always the same one
    assert [PROMPT_FORMS[f] for f in forms.form[:4]] == ["base", "rev", "scramble", "scramble_rev"]


def test_prompts_given_in_python_are_dicts_with_a_task():
    prompts = labelled_prompts([{"text": "Go on.", "task": 1}, {"text": "Ask.", "task": "q", "context": "a story"}])
    assert prompts.task == ("1", "q") and prompts.context == (None, "a story") and prompts.file is None
    with pytest.raises(ValueError, match='give dicts {"text": ..., "task": ...}'):
        labelled_prompts([{"text": "no task"}])


def _write(path, records):
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


RECORDS = [{"text": f"{['summarise', 'question about'][i % 2]} the value {i}", "task": ["summary", "question"][i % 2],
            **({"context": "a list of tokens"} if i % 5 == 0 else {})} for i in range(20)]


def test_the_command_writes_auc_per_order_beside_the_dummy_and_the_final_entropy(folders, tmp_path, capsys):
    prompts, out = _write(tmp_path / "prompts.jsonl", RECORDS), tmp_path / "lens"
    assert read_labelled_prompts(prompts).context[:2] == ("a list of tokens", None)
    compiled = _generate._cache_size()
    assert cli.main(["lens", "--model", str(folders["gpt2"]), "--protocol", "entropy-lens", "--texts", str(prompts),
                     "--alphas", "0.5", "1", "5", "--generate-tokens", str(STEPS), "--out", str(out),
                     "--no-progress"]) == 0, capsys.readouterr().err
    assert _generate._cache_size() <= compiled + 1  # 80 forms in 3 batches of one width: one compile at most
    assert {p.name for p in out.iterdir()} == {"results.json", "summary.md", "profile_by_task.png"}
    result = json.loads((out / "results.json").read_text())
    assert result["alphas"] == ["0.5", "1.0", "5.0"] and set(result["auc"]) == {"0.5", "1.0", "5.0"}
    for row in result["auc"].values():
        for name in ("profile", "dummy", "final_entropy_only", "grouped_profile"):
            assert 0 <= row[name] <= 1, name
        assert 0 <= row["p_value"] <= 1 or math.isnan(row["p_value"])
    assert result["prompts"]["per_task"] == {"question": 10, "summary": 10} and result["prompts"]["scored"] == 80
    assert result["prompts"]["with_context"] == 4 and result["config"]["generate_tokens"] == STEPS
    assert len(result["identification"]["1.0"]["anchor_folds"]["profile"]["auc_by_fold"]) == 10
    assert len(result["shannon_profile_by_task"]["summary"]) == 2  # one entropy per block
    assert result["prompts"]["truncated"] == 0 and result["prompts"]["room"] == 64 - STEPS
    summary = (out / "summary.md").read_text()
    assert "| 5.0 |" in summary and "dummy AUC" in summary and "| scramble_rev |" in summary
    assert "4 with their own context, the rest borrowing" in summary and "kept their last tokens" not in summary
    result["prompts"]["truncated"] = 3
    assert "3 prompt forms were longer than the 60 tokens" in checkpoint_entropy_lens_summary(result)


def test_bad_inputs_fail_with_one_line_and_leave_nothing(folders, tmp_path, capsys):
    out = tmp_path / "lens"
    plain = tmp_path / "plain.txt"
    plain.write_text("one prompt\nanother prompt\n")
    no_task = _write(tmp_path / "no_task.jsonl", RECORDS[:3] + [{"text": "no label"}] + RECORDS[3:])
    few = _write(tmp_path / "few.jsonl", RECORDS[:16])  # 8 of each task
    one_task = _write(tmp_path / "one_task.jsonl", [dict(r, task="summary") for r in RECORDS])
    gpt2, bert = str(folders["gpt2"]), str(folders["bert"])
    cases = [
        ([gpt2, str(plain)], "without tasks; Entropy-Lens's protocol identifies each prompt's task, so write JSON"),
        ([gpt2, str(no_task)], 'no_task.jsonl, line 4: no "task" field; add the prompt\'s task label'),
        ([gpt2, str(few)], "needs at least 10 prompts of every task (each is scored in its four forms"),
        ([gpt2, str(few)], "'question' has 8 (add 2), 'summary' has 8 (add 2)"),
        ([gpt2, str(one_task)], "at least two tasks"),
        ([bert, str(_write(tmp_path / "ok.jsonl", RECORDS))], "gpt2 checkpoints only"),
    ]
    for (model, texts), message in cases:
        assert cli.main(["lens", "--model", model, "--protocol", "entropy-lens", "--texts", texts, "--out", str(out),
                         "--no-progress"]) == 2, message
        error = capsys.readouterr().err
        assert error.startswith("pdeflow: error:") and message in error and error.count("\n") == 1, error
        assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert cli.main(["lens", "--protocol", "entropy-lens", "--texts", str(plain), "--out", str(out)]) == 2
    assert "needs both --model FOLDER and --texts FILE" in capsys.readouterr().err
