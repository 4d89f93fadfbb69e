"""Writing the studies' results: ``results.json``, ``summary.md`` and figures, into a folder written as every result
folder is (`pdeflow.store.result_folder`: atomically)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pdeflow.data.pydoc_corpus import TEXT_KINDS
from pdeflow.store import result_folder, save_figure


def _public(result: dict) -> dict:
    return {k: v for k, v in result.items() if not k.startswith("_")}


def _write_study(result: dict, out, overwrite: bool, summary, figures) -> Path:
    """``results.json`` (the result without its ``_``-prefixed in-memory parts), ``summary.md`` and, with
    ``figures(result, folder)``, the figures, into ``out`` atomically."""
    with result_folder(out, overwrite) as folder:
        folder.write_json("results.json", _public(result))
        folder.write_text("summary.md", summary(result))
        if figures is not None:
            figures(result, folder.path)
    return Path(out)


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def lens_summary(result: dict) -> str:
    """Markdown tables of the entropy-lens study (either protocol)."""
    if result.get("protocol") == "entropy-lens":
        return entropy_lens_summary(result)
    family, prompts = result["family"], result["prompts"]
    per_kind = ", ".join(f"{k} {v}" for k, v in prompts["per_kind"].items())
    lines = ["# Entropy lens: what profiles tell apart", "",
             f"{prompts['count']} held-out prompts of {prompts['length']} characters from "
             f"{prompts['paragraphs']} paragraphs ({per_kind}); "
             f"k-NN with k = {family['k']}, {family['folds']}-fold cross-validation grouped by paragraph.", "",
             "| model | held-out bits/char |", "|---|---|"]
    lines += [f"| {m['name']} | {m['held_out_bits_per_char']:.3f} |" for m in result["models"]]
    seen, unseen = family["seen_depths"], family["unseen_depth"]
    lines += ["", f"## Family ({' vs '.join(family['classes'])})", "",
              "| setting | profile | final-layer entropy only | chance |", "|---|---|---|---|",
              f"| all depths seen | {_pct(seen['profile']['accuracy'])} | "
              f"{_pct(seen['final_entropy_only']['accuracy'])} | {_pct(seen['profile']['chance'])} |"]
    lines += [f"| depth {d} unseen | {_pct(u['profile'])} | {_pct(u['final_entropy_only'])} | {_pct(u['chance'])} |"
              for d, u in unseen.items()]
    mean = family["unseen_depth_mean"]
    lines += [f"| mean over unseen depths | {_pct(mean['profile'])} | {_pct(mean['final_entropy_only'])} | "
              f"{_pct(mean['chance'])} |"]
    lines += ["", f"## Text kind ({', '.join(TEXT_KINDS)})", "",
              "| model | accuracy (profile) | balanced | final-layer entropy only | balanced | chance (majority) |",
              "|---|---|---|---|---|---|"]
    for name, r in result["text_kind"].items():
        p, f = r["profile"], r["final_entropy_only"]
        lines.append(f"| {name} | {_pct(p['accuracy'])} | {_pct(p['balanced_accuracy'])} | {_pct(f['accuracy'])} | "
                     f"{_pct(f['balanced_accuracy'])} | {_pct(p['chance'])} |")
    lines += ["", "## Is the next character predicted correctly? (ROC AUC per token)", "",
              "| model | model's accuracy | AUC (profile) | AUC (final-layer entropy only) | chance |",
              "|---|---|---|---|---|"]
    for name, r in result["correctness"].items():
        lines.append(f"| {name} | {_pct(r['accuracy_of_model'])} | {r['profile']['auc']:.3f} | "
                     f"{r['final_entropy_only']['auc']:.3f} | 0.500 |")
    lines += ["", "## Rényi against Shannon (Spearman ρ over prompts × layers, all models)", "",
              "| α | " + " | ".join(result["renyi_vs_shannon_spearman"]) + " |",
              "|---|" + "---|" * len(result["renyi_vs_shannon_spearman"]),
              "| ρ | " + " | ".join(f"{v:.3f}" for v in result["renyi_vs_shannon_spearman"].values()) + " |", ""]
    return "\n".join(lines)


def write_lens_figures(result: dict, folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = {p.name: p for p in result["_profiles"]}
    alphas = [str(a) for a in result["config"]["alphas"]]
    models = result["models"]
    families = sorted({m["family"] for m in models})
    depths = sorted({m["depth"] for m in models})
    colours = dict(zip(families, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
    styles = dict(zip(depths, ("-", "--", ":", "-.")))
    written = []

    fig, axes = plt.subplots(1, 2 if "minilm" in profiles else 1, figsize=(11, 4.2), squeeze=False)
    ax = axes[0, 0]
    for m in models:
        summary = result["profiles"][m["name"]]["1.0"]
        depth = np.linspace(0, 1, len(summary["mean"]))
        ax.plot(depth, summary["mean"], styles[m["depth"]], color=colours[m["family"]], label=m["name"])
        ax.fill_between(depth, summary["q25"], summary["q75"], color=colours[m["family"]], alpha=0.08)
    ax.set(xlabel="normalised depth l / L", ylabel="Shannon entropy of the lens (bits)",
           title="character LMs: profile per family (band: quartiles over prompts)")
    ax.legend(fontsize=7, ncol=2)
    if "minilm" in profiles:
        ax = axes[0, 1]
        minilm = profiles["minilm"].per_prompt()[alphas.index("1.0")]  # (L+1, P)
        depth = np.linspace(0, 1, minilm.shape[0])
        kinds = result["_prompts"].kind
        for i, kind in enumerate(TEXT_KINDS):
            ax.plot(depth, minilm[:, kinds == i].mean(-1), label=kind)
        ax.set(xlabel="normalised depth l / L", ylabel="bits",
               title="MiniLM (tied word embeddings as unembedding), per text kind")
        ax.legend(fontsize=8)
    written.append(save_figure(fig, folder, "profiles.png"))

    lms = [profiles[m["name"]] for m in models]
    shannon = alphas.index("1.0")
    others = [i for i in range(len(alphas)) if i != shannon]
    fig, axes = plt.subplots(1, len(others), figsize=(3.6 * len(others), 3.4), squeeze=False)
    for ax, i in zip(axes[0], others):
        for p in lms:
            per_prompt = p.per_prompt()
            ax.scatter(per_prompt[shannon].ravel(), per_prompt[i].ravel(), s=2, alpha=0.15,
                       color=colours[p.name.rsplit("-L", 1)[0]])
        top = max(float(np.nanmax(p.per_prompt())) for p in lms)
        ax.plot([0, top], [0, top], "k--", lw=0.8)
        rho = result["renyi_vs_shannon_spearman"][alphas[i]]
        ax.set(xlabel="Shannon (bits)", ylabel=f"Rényi α = {alphas[i]} (bits)", title=f"Spearman ρ = {rho:.3f}")
    fig.suptitle("Rényi against Shannon, per prompt and layer (colour: family)", fontsize=10)
    written.append(save_figure(fig, folder, "renyi_vs_shannon.png"))

    fig, axes = plt.subplots(1, len(families), figsize=(5 * len(families), 3.8), squeeze=False)
    kinds = result["_prompts"].kind
    for ax, family in zip(axes[0], families):
        deepest = max((m for m in models if m["family"] == family), key=lambda m: m["depth"])
        per_prompt = profiles[deepest["name"]].per_prompt()[shannon]
        depth = np.linspace(0, 1, per_prompt.shape[0])
        for i, kind in enumerate(TEXT_KINDS):
            ax.plot(depth, per_prompt[:, kinds == i].mean(-1), label=kind)
        ax.set(xlabel="normalised depth l / L", ylabel="Shannon entropy (bits)",
               title=f"{deepest['name']}: profile per text kind")
        ax.legend(fontsize=8)
    written.append(save_figure(fig, folder, "profiles_by_kind.png"))
    return written


def write_lens_report(result: dict, out: str | Path, overwrite: bool = False, figures: bool = True) -> Path:
    """``results.json``, ``summary.md`` and (optionally) ``profiles.png``, ``renyi_vs_shannon.png``,
    ``profiles_by_kind.png``."""
    if result.get("protocol") == "entropy-lens":
        return _write_study(result, out, overwrite, lens_summary, write_entropy_lens_figures if figures else None)
    return _write_study(result, out, overwrite, lens_summary, write_lens_figures if figures else None)


def _p(value: float) -> str:
    return "—" if value != value else (f"{value:.1e}" if value < 0.001 else f"{value:.3f}")


def entropy_lens_summary(result: dict) -> str:
    """Markdown tables of the Entropy-Lens protocol: per model and Rényi order, AUC of the text kind from the
    generated-token profile and from the final layer alone, the dummy's AUC and the p-values."""
    c, prompts = result["config"], result["prompts"]
    per_kind = ", ".join(f"{k} {v}" for k, v in prompts["per_kind"].items())
    decoding = "greedy" if c["temperature"] == 0 else f"sampled at temperature {c['temperature']:g}"
    lines = ["# Entropy lens, Entropy-Lens's protocol: text kind from the profile of generated tokens", "",
             f"{prompts['count']} prompts ({per_kind}): {prompts['stories']} stories x 4 cue kinds x 4 forms "
             f"({', '.join(prompts['forms'])}); story and cue {prompts['piece_length']} characters each, cues from "
             f"{prompts['cue_paragraphs']} held-out paragraphs. {prompts['generated_tokens']} tokens generated "
             f"({decoding}), lens entropies of every block at the last position averaged over them in "
             f"{c['windows']} window(s). k-NN k = 29 (Euclidean, raw features), stratified 10-fold ROC AUC (macro "
             "one-vs-rest) against a stratified dummy; p: paired t-test over the folds. Anchor folds: "
             "stratified, not grouped (as its code); grouped: folds also grouped by cue paragraph.", ""]
    for folds in ("anchor_folds", "grouped_folds"):
        lines += [f"## {'Anchor folds' if folds == 'anchor_folds' else 'Folds grouped by cue paragraph'}", "",
                  "| model | α | AUC (profile) | AUC (final-layer entropy) | AUC (dummy) | p (profile vs dummy) | "
                  "p (final vs dummy) | p (profile vs final) |", "|---|---|---|---|---|---|---|---|"]
        for name, by_alpha in result["identification"].items():
            for alpha, row in by_alpha.items():
                r = row[folds]
                p, f = r["profile"], r["final_entropy_only"]
                lines.append(f"| {name} | {alpha} | {p['auc']:.3f} | {f['auc']:.3f} | {p['dummy_auc']:.3f} | "
                             f"{_p(p['p_value'])} | {_p(f['p_value'])} | {_p(r['p_profile_vs_final'])} |")
        lines.append("")
    lines += ["## Each form on its own (Shannon, anchor folds)", "",
              "| model | " + " | ".join(f"{f}: profile / final" for f in prompts["forms"]) + " | dummy |",
              "|---|" + "---|" * (len(prompts["forms"]) + 1)]
    for name, by_alpha in result["identification"].items():
        forms = by_alpha["1.0"]["by_form"]
        cells = [f"{forms[f]['profile']:.3f} / {forms[f]['final_entropy_only']:.3f}" for f in prompts["forms"]]
        dummy = np.mean([forms[f]["dummy"] for f in prompts["forms"]])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {dummy:.3f} |")
    lines += ["", f"## Examples ({prompts['example_model']})", ""]
    lines += [f"- {e['form']} / {e['kind']}: `{e['prompt']!r}` → `{e['generated']!r}`" for e in prompts["examples"]]
    return "\n".join(lines + [""])


