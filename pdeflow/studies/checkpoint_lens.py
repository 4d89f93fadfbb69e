"""The entropy profile of a user's GPT-2-format checkpoint on the user's texts
(``pdeflow lens --model FOLDER --texts FILE``).

The logit lens reads every layer's hidden state through the model's own final LayerNorm and LM head
(`PretrainedModel.lens_logits`), giving at every real position a distribution over the next token; its Shannon
and Rényi entropies (bits), averaged over every real position of every text, are the profile (layer 0 is the
embedding output, layer L the last block's, whose lens is the model's own prediction). Beside it: the model's
next-token loss and top-1 accuracy on the texts, and how closely the last layer's lens reproduces the model's
own logits (a check that the lens is the model's read-out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pdeflow.data.batches import fixed_size_batches
from pdeflow.information.lens import DEFAULT_ALPHAS, entropy_profile
from pdeflow.models.tokenized import Tokenized
from pdeflow.store import result_folder, save_figure

LENS_MODEL_TYPES = ("gpt2",)


def _key(alpha: float) -> str:
    return "inf" if math.isinf(alpha) else str(float(alpha))


def lens_profile(model, texts: Sequence[str], max_tokens: int = 128, alphas: Sequence[float] = DEFAULT_ALPHAS,
                 batch_size: int = 16) -> dict:
    """The logit-lens entropy profile of ``model`` (a GPT-2-format `PretrainedModel`: ``tokenize``,
    ``trace_tokens``, ``lens_readout``, ``lens_logits``, ``logits``) on ``texts``, each cut to ``max_tokens``
    tokens (`pdeflow.information.lens.entropy_profile` through the model's own read-out), ``batch_size`` texts
    at a time.

    Returns:
        ``{"alphas", "profile": {alpha: (L+1,) mean bits over real positions}, "shannon_quartiles": {"q25",
        "q75": (L+1,) over texts}, "next_token": {"bits_per_token", "accuracy", "positions"}, "tokens",
        "truncated", "lens_final_layer_max_abs_difference"}`` (lists, JSON-ready).
    """
    texts = list(texts)
    alphas = tuple(float(a) for a in alphas) + (() if 1.0 in alphas else (1.0,))  # Shannon always
    if not texts:
        raise ValueError("no texts given; pass at least one text.")
    max_tokens = min(int(max_tokens), int(model.max_tokens))
    norm, unembedding, bias = model.lens_readout()
    truncated = int((model.tokenize(texts, model.max_tokens).mask.sum(1) > max_tokens).sum())
    tokens = model.tokenize(texts, max_tokens)  # one width (the longest text) and fixed-size batches: one compile
    ids, types, masks = (np.asarray(x) for x in (tokens.input_ids, tokens.token_type_ids, tokens.mask))
    sums = np.zeros((len(alphas), model.num_layers + 1))
    per_text, loss_bits, correct, predicted, worst = [], 0.0, 0, 0, 0.0
    for index, keep in fixed_size_batches(len(texts), min(batch_size, len(texts))):
        batch, mask = Tokenized(ids[index], types[index], masks[index], ()), masks[index][:keep]
        hidden = np.asarray(model.trace_tokens(batch, batch_size).hidden)  # (L+1, b, N, d)
        entropy = np.asarray(entropy_profile(hidden, masks[index], unembedding, norm, bias, alphas).entropy)
        entropy = np.where(mask, entropy[:, :, :keep], 0.0)  # (A, L+1, keep, N), padding counted as 0
        sums += entropy.sum((-2, -1))
        per_text.append(entropy[alphas.index(1.0)].sum(-1).T / mask.sum(-1)[:, None])  # (keep, L+1)
        logits = np.asarray(model.logits(batch, batch_size), np.float64)[:keep]  # (keep, N, V)
        lens = np.asarray(model.lens_logits(hidden[-1]))[:keep]
        worst = max(worst, float(np.abs(lens - logits)[mask].max()))
        # next-token loss at every position whose next token is real
        log_p = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
        target, has_next = ids[index][:keep, 1:], mask[:, 1:] & mask[:, :-1]
        picked = np.take_along_axis(log_p[:, :-1], target[..., None], -1)[..., 0]
        loss_bits += float(-(picked[has_next]).sum() / math.log(2))
        correct += int((log_p[:, :-1].argmax(-1) == target)[has_next].sum())
        predicted += int(has_next.sum())
    positions = int(masks.sum())
    profile = sums / positions
    shannon = np.concatenate(per_text)  # (texts, L+1)
    return {"alphas": [_key(a) for a in alphas],
            "profile": {_key(a): profile[i].tolist() for i, a in enumerate(alphas)},
            "shannon_quartiles": {"q25": np.percentile(shannon, 25, axis=0).tolist(),
                                  "q75": np.percentile(shannon, 75, axis=0).tolist()},
            "tokens": positions, "max_tokens": max_tokens, "truncated": truncated,
            "next_token": {"bits_per_token": loss_bits / predicted if predicted else None,
                           "accuracy": correct / predicted if predicted else None, "positions": predicted},
            "lens_final_layer_max_abs_difference": worst}


def checkpoint_lens(folder: str | Path, texts: str | Path | Sequence[str], max_tokens: int = 128,
                    alphas: Sequence[float] = DEFAULT_ALPHAS, progress: bool = False) -> dict:
    """`lens_profile` of the GPT-2-format checkpoint ``folder`` on ``texts`` (a file of one text per line or
    JSON lines with a "text" field, or the texts), with what the report records about both. The folder's type
    and the texts are checked before the weights are loaded."""
    from pdeflow.data.user_inputs import read_texts
    from pdeflow.models.checkpoints import load_pretrained, read_shape
    from pdeflow.sources.checkpoint import check_model_name

    check_model_name(str(folder))
    info = read_shape(Path(folder))
    if info.model_type not in LENS_MODEL_TYPES:
        raise ValueError(f"{folder} is a {info.model_type} model; the lens reads a language model's next-token "
                         f"head, which pdeflow reads from {', '.join(LENS_MODEL_TYPES)} checkpoints only.")
    path = None if isinstance(texts, (list, tuple)) else Path(texts)
    texts = list(texts) if path is None else read_texts(path)
    model = load_pretrained(Path(folder))
    result = lens_profile(model, texts, max_tokens, alphas)
    return {"model": {"folder": str(folder), "model_type": info.model_type, "num_layers": info.num_layers,
                      "parameters": model.parameters()},
            "texts": {"file": None if path is None else str(path), "count": len(texts)}, **result}


def checkpoint_lens_summary(result: dict) -> str:
    """Markdown: the profile per layer and order, and the model's own next-token figures."""
    model, texts, nxt = result["model"], result["texts"], result["next_token"]
    source = texts["file"] or "texts given in Python"
    alphas = result["alphas"]
    lines = [f"# Entropy lens: {model['model_type']} checkpoint {model['folder']}", "",
             f"{texts['count']} texts from {source}, {result['tokens']} real positions (cut to {result['max_tokens']} "
             f"tokens; {result['truncated']} texts were longer). Entropy in bits of the next-token distribution read "
             "through the model's own final LayerNorm and LM head, mean over every real position.", "",
             "| layer | " + " | ".join(f"Rényi α = {a}" if a != "1.0" else "Shannon" for a in alphas) + " |",
             "|---|" + "---|" * len(alphas)]
    for layer in range(len(result["profile"][alphas[0]])):
        lines.append(f"| {layer} | " + " | ".join(f"{result['profile'][a][layer]:.3f}" for a in alphas) + " |")
    if nxt["positions"]:
        lines += ["", f"The model's own next-token loss on the texts: {nxt['bits_per_token']:.3f} bits/token, top-1 "
                      f"accuracy {100 * nxt['accuracy']:.1f} % ({nxt['positions']} positions); the last layer's lens "
                      f"matches its logits to {result['lens_final_layer_max_abs_difference']:.1e}."]
    return "\n".join(lines) + "\n"


def write_checkpoint_lens_figure(result: dict, folder: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for alpha, values in result["profile"].items():
        ax.plot(range(len(values)), values, marker="o", label="Shannon" if alpha == "1.0" else f"Rényi α = {alpha}")
    q = result["shannon_quartiles"]
    ax.fill_between(range(len(q["q25"])), q["q25"], q["q75"], alpha=0.15, label="Shannon, quartiles over texts")
    ax.set(xlabel="layer (0: embeddings)", ylabel="entropy of the lens (bits)",
           title=f"{result['model']['model_type']}: logit-lens entropy profile")
    ax.legend(fontsize=8)
    return save_figure(fig, folder, "profile.png")


def write_checkpoint_lens_report(result: dict, out: str | Path, overwrite: bool = False,
                                 figures: bool = True) -> Path:
    """``results.json``, ``summary.md`` and ``profile.png`` into ``out``, atomically (as every study)."""
    with result_folder(out, overwrite) as folder:
        folder.write_json("results.json", result)
        folder.write_text("summary.md", checkpoint_lens_summary(result))
        if figures:
            write_checkpoint_lens_figure(result, folder.path)
    return Path(out)
