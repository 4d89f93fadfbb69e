"""Checkpoints of every supported type against the reference implementation: tiny randomly initialised Hugging
Face models saved with ``save_pretrained`` and loaded by `pdeflow.models.checkpoints.load_pretrained` give the same
hidden states, attention maps and (GPT-2) logits on ragged, padded batches."""

import dataclasses
import json

import jax
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from pdeflow.models.checkpoints import load_pretrained  # noqa: E402
from tests.models.tiny_checkpoints import TEXTS, byte_level_tokenizer, wordpiece_tokenizer  # noqa: E402

TOLERANCE = 1e-4
SHAPE = {"num_hidden_layers": 2, "num_attention_heads": 4, "hidden_size": 32, "intermediate_size": 64}


def perturbed(model, seed: int):
    """``model`` with every weight moved by N(0, 0.2²): far from the init's zero biases, unit gains and small
    weights, so that every parameter shows in the outputs."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def save(model, folder, tokenizer=None):
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save(str(folder / "tokenizer.json"))
    reference = type(model).from_pretrained(folder, attn_implementation="eager").eval()
    return folder, reference


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """model_type -> (checkpoint folder, the Hugging Face model read back from it)."""
    t = transformers
    root = tmp_path_factory.mktemp("checkpoints")
    made = {}
    wordpiece = wordpiece_tokenizer(200)
    made["bert"] = save(perturbed(t.BertModel(t.BertConfig(vocab_size=200, max_position_embeddings=40, **SHAPE)),
                                  1), root / "bert", wordpiece)
    made["roberta"] = save(perturbed(t.RobertaModel(t.RobertaConfig(
        vocab_size=300, max_position_embeddings=42, type_vocab_size=1, pad_token_id=1, **SHAPE)), 2),
        root / "roberta", byte_level_tokenizer(["<s>", "<pad>", "</s>", "<unk>"], roberta=True))
    made["distilbert"] = save(perturbed(t.DistilBertModel(t.DistilBertConfig(
        vocab_size=200, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=40)), 3),
        root / "distilbert", wordpiece)
    made["gpt2"] = save(perturbed(t.GPT2LMHeadModel(t.GPT2Config(
        vocab_size=300, n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=0, eos_token_id=0)), 4),
        root / "gpt2", byte_level_tokenizer(["<|endoftext|>"], roberta=False))
    made["gpt2_untied"] = save(perturbed(t.GPT2LMHeadModel(t.GPT2Config(
        vocab_size=300, n_embd=32, n_layer=1, n_head=2, n_positions=32, n_inner=48, activation_function="gelu",
        tie_word_embeddings=False, bos_token_id=0, eos_token_id=0)), 6), root / "gpt2_untied",
        byte_level_tokenizer(["<|endoftext|>"], roberta=False))
    vit = perturbed(t.ViTModel(t.ViTConfig(image_size=16, patch_size=4, num_channels=3, **SHAPE)), 5)
    made["vit"] = save(vit, root / "vit")
    t.ViTImageProcessorPil(size={"height": 16, "width": 16}, resample=3, image_mean=[0.485, 0.456, 0.406],
                           image_std=[0.229, 0.224, 0.225]).save_pretrained(root / "vit")
    return made


@pytest.fixture(scope="module")
def loaded(folders):
    """model_type -> the pdeflow model loaded from the folder."""
    return {model_type: load_pretrained(folder) for model_type, (folder, _) in folders.items()}


def reference_outputs(reference, **inputs):
    """Hugging Face's hidden states (L+1) and attention maps (L) as numpy, and the last block's own output (before
    any final LayerNorm), recorded by a hook."""
    last = {}
    blocks = {"gpt2": lambda: reference.transformer.h, "distilbert": lambda: reference.transformer.layer,
              "vit": lambda: reference.layers}.get(reference.config.model_type, lambda: reference.encoder.layer)()
    hook = blocks[-1].register_forward_hook(lambda m, i, o: last.setdefault("h", o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        out = reference(**{k: torch.as_tensor(v) for k, v in inputs.items()}, output_hidden_states=True,
                        output_attentions=True)
    hook.remove()
    hidden = [h.numpy() for h in out.hidden_states]
    return hidden, [a.numpy() for a in out.attentions], last["h"].numpy(), out


def max_differences(trace, hidden, attention, mask):
    """Max |difference| of the hidden states over real tokens and of the maps over real query rows and keys."""
    mask = np.asarray(mask, bool)
    h = max(float(np.abs(np.asarray(trace.hidden[l]) - hidden[l])[mask].max()) for l in range(len(hidden)))
    real = mask[:, None, :, None] & mask[:, None, None, :]
    a = max(float(np.abs(np.asarray(trace.attention[l]) - attention[l])[np.broadcast_to(real, attention[l].shape)]
                  .max()) for l in range(len(attention)))
    return h, a


def check_block_weights(model, trace, eps):
    """The maps each `BlockWeights` gives from the block's input stream are the traced maps."""
    for l, w in enumerate(model.block_weights()):
        x = np.asarray(trace.hidden[l], np.float64)
        if w.input_norm == "layer":
            x = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)
        q = np.einsum("bnd,dhk->bhnk", x, w.query) + w.query_bias[None, :, None]
        k = np.einsum("bnd,dhk->bhnk", x, w.key)
        logits = q @ k.transpose(0, 1, 3, 2) / np.sqrt(w.head_dim)
        allowed = np.asarray(trace.mask, bool)[:, None, None, :]
        if model.causal:
            allowed = allowed & np.tril(np.ones(logits.shape[-2:], bool))
        logits = np.where(allowed, logits, -np.inf)
        maps = np.exp(logits - logits.max(-1, keepdims=True))
        maps /= maps.sum(-1, keepdims=True)
        rows = np.asarray(trace.mask, bool)[:, None, :, None] & allowed
        assert np.abs(maps - np.asarray(trace.attention[l]))[np.broadcast_to(rows, maps.shape)].max() < 1e-4


