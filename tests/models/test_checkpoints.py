"""Loading users' checkpoint folders (`pdeflow.models.checkpoints`) without transformers: MiniLM through the
generic loader, shapes read from config.json alone, tokenising, and an error naming the file and the fix for
every kind of bad folder. The comparison with Hugging Face's models is in test_checkpoints_reference.py."""

import dataclasses
import json
import shutil

import jax
import numpy as np
import pytest

from pdeflow.models import SUPPORTED_MODEL_TYPES, check_trace, load_minilm, load_pretrained, read_shape
from pdeflow.models.bert import bert_block_weights
from pdeflow.models.checkpoints import CheckpointShape, ImagePreprocessor
from pdeflow.models.minilm import minilm_directory
from tests.models.tiny_checkpoints import BERT_CONFIG, TEXTS, bert_state_dict, write_tiny_bert

VIT_CONFIG = {"model_type": "vit", "image_size": [16, 24], "patch_size": 4, "num_channels": 3, "hidden_size": 32,
              "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
              "qkv_bias": True}
GPT2_CONFIG = {"model_type": "gpt2", "vocab_size": 300, "n_embd": 32, "n_layer": 3, "n_head": 2, "n_positions": 64,
               "activation_function": "gelu_new"}
DISTILBERT_CONFIG = {"model_type": "distilbert", "vocab_size": 200, "dim": 48, "n_layers": 2, "n_heads": 3,
                     "hidden_dim": 64, "max_position_embeddings": 40}


def config_folder(tmp_path, config, name="model"):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("tiny") / "bert")


def copy_of(folder, tmp_path, skip=()):
    target = tmp_path / "copy"
    target.mkdir()
    for path in folder.iterdir():
        if path.name not in skip:
            shutil.copy(path, target / path.name)
    return target


def test_minilm_through_load_pretrained_is_load_minilm_exactly():
    model, encoder = load_pretrained(minilm_directory()), load_minilm()
    sentences = ["A short one.", "A somewhat longer sentence, with a comma and more words than the first."]
    tokens, reference = model.tokenize(sentences, 128, pad_to=24), encoder.tokenize(sentences, 128, pad_to=24)
    assert tokens.tokens == reference.tokens
    for name in ("input_ids", "token_type_ids", "mask"):
        np.testing.assert_array_equal(getattr(tokens, name), getattr(reference, name))
    for ours, theirs in zip(model.trace_tokens(tokens), encoder.trace_tokens(reference)):
        np.testing.assert_array_equal(ours, theirs)
    assert (model.model_type, model.modality, model.causal, model.block_input_norm, model.max_tokens) == \
        ("bert", "text", False, "none", 512)
    assert (model.num_layers, model.num_heads, model.model_dim, model.head_dim, model.grid, model.prefix_tokens) == \
        (6, 12, 384, 32, (), 0)
    assert model.parameters() == {"transformer": 22565376, "transformer_blocks": 10646784}
    for ours, theirs in zip(model.block_weights(), bert_block_weights(encoder.params, encoder.config)):
        np.testing.assert_array_equal(ours.query, theirs.query)
        np.testing.assert_array_equal(ours.output, theirs.output)
    assert read_shape(minilm_directory()) == CheckpointShape("bert", "text", False, "none", 6, 12, 384, 32, (), 0,
                                                             512, 22565376)


@pytest.mark.parametrize("config, expected", [
    (BERT_CONFIG, ("bert", "text", False, "none", 2, 4, 32, 8, (), 0, 40)),
    ({**BERT_CONFIG, "model_type": "roberta", "pad_token_id": 1}, ("roberta", "text", False, "none", 2, 4, 32, 8, (),
                                                                    0, 38)),
    (DISTILBERT_CONFIG, ("distilbert", "text", False, "none", 2, 3, 48, 16, (), 0, 40)),
    (VIT_CONFIG, ("vit", "image", False, "layer", 2, 4, 32, 8, (4, 6), 1, 25)),
    (GPT2_CONFIG, ("gpt2", "text", True, "layer", 3, 2, 32, 16, (), 0, 64)),
])
def test_read_shape_reads_config_json_alone(tmp_path, config, expected):
    shape = read_shape(config_folder(tmp_path, config))  # no weights, tokenizer or preprocessor in the folder
    assert dataclasses.astuple(shape)[:-1] == expected and shape.num_weights > 0


def test_tiny_bert_traces_and_prefixed_weights_load_the_same(tiny_bert, tmp_path):
    model = load_pretrained(tiny_bert)
    trace = model.trace_texts(TEXTS)
    check_trace(trace)
    assert trace.hidden.shape[:2] == (3, 4) and trace.mask.sum(1).tolist() == [len(t) for t in
                                                                                model.tokenize(TEXTS, 40).tokens]
    assert model.shape.num_weights == model.parameters()["transformer"] == read_shape(tiny_bert).num_weights
    from safetensors.numpy import save_file

    prefixed = copy_of(tiny_bert, tmp_path)  # as BertForMaskedLM saves it, LayerNorms named as in older files
    weights = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in bert_state_dict(BERT_CONFIG, prefix="bert.").items()}
    assert "bert.embeddings.LayerNorm.gamma" in weights
    save_file({**weights, "cls.predictions.bias": np.zeros(200, np.float32)}, str(prefixed / "model.safetensors"))
    np.testing.assert_array_equal(load_pretrained(prefixed).trace_texts(TEXTS).hidden, trace.hidden)


