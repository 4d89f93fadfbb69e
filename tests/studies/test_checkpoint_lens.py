"""The entropy profile of a user's GPT-2-format checkpoint (`pdeflow.studies.checkpoint_lens`), checked on a
hand-made model whose lens distributions are known in closed form, and its report."""

import json
import math

import numpy as np
import pytest

from pdeflow.models.minilm import Tokenized
from pdeflow.studies.checkpoint_lens import checkpoint_lens_summary, lens_profile, write_checkpoint_lens_report

V = 4  # vocabulary = model width; the read-out is the identity


class KnownLensModel:
    """Layer 0 reads uniform (2 bits), layer 1 puts 1/2 on the token itself and 1/6 on each other (log 3 on its
    own logit), layer 2 (the model's output) predicts the next token almost surely. Padding is garbage."""

    num_layers, model_dim, max_tokens = 2, V, 16

    def tokenize(self, texts, max_tokens, pad_to=None):
        ids = [[ord(c) % V for c in t][:max_tokens] for t in texts]
        width = pad_to or max(map(len, ids))
        out, mask = np.zeros((len(ids), width), np.int32), np.zeros((len(ids), width), bool)
        for row, seq in enumerate(ids):
            out[row, :len(seq)], mask[row, :len(seq)] = seq, True
        return Tokenized(out, np.zeros_like(out), mask, tuple(tuple(map(str, s)) for s in ids))

    def trace_tokens(self, tokens, batch_size=64):
        ids, mask = np.asarray(tokens.input_ids), np.asarray(tokens.mask)
        onehot = np.eye(V, dtype=np.float32)[ids]
        following = np.eye(V, dtype=np.float32)[np.roll(ids, -1, axis=1)]
        hidden = np.stack([np.zeros_like(onehot), math.log(3) * onehot, 60 * following])
        garbage = np.random.default_rng(0).normal(size=hidden.shape).astype(np.float32) * 9
        return type("Trace", (), {"hidden": np.where(mask[None, :, :, None], hidden, garbage)})

    def lens_readout(self):
        return None, np.eye(V, dtype=np.float32), None

    def lens_logits(self, hidden):
        return np.asarray(hidden)

    def logits(self, tokens, batch_size=64):
        return self.trace_tokens(tokens).hidden[-1]


def test_the_profile_is_the_closed_form_entropy_of_each_layers_lens():
    texts = ["abcdefghij", "xyz", "hello", "q", "mnopqr"]  # ragged: padding must not count; one cut to 8
    result = lens_profile(KnownLensModel(), texts, max_tokens=8, batch_size=2)  # batches of 2, the last wraps
    p = np.array([1 / 2, 1 / 6, 1 / 6, 1 / 6])
    expected = {"0.5": 2 * math.log2(np.sqrt(p).sum()), "1.0": -(p * np.log2(p)).sum(),
                "2.0": -math.log2((p ** 2).sum()), "inf": 1.0}
    assert result["alphas"] == ["0.5", "1.0", "2.0", "inf"]
    for alpha, layer_1 in expected.items():
        np.testing.assert_allclose(result["profile"][alpha], [2.0, layer_1, 0.0], atol=1e-4)
    assert result["tokens"] == 8 + 3 + 5 + 1 + 6 and result["truncated"] == 1 and result["max_tokens"] == 8
    np.testing.assert_allclose(result["shannon_quartiles"]["q25"], [2.0, expected["1.0"], 0.0], atol=1e-4)
    # the last layer is the model's prediction of the next token: right at every position that has one
    assert result["next_token"]["positions"] == 7 + 2 + 4 + 0 + 5
    assert result["next_token"]["accuracy"] == 1.0 and result["next_token"]["bits_per_token"] < 1e-6
    assert result["lens_final_layer_max_abs_difference"] == 0.0


def test_shannon_is_always_measured_and_texts_are_needed():
    assert lens_profile(KnownLensModel(), ["abc", "de"], alphas=(2.0,))["alphas"] == ["2.0", "1.0"]
    with pytest.raises(ValueError, match="no texts"):
        lens_profile(KnownLensModel(), [])


def test_the_report_is_written_whole(tmp_path):
    result = {"model": {"folder": "ckpt", "model_type": "gpt2", "num_layers": 2, "parameters": {}},
              "texts": {"file": "t.txt", "count": 5}, **lens_profile(KnownLensModel(), ["abcdef", "xyz", "hello"])}
    out = write_checkpoint_lens_report(result, tmp_path / "lens")
    assert {p.name for p in out.iterdir()} == {"results.json", "summary.md", "profile.png"}
    assert json.loads((out / "results.json").read_text())["profile"]["inf"][1] == pytest.approx(1.0, abs=1e-4)
    summary = checkpoint_lens_summary(result)
    assert "| 1 | " in summary and "| Shannon |" in summary and "top-1 accuracy 100.0 %" in summary