def parameter_count(module) -> int:
    return sum(p.numel() for n, p in module.named_parameters() if "pooler" not in n)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "distilbert"])
def test_encoders_match_reference_on_a_ragged_padded_batch(folders, loaded, model_type):
    folder, reference = folders[model_type]
    model = loaded[model_type]
    assert (model.model_type, model.modality, model.causal, model.block_input_norm) == \
        (model_type, "text", False, "none")
    assert (model.num_layers, model.num_heads, model.model_dim, model.head_dim, model.grid, model.prefix_tokens) == \
        (2, 4, 32, 8, (), 0)
    tokens = model.tokenize(TEXTS, 24, pad_to=26)
    lengths = tokens.mask.sum(1)
    assert len(set(lengths.tolist())) >= 3 and lengths.max() == 24 and tokens.input_ids.shape == (4, 26)  # ragged
    assert (tokens.input_ids[~tokens.mask] == model.pad_token_id).all()
    if model_type == "roberta":  # real tokens take positions 2, 3, … (after padding_idx 1), so 40 of 42 are usable
        assert model.max_tokens == 40 and tokens.tokens[0][0] == "<s>" and tokens.tokens[0][-1] == "</s>"
    if model_type == "bert":  # both token types, so that the token-type embedding shows
        rng = np.random.default_rng(0)
        tokens = dataclasses.replace(tokens, token_type_ids=(rng.integers(0, 2, tokens.mask.shape) * tokens.mask)
                                     .astype(np.int32))
    inputs = {"input_ids": tokens.input_ids.astype(np.int64), "attention_mask": tokens.mask.astype(np.int64)}
    if model_type == "bert":
        inputs["token_type_ids"] = tokens.token_type_ids.astype(np.int64)
    hidden, attention, _, _ = reference_outputs(reference, **inputs)
    trace = model.trace_tokens(tokens, batch_size=3)  # two batches, the last padded
    assert trace.hidden.shape == (3, 4, 26, 32) and trace.attention.shape == (2, 4, 4, 26, 26)
    h, a = max_differences(trace, hidden, attention, tokens.mask)
    print(f"{model_type}: hidden {h:.2e}, attention {a:.2e}")
    assert h <= TOLERANCE and a <= TOLERANCE
    check_block_weights(model, trace, 1e-12)
    assert model.parameters() == {"transformer": parameter_count(reference),
                                  "transformer_blocks": sum(p.numel() for n, p in reference.named_parameters()
                                                            if ".layer." in n)}