def test_tokenize_validates_like_the_minilm_encoder(tiny_bert):
    model = load_pretrained(tiny_bert)
    with pytest.raises(ValueError, match="from 2 .the 2 special tokens count. to the model's 40"):
        model.tokenize(TEXTS, 1)
    with pytest.raises(ValueError, match="from 2"):
        model.tokenize(TEXTS, 41)
    with pytest.raises(TypeError, match="list of texts"):
        model.tokenize("one text", 8)
    with pytest.raises(ValueError, match="no texts"):
        model.tokenize([], 8)
    with pytest.raises(ValueError, match="pad_to"):
        model.tokenize(TEXTS, 8, pad_to=4)
    tokens = model.tokenize(TEXTS, 5)
    assert tokens.input_ids.shape == (4, 5) and all(t[0] == "[CLS]" and t[-1] == "[SEP]" for t in tokens.tokens)


def test_methods_of_the_other_modality_say_what_to_use(tiny_bert):
    model = load_pretrained(tiny_bert)
    with pytest.raises(ValueError, match="image models.*use tokenize / trace_texts"):
        model.preprocess([np.zeros((4, 4, 3), np.uint8)])
    with pytest.raises(ValueError, match="language-model head"):
        model.lens_logits(np.zeros((2, 32)))


def test_image_preprocessor_rescales_and_normalises_each_channel():
    pre = ImagePreprocessor(size=(2, 3), image_mean=(0.5, 0.25, 0.0), image_std=(0.5, 0.25, 1.0))
    image = np.arange(18, dtype=np.uint8).reshape(2, 3, 3) * 10
    pixels = pre([image, image])
    assert pixels.shape == (2, 3, 2, 3) and pixels.dtype == np.float32
    expected = (np.moveaxis(image, -1, 0) / 255 - np.array([0.5, 0.25, 0.0])[:, None, None]) / \
        np.array([0.5, 0.25, 1.0])[:, None, None]
    np.testing.assert_allclose(pixels[1], expected, atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        pre([image.astype(np.float32)])


# errors: each names the file and the fix

@pytest.mark.parametrize("name", ["bert-base-uncased", "google/vit-base-patch16-224"])
def test_a_hub_name_is_answered_pdeflow_never_downloads(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"never downloads.*huggingface-cli download {name} --local-dir"):
        load_pretrained(name)


def test_missing_folder_and_a_file_instead_of_a_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(tmp_path / "nowhere" / "model")
    (tmp_path / "file.json").write_text("{}")
    with pytest.raises(NotADirectoryError, match="is a file"):
        read_shape(tmp_path / "file.json")


def test_config_json_missing_broken_or_of_an_unsupported_type(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ValueError, match="no \"model_type\""):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match="'llama' is not supported; pdeflow loads bert, roberta, distilbert, vit, "
                                         "gpt2"):
        read_shape(tmp_path)
    assert SUPPORTED_MODEL_TYPES == ("bert", "roberta", "distilbert", "vit", "gpt2")
    (tmp_path / "config.json").write_text(json.dumps({**BERT_CONFIG, "num_attention_heads": 5}))
    with pytest.raises(ValueError, match="num_attention_heads=5 must divide hidden_size=32"):
        read_shape(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in BERT_CONFIG.items() if k != "hidden_size"}))
    with pytest.raises(ValueError, match="lacks 'hidden_size'"):
        read_shape(tmp_path)


@pytest.mark.parametrize("config, key", [
    ({**BERT_CONFIG, "hidden_act": "relu"}, "hidden_act='relu'"),
    ({**BERT_CONFIG, "position_embedding_type": "relative_key"}, "position_embedding_type='relative_key'"),
    ({**BERT_CONFIG, "add_cross_attention": True}, "add_cross_attention=True"),
    ({**BERT_CONFIG, "is_decoder": True}, "is_decoder=True"),
    ({**DISTILBERT_CONFIG, "activation": "relu"}, "activation='relu'"),
    ({**VIT_CONFIG, "qkv_bias": False}, "qkv_bias=False"),
    ({**VIT_CONFIG, "hidden_act": "gelu_new"}, "hidden_act='gelu_new'"),
    ({**GPT2_CONFIG, "scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx=True"),
    ({**GPT2_CONFIG, "scale_attn_weights": False}, "scale_attn_weights=False"),
    ({**GPT2_CONFIG, "activation_function": "relu"}, "activation_function='relu'"),
    ({**GPT2_CONFIG, "add_cross_attention": True}, "add_cross_attention=True"),
])
def test_options_pdeflow_does_not_compute_are_refused(tmp_path, config, key):
    with pytest.raises(ValueError, match=f"config.json: {key} is not supported .pdeflow implements"):
        load_pretrained(config_folder(tmp_path, config))


def test_a_model_beyond_8_gib_is_refused_before_loading(tmp_path):
    huge = {**BERT_CONFIG, "hidden_size": 8192, "num_attention_heads": 64, "intermediate_size": 32768,
            "num_hidden_layers": 48, "vocab_size": 50000}
    assert read_shape(config_folder(tmp_path, huge)).num_weights * 4 > 8 * 2**30
    with pytest.raises(ValueError, match=r"about 39.\d billion weights, 14\d.\d GiB in float32, beyond .* 8 GiB"):
        load_pretrained(tmp_path / "model")  # no weights there: the config alone is enough to refuse


def test_weights_missing_or_not_in_safetensors(tiny_bert, tmp_path):
    folder = copy_of(tiny_bert, tmp_path, skip=("model.safetensors",))
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing .found pytorch_model.bin.*reads weights "
                                                "only from safetensors.*save_pretrained.DIR, safe_serialization=True"):
        load_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="model.safetensors could not be read"):
        load_pretrained(folder)