def write_entropy_lens_figures(result: dict, folder: Path) -> list[str]:
    """``entropy_lens_auc.png``: AUC against the Rényi order per model (profile, final layer, dummy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["identification"])
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 3.2), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], names):
        by_alpha = result["identification"][name]
        ticks = list(range(len(by_alpha)))
        for key, style, label in (("profile", "o-", "profile"), ("final_entropy_only", "s--", "final layer")):
            ax.plot(ticks, [r["anchor_folds"][key]["auc"] for r in by_alpha.values()], style, label=label)
        ax.plot(ticks, [r["anchor_folds"]["profile"]["dummy_auc"] for r in by_alpha.values()], "k:", label="dummy")
        ax.set(xticks=ticks, xticklabels=list(by_alpha), xlabel="Rényi α", title=name)
    axes[0, 0].set_ylabel("ROC AUC, text kind (macro OvR)")
    axes[0, 0].legend(fontsize=7)
    return [save_figure(fig, folder, "entropy_lens_auc.png")]


def info_summary(result: dict) -> str:
    """Markdown table of the information plane: per epoch, per layer, both estimators."""
    c = result["config"]
    lines = ["# Information plane of the ViT on digits", "",
             f"{result['samples']} held-out test digits; each layer's flattened stream reduced to its top "
             f"{c['components']} principal components; binning with {c['bins']} bins per component, KSG / Ross "
             f"with k = {c['k']}. Ceilings: I(X;T) <= log2 n = {result['image_entropy_bits']:.2f} bits, "
             f"I(T;Y) <= H(Y) = {result['label_entropy_bits']:.2f} bits. \"shuffled\" is I(T;Y) against permuted "
             "labels: the estimator's bias (the true value is 0).", "",
             "| epoch | test accuracy | layer | I(X;T) binning | I(T;Y) binning | shuffled | I(X;T) KSG | I(T;Y) KSG | "
             "shuffled |", "|---|---|---|---|---|---|---|---|---|"]
    for e, epoch in enumerate(result["epochs"]):
        for layer, (b, k) in enumerate(zip(result["plane"]["binning"][e], result["plane"]["ksg"][e])):
            lines.append(f"| {epoch} | {_pct(result['test_accuracy'][e])} | {layer} | {b[0]:.2f} | {b[1]:.2f} | "
                         f"{b[2]:.2f} | {k[0]:.2f} | {k[1]:.2f} | {k[2]:.2f} |")
    return "\n".join(lines) + "\n"


def write_info_figure(result: dict, folder: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = result["epochs"]
    colours = plt.cm.viridis(np.linspace(0, 1, len(epochs)))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, name in zip(axes, ("binning", "ksg")):
        plane = np.asarray(result["plane"][name])  # (E, L+1, 3)
        for e, epoch in enumerate(epochs):
            ax.plot(plane[e, :, 0], plane[e, :, 1], "-o", color=colours[e], ms=4, label=f"epoch {epoch}")
        for layer in range(plane.shape[1]):
            ax.annotate(str(layer), plane[-1, layer, :2], fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.axhline(result["label_entropy_bits"], color="grey", lw=0.6, ls="--")
        ax.axhline(plane[..., 2].mean(), color="tab:red", lw=0.8, ls=":")
        ax.text(ax.get_xlim()[0], plane[..., 2].mean(), " estimator bias (shuffled labels)", color="tab:red",
                fontsize=7, va="bottom")
        ax.set(xlabel="I(X; T_l) (bits)", ylabel="I(T_l; Y) (bits)",
               title=f"{name}: layers 0..L along each line (numbers: last epoch)")
    axes[0].legend(fontsize=7)
    return save_figure(fig, folder, "information_plane.png")


def write_info_report(result: dict, out: str | Path, overwrite: bool = False, figures: bool = True) -> Path:
    """``results.json``, ``summary.md`` and (optionally) ``information_plane.png``."""
    return _write_study(result, out, overwrite, info_summary, write_info_figure if figures else None)