def test_gpt2_matches_reference_hidden_states_maps_and_logits(folders, loaded):
    folder, reference = folders["gpt2"]
    model = loaded["gpt2"]
    assert (model.model_type, model.causal, model.block_input_norm, model.max_tokens) == ("gpt2", True, "layer", 32)
    tokens = model.tokenize(TEXTS, 20)
    assert tokens.tokens[0] == ("H", "i", ".")  # no special tokens
    hidden, attention, last, out = reference_outputs(
        reference, input_ids=tokens.input_ids.astype(np.int64), attention_mask=tokens.mask.astype(np.int64))
    trace = model.trace_tokens(tokens)
    # Hugging Face's last hidden state is after ln_f; pdeflow keeps the residual stream (the block's output)
    h, a = max_differences(trace, hidden[:-1] + [last], attention, tokens.mask)
    logits = model.logits(tokens, batch_size=3)
    reference_logits = out.logits.numpy()
    lg = float(np.abs(logits - reference_logits)[tokens.mask].max())
    lens = np.asarray(model.lens_logits(trace.hidden[-1]))
    final = float(np.abs(np.asarray(model.lens_readout()[0](trace.hidden[-1])) - hidden[-1])[tokens.mask].max())
    print(f"gpt2: hidden {h:.2e}, attention {a:.2e}, logits {lg:.2e}, ln_f {final:.2e}")
    assert max(h, a, lg, final) <= TOLERANCE
    np.testing.assert_allclose(lens[tokens.mask], logits[tokens.mask], atol=1e-4)
    assert model.lens_logits(trace.hidden[1]).shape == (4, tokens.mask.shape[1], 300)
    check_block_weights(model, trace, 1e-5)
    assert model.parameters()["transformer"] == reference.num_parameters()  # the tied head counted once


def test_gpt2_with_its_own_lm_head_and_exact_gelu_matches_reference_logits(folders, loaded):
    folder, reference = folders["gpt2_untied"]
    model = loaded["gpt2_untied"]
    assert "unembedding" in model.params["params"] and not model.architecture.tanh_gelu
    assert not np.allclose(model.lens_readout()[1], model.params["params"]["token_embedding"]["embedding"].T)
    tokens = model.tokenize(TEXTS, 20)
    with torch.no_grad():
        expected = reference(input_ids=torch.as_tensor(tokens.input_ids.astype(np.int64)),
                             attention_mask=torch.as_tensor(tokens.mask.astype(np.int64))).logits.numpy()
    difference = float(np.abs(model.logits(tokens) - expected)[tokens.mask].max())
    print(f"gpt2 (untied head, exact gelu, n_inner 48): logits {difference:.2e}")
    assert difference <= TOLERANCE
    assert model.parameters()["transformer"] == reference.num_parameters()


def test_vit_preprocessing_and_trace_match_reference(folders, loaded):
    folder, reference = folders["vit"]
    model = loaded["vit"]
    assert (model.modality, model.grid, model.prefix_tokens, model.max_tokens, model.block_input_norm) == \
        ("image", (4, 4), 1, 17, "layer")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((20, 24, 3), (16, 16, 3), (33, 17, 3))]
    pixels = model.preprocess(images)
    processor = transformers.ViTImageProcessorPil.from_pretrained(folder)
    expected = processor(images, return_tensors="np")["pixel_values"]
    assert pixels.shape == (3, 3, 16, 16) and pixels.dtype == np.float32
    np.testing.assert_allclose(pixels, expected, atol=1e-5)
    hidden, attention, _, _ = reference_outputs(reference, pixel_values=pixels)
    trace = model.trace_images(images, batch_size=2)
    h, a = max_differences(trace, hidden, attention, np.ones((3, 17), bool))
    print(f"vit: hidden {h:.2e}, attention {a:.2e}")
    assert h <= TOLERANCE and a <= TOLERANCE
    check_block_weights(model, trace, 1e-12)
    assert model.parameters()["transformer"] == parameter_count(reference)


def test_sharded_and_prefixed_checkpoints_load_the_same_weights(folders, loaded, tmp_path):
    """A BertForMaskedLM (weights under ``bert.``) saved in shards with an index loads as the BertModel did."""
    folder, reference = folders["bert"]
    head_model = transformers.BertForMaskedLM(reference.config)
    head_model.bert.load_state_dict(reference.state_dict(), strict=False)
    head_model.save_pretrained(tmp_path, safe_serialization=True, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file() and not (tmp_path / "model.safetensors").exists()
    assert any(k.startswith("bert.") for k in json.loads((tmp_path / "model.safetensors.index.json").read_text())
               ["weight_map"])
    (tmp_path / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    sharded = load_pretrained(tmp_path)
    for name, value in loaded["bert"].params["params"].items():
        assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, value, sharded.params["params"][name]))
    assert sharded.params["params"].keys() == loaded["bert"].params["params"].keys()
