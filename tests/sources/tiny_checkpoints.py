"""Tiny random Hugging Face checkpoints of every supported type, saved with ``transformers`` (2 layers, 2 heads,
width 16) with a tiny ``tokenizer.json`` built with ``tokenizers`` (text) or a ``preprocessor_config.json``
(ViT), and the tiny inputs to trace them on: texts and PNG images of a few sizes. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = ("the a of to and in is it that for on with as was by this be at from are or an which can one".split()
         + "value list model token layer head text image file name data set call code time".split())
TEXTS = [f"{WORDS[i % 36]} {WORDS[(3 * i + 1) % 36]} {WORDS[(5 * i + 2) % 36]} {WORDS[(7 * i + 3) % 36]}"
         + " and more" * (i % 3) + "." for i in range(30)]  # 30 short texts of 5 to 9 words


def byte_level_alphabet() -> list[str]:
    from tokenizers import pre_tokenizers

    return sorted(pre_tokenizers.ByteLevel.alphabet())


def _tokenizer(model_type: str):
    """A tiny fast tokenizer of the model type's family (WordPiece for BERT, byte-level BPE for RoBERTa, GPT-2)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    if model_type in ("bert", "distilbert"):
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        letters = list("abcdefghijklmnopqrstuvwxyz")
        vocab = {t: i for i, t in enumerate(special + list(WORDS) + letters + [".", ","] + ["##" + c for c in letters])}
        tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
        tok.decoder = decoders.WordPiece()
        names = dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    else:
        special = ["<s>", "<pad>", "</s>", "<unk>"] if model_type == "roberta" else ["<|endoftext|>"]
        vocab = {t: i for i, t in enumerate(special + byte_level_alphabet())}
        tok = Tokenizer(models.BPE(vocab, [], unk_token=None))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        if model_type == "roberta":
            tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
            names = dict(bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>", cls_token="<s>",
                         sep_token="</s>", mask_token="<unk>")
        else:
            names = dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    return PreTrainedTokenizerFast(tokenizer_object=tok, **names), len(vocab)


def save_tiny_checkpoint(model_type: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny random ``model_type`` checkpoint (bert, roberta, distilbert, vit, gpt2) into ``folder``."""
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    folder = Path(folder)
    width = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)
    if model_type == "vit":
        model = tf.ViTModel(tf.ViTConfig(image_size=16, patch_size=8, num_channels=3, **width),
                            add_pooling_layer=False)
        tf.ViTImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    else:
        tokenizer, vocab = _tokenizer(model_type)
        if model_type == "bert":
            model = tf.BertModel(tf.BertConfig(vocab_size=vocab, max_position_embeddings=64, **width),
                                 add_pooling_layer=False)
        elif model_type == "roberta":
            model = tf.RobertaModel(tf.RobertaConfig(vocab_size=vocab, max_position_embeddings=66, pad_token_id=1,
                                                     bos_token_id=0, eos_token_id=2, **width), add_pooling_layer=False)
        elif model_type == "distilbert":
            model = tf.DistilBertModel(tf.DistilBertConfig(vocab_size=vocab, max_position_embeddings=64, dim=16,
                                                           n_layers=2, n_heads=2, hidden_dim=32))
        elif model_type == "gpt2":
            model = tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=vocab, n_positions=64, n_embd=16, n_layer=2, n_head=2,
                                                     bos_token_id=0, eos_token_id=0))
        else:
            raise ValueError(f"no tiny checkpoint for {model_type!r}")
        tokenizer.save_pretrained(folder)
    model.eval()
    model.save_pretrained(folder)
    return folder


def write_texts(path: Path, texts=TEXTS) -> Path:
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


def write_images(folder: Path, count: int = 30, sizes=((16, 16), (20, 12), (9, 14)), seed: int = 0) -> Path:
    """``count`` random PNG images cycling through ``sizes`` (mixed sizes, as users' folders are)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"image_{i:02d}.png")
    return folder