def test_a_weight_missing_or_of_the_wrong_shape_is_named(tiny_bert, tmp_path):
    from safetensors.numpy import save_file

    folder = copy_of(tiny_bert, tmp_path)
    weights = bert_state_dict(BERT_CONFIG)
    del weights["encoder.layer.1.output.dense.weight"]
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(ValueError, match=r"weight 'encoder.layer.1.output.dense.weight' \(expected shape \(32, 64\)\) "
                                         "is missing"):
        load_pretrained(folder)
    save_file(bert_state_dict(BERT_CONFIG), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({**BERT_CONFIG, "intermediate_size": 48}))
    with pytest.raises(ValueError, match=r"'encoder.layer.0.intermediate.dense.weight' has shape \(64, 32\) but "
                                         r"config.json implies \(48, 32\)"):
        load_pretrained(folder)


def test_sharded_weights_need_every_shard(tiny_bert, tmp_path):
    from safetensors.numpy import save_file

    folder = copy_of(tiny_bert, tmp_path, skip=("model.safetensors",))
    weights = bert_state_dict(BERT_CONFIG)
    names = sorted(weights)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, keys in shards.items():
        save_file({k: weights[k] for k in keys}, str(folder / shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {k: shard for shard, keys in shards.items() for k in keys}}))
    sharded, single = load_pretrained(folder).params["params"], load_pretrained(tiny_bert).params["params"]
    assert sharded.keys() == single.keys()
    for a, b in zip(jax.tree_util.tree_leaves(sharded), jax.tree_util.tree_leaves(single)):
        np.testing.assert_array_equal(a, b)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="lists shards missing .*model-00002-of-00002.safetensors"):
        load_pretrained(folder)


def test_text_models_need_tokenizer_json_that_fits_the_vocabulary(tiny_bert, tmp_path):
    folder = copy_of(tiny_bert, tmp_path, skip=("tokenizer.json",))
    with pytest.raises(FileNotFoundError, match="tokenizer.json is missing.*save_pretrained"):
        load_pretrained(folder)
    shutil.copy(tiny_bert / "tokenizer.json", folder / "tokenizer.json")
    (folder / "config.json").write_text(json.dumps({**BERT_CONFIG, "vocab_size": 100}))
    with pytest.raises(ValueError, match="tokenizer.json has 200 tokens but .*vocab_size of 100"):
        load_pretrained(folder)


def test_vit_needs_its_preprocessor_config(tmp_path):
    folder = config_folder(tmp_path, VIT_CONFIG)
    with pytest.raises(FileNotFoundError, match="preprocessor_config.json is missing.*no fallback.*\"height\": 16, "
                                                "\"width\": 24"):
        load_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 16, "width": 16}}))
    with pytest.raises(ValueError, match="resizes images to 16x16 but config.json's ViT takes 16x24"):
        load_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"size": {"shortest_edge": 16}}))
    with pytest.raises(ValueError, match="shortest_edge resizing is not supported"):
        load_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"do_center_crop": True}))
    with pytest.raises(ValueError, match="do_center_crop=true is not supported"):
        load_pretrained(folder)


def test_bfloat16_weights_are_read_and_widened_to_float32(tiny_bert, tmp_path):
    """safetensors.numpy cannot hold bfloat16 (the dtype of many checkpoints); such files are read all the same."""
    import ml_dtypes

    folder = copy_of(tiny_bert, tmp_path, skip=("model.safetensors",))
    weights = {k: v.astype(ml_dtypes.bfloat16) for k, v in bert_state_dict(BERT_CONFIG).items()}
    header, offset, blobs = {"__metadata__": {"format": "pt"}}, 0, []
    for name, value in weights.items():
        blob = value.tobytes()
        header[name] = {"dtype": "BF16", "shape": list(value.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))
    params = load_pretrained(folder).params["params"]
    kernel = params["layer_1"]["intermediate"]["kernel"]
    assert kernel.dtype == np.float32
    np.testing.assert_array_equal(kernel, weights["encoder.layer.1.intermediate.dense.weight"].astype(np.float32).T)
