"""Training, saving and loading the ViT on the digits (a tiny ViT: seconds, not minutes)."""

import dataclasses

import jax
import numpy as np
import pytest

from pdeflow.data.digits import digit_splits
from pdeflow.models.vit import ViTConfig
from pdeflow.train import vit as vit_training
from pdeflow.train.vit import ViTTrainConfig, load_or_train_vit, load_vit, save_vit, train_vit
from tests.train.saved_folder import check_a_damaged_folder_is_refused

TINY = ViTTrainConfig(model=ViTConfig(hidden_size=16, num_layers=2, num_heads=2, mlp_size=32), epochs=12,
                      warmup_steps=10, learning_rate=5e-3)


@pytest.fixture(scope="module")
def tiny_vit():
    return train_vit(TINY)


def test_training_learns_far_above_chance_and_is_reproducible(tiny_vit):
    assert tiny_vit.test_accuracy > 0.6  # ten classes: chance is 0.1
    assert len(tiny_vit.history) == TINY.epochs
    assert tiny_vit.history[-1]["train_loss"] < tiny_vit.history[0]["train_loss"]
    again = train_vit(dataclasses.replace(TINY, epochs=1))
    once_more = train_vit(dataclasses.replace(TINY, epochs=1))
    for a, b in zip(*(jax.tree_util.tree_leaves(m.params) for m in (again, once_more))):
        np.testing.assert_array_equal(a, b)


def test_trace_matches_the_model_and_accuracy_is_on_the_test_split(tiny_vit):
    splits = digit_splits()
    logits = tiny_vit.logits(splits.test_images)
    assert logits.shape == (450, 10)
    assert np.mean(logits.argmax(-1) == splits.test_labels) == pytest.approx(tiny_vit.test_accuracy)
    trace = tiny_vit.trace(splits.test_images[:5], batch_size=2)  # batches of 2, the last one padded
    assert trace.hidden.shape == (3, 5, 17, 16) and trace.attention.shape == (2, 5, 2, 17, 17)
    full = tiny_vit.trace(splits.test_images[:5])
    np.testing.assert_allclose(trace.attention, full.attention, rtol=1e-5, atol=1e-6)


def test_save_load_round_trip_cache_and_refusals(tiny_vit, tmp_path, monkeypatch):
    folder = save_vit(tiny_vit, tmp_path / "vit")
    loaded = load_vit(folder)
    assert loaded.config == TINY and loaded.test_accuracy == tiny_vit.test_accuracy
    images = digit_splits().test_images[:8]
    np.testing.assert_array_equal(loaded.logits(images), tiny_vit.logits(images))
    with pytest.raises(FileExistsError, match="--overwrite"):
        save_vit(tiny_vit, folder)

    # the cache: a second call loads instead of training
    monkeypatch.setenv("PDEFLOW_CACHE", str(tmp_path / "cache"))
    save_vit(tiny_vit, vit_training.default_vit_folder(TINY))
    monkeypatch.setattr(vit_training, "train_vit", lambda *a, **k: pytest.fail("retrained a cached model"))
    np.testing.assert_array_equal(load_or_train_vit(TINY).logits(images), tiny_vit.logits(images))
    with pytest.raises(ValueError, match="other settings"):
        load_or_train_vit(dataclasses.replace(TINY, seed=1), folder=folder)

    check_a_damaged_folder_is_refused(folder, load_vit, "params.safetensors", "params.safetensors",
                                      "pdeflow train vit-digits")


def test_a_damaged_cache_entry_is_trained_again_never_used(tiny_vit, tmp_path, monkeypatch):
    monkeypatch.setenv("PDEFLOW_CACHE", str(tmp_path / "cache"))
    cached = save_vit(tiny_vit, vit_training.default_vit_folder(TINY))
    raw = bytearray((cached / "params.safetensors").read_bytes())
    raw[-3] ^= 0x10  # one flipped bit in the last weight: only the checksum can tell
    (cached / "params.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        load_vit(cached)
    trained = []
    monkeypatch.setattr(vit_training, "train_vit", lambda config, progress=False: trained.append(config) or tiny_vit)
    with pytest.warns(UserWarning, match="damaged.*training it again"):
        again = load_or_train_vit(TINY)
    assert trained == [TINY] and again is tiny_vit
    images = digit_splits().test_images[:8]
    np.testing.assert_array_equal(load_vit(cached).logits(images), tiny_vit.logits(images))  # rebuilt intact
    # outside the cache a damaged folder is refused, not overwritten
    mine = save_vit(tiny_vit, tmp_path / "mine")
    (mine / "params.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="params.safetensors"):
        load_or_train_vit(TINY, folder=mine)
