"""A user's checkpoint folder as a model source (`pdeflow.sources.CheckpointSource`): its shape and geometry,
the seeded split of the user's inputs and its record, and the errors for missing, mismatched or too few inputs
(whole fits: tests/test_cli_checkpoint.py)."""

import dataclasses

import numpy as np
import pytest

from pdeflow import metrics
from pdeflow.pde import SurrogateConfig
from pdeflow.pipeline import RunConfig, preset_config, surrogate_config_for
from pdeflow.sources import CheckpointSource, DataConfig, ModelShape, model_source_for
from pdeflow.sources.checkpoint import default_split_sizes
from tests.sources.tiny_checkpoints import TEXTS, write_texts

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    from tests.sources.tiny_checkpoints import save_tiny_checkpoint

    return save_tiny_checkpoint("bert", tmp_path_factory.mktemp("checkpoints") / "bert")


def test_default_split_sizes_fit_the_inputs():
    assert default_split_sizes(30) == (21, 3, 6)
    assert default_split_sizes(3) == (1, 1, 1)
    assert default_split_sizes(10_000) == (512, 64, 128)
    assert default_split_sizes(10_000, train_all=True) == (10_000 - 64 - 128, 64, 128)
    with pytest.raises(ValueError, match="at least 3 inputs"):
        default_split_sizes(2)


def test_a_text_checkpoint_is_a_chain_split_by_seed_and_recorded(bert_folder, tmp_path):
    texts = write_texts(tmp_path / "texts.txt")
    source = model_source_for(str(bert_folder), texts=texts)
    assert isinstance(source, CheckpointSource) and source.name == str(bert_folder)
    assert source.shape() == ModelShape(2, 2, 16, 8) and not source.shape().causal
    assert (source.modality, source.block_input_norm, source.count) == ("text", "none", 30)
    data = source.default_data()
    assert (data.num_train, data.num_validation, data.num_test, data.min_tokens) == (21, 3, 6, 2)
    assert preset_config("default", source).data == data
    assert preset_config("faithful", source).data == source.all_training_data()
    # traced at the end-to-end tests' sizes (tests/test_cli_checkpoint.py), so the compiled trace is shared
    data = DataConfig(num_train=8, num_validation=4, num_test=4, min_tokens=2, max_tokens=16)
    splits = source.trace_splits(data)
    split = source.describe()["checkpoint"]["split"]
    chosen = split["train"] + split["validation"] + split["test"]
    assert [len(split[k]) for k in ("train", "validation", "test")] == [8, 4, 4] and len(set(chosen)) == 16
    # every third text is [CLS], 4 words, 2 x "and more" (5 tokens), "." and [SEP]: 17 tokens, cut to 16
    assert split["seed"] == 0 and split["kept"] == 30 and split["truncated"] == 10
    assert splits.test_sentences == tuple(TEXTS[i] for i in split["test"])
    # the held-out trace is the model's on exactly those texts
    model = source.load()
    direct = model.trace_tokens(model.tokenize(list(splits.test_sentences), 16, pad_to=16))
    np.testing.assert_allclose(np.asarray(splits.test.attention), np.asarray(direct.attention), atol=1e-6)
    assert splits.train.hidden.shape == (3, 8, 16, 16)
    # the same seed, the same split; another seed, another split
    assert source.split(data) == split
    assert source.split(dataclasses.replace(data, split_seed=1))["test"] != split["test"]
    described = source.describe()
    assert described["inputs"] == f"30 texts from {texts}" and described["model"] == f"bert checkpoint {bert_folder}"
    assert described["checkpoint"]["inputs"] == str(texts) and described["checkpoint"]["model_type"] == "bert"


def test_too_few_or_mismatched_inputs_say_what_to_change(bert_folder, tmp_path):
    texts = write_texts(tmp_path / "texts.txt")
    source = CheckpointSource(bert_folder, texts=texts)
    with pytest.raises(ValueError, match=r"texts.txt has 30 input\(s\) but the splits ask for 512 \+ 64 \+ 128 = 704; "
                                         r"lower --num-train, --num-validation or --num-test"):
        source.check_data(DataConfig())
    # every third text is [CLS], 4 words, "." and [SEP]: 7 tokens
    with pytest.raises(ValueError, match=r"has 20 texts of at least 8 tokens \(min_tokens\) among its 30"):
        source.trace_splits(DataConfig(num_train=27, num_validation=1, num_test=1, min_tokens=8))
    with pytest.raises(ValueError, match="lower --max-tokens to at most 64"):
        source.check_data(DataConfig(num_train=2, num_validation=1, num_test=1, max_tokens=100))
    with pytest.raises(ValueError, match="extra_training_sentences"):
        source.check_data(DataConfig(num_train=2, num_validation=1, num_test=1, extra_training_sentences=True))
    with pytest.raises(ValueError, match="bert text model: pass the texts to trace it on with --texts FILE"):
        CheckpointSource(bert_folder)
    with pytest.raises(ValueError, match="reads texts, not images; pass --texts FILE"):
        CheckpointSource(bert_folder, images=tmp_path)
    with pytest.raises(ValueError, match="holds 2 input"):
        CheckpointSource(bert_folder, texts=["one text", "two texts"]).default_data()
    with pytest.raises(ValueError, match="holds no text"):
        CheckpointSource(bert_folder, texts=write_texts(tmp_path / "empty.txt", []))


def test_names_folders_and_hub_ids():
    assert model_source_for("minilm").name == "minilm"
    with pytest.raises(ValueError, match="brings its own inputs"):
        model_source_for("minilm", texts="texts.txt")
    for model in ("bert-base-uncased", "google/vit-base-patch16-224"):
        with pytest.raises(ValueError, match="download the checkpoint with your own tools"):
            model_source_for(model, texts="texts.txt")
        with pytest.raises(ValueError, match="unknown model"):
            RunConfig(model=model)


def test_a_causal_model_gets_a_causal_surrogate_and_a_causal_uniform_baseline():
    shape = ModelShape(2, 2, 16, 8, causal=True)
    assert surrogate_config_for(shape, SurrogateConfig()).causal
    assert not surrogate_config_for(ModelShape(2, 2, 16, 8), SurrogateConfig(causal=True)).causal
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    maps = metrics.uniform_maps(mask, 2, 3, causal=True)
    assert maps.shape == (2, 2, 3, 4, 4)
    np.testing.assert_allclose(maps[0, 0, 0, :3, :3], [[1, 0, 0], [1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(maps[1, 1, 2, 3], [1 / 4] * 4)
    assert np.all(maps[..., 3][:, 0] == 0)  # padding is never attended to
    np.testing.assert_allclose(metrics.uniform_maps(mask, 1, 1)[0, 0, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0])
