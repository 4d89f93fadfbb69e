"""Training, saving and loading the character language models (tiny: seconds)."""

import dataclasses
import math

import jax
import numpy as np
import pytest

from pdeflow.data.pydoc_corpus import corpus_vocabulary
from pdeflow.information import entropy_profile
from pdeflow.models import check_trace
from pdeflow.models.gpt import lens_readout
from pdeflow.train.lm import LMTrainConfig, default_lm_folder, load_lm, load_or_train_lm, save_lm, train_lm
from tests.train.saved_folder import check_a_damaged_folder_is_refused

TINY = LMTrainConfig(family="post-ln", num_layers=1, hidden_size=32, num_heads=2, context_size=32, steps=60,
                     batch_size=16, learning_rate=1e-2, warmup_steps=5)


@pytest.fixture(scope="module")
def tiny_lm():
    return train_lm(TINY)


def test_training_beats_the_uniform_distribution_on_held_out_text_and_is_reproducible(tiny_lm):
    uniform = math.log2(len(corpus_vocabulary()))  # 6.7 bits per character
    assert tiny_lm.held_out_bits_per_char < uniform - 2.0
    assert tiny_lm.history[-1]["train_bits_per_char"] < tiny_lm.history[0]["train_bits_per_char"]
    a, b = (train_lm(dataclasses.replace(TINY, steps=2)) for _ in range(2))
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_array_equal(x, y)


def test_lens_of_a_trained_model_reads_its_own_predictions(tiny_lm):
    tokens, mask = tiny_lm.encode(["The for statement is used", "x = 1"])
    assert tokens.shape == (2, 25) and mask.sum(1).tolist() == [25, 5]
    logits, trace = tiny_lm.run(tokens, mask, batch_size=1)  # batches of one: the fixed-size path
    check_trace(trace)
    norm, unembedding, bias = lens_readout(tiny_lm.model, tiny_lm.params)
    profile = entropy_profile(trace.hidden, trace.mask, unembedding, norm, bias, alphas=(1.0,))
    p = jax.nn.softmax(logits)
    own = -(p * np.log2(np.maximum(p, 1e-30))).sum(-1)
    np.testing.assert_allclose(np.where(mask, profile.entropy[0, -1], 0), np.where(mask, own, 0), rtol=1e-3,
                               atol=1e-4)
    # the trained model is confident where the text is predictable: the last layer's entropy is below uniform
    assert np.nanmean(profile.entropy[0, -1]) < math.log2(len(tiny_lm.vocabulary)) - 1


def test_save_load_and_the_cache(tiny_lm, tmp_path, monkeypatch):
    folder = save_lm(tiny_lm, tmp_path / "lm")
    loaded = load_lm(folder)
    assert loaded.config == TINY and loaded.vocabulary == tiny_lm.vocabulary
    assert loaded.held_out_bits_per_char == pytest.approx(tiny_lm.held_out_bits_per_char)
    for x, y in zip(jax.tree_util.tree_leaves(loaded.params), jax.tree_util.tree_leaves(tiny_lm.params)):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(FileExistsError, match="--overwrite"):
        save_lm(tiny_lm, folder)
    monkeypatch.setenv("PDEFLOW_CACHE", str(tmp_path / "cache"))
    assert default_lm_folder(TINY).parent == tmp_path / "cache"
    other = dataclasses.replace(TINY, seed=1)
    with pytest.raises(ValueError, match="other settings"):
        load_or_train_lm(other, folder)
    check_a_damaged_folder_is_refused(folder, load_lm, "not a readable safetensors", "config.json", "pdeflow train lm")


def test_bad_settings_are_refused(tiny_lm):
    with pytest.raises(ValueError, match="family"):
        LMTrainConfig(family="mamba")
    with pytest.raises(ValueError, match="context"):
        tiny_lm.encode(["x" * 33])
