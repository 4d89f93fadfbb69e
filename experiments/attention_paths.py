"""Attention paths on the hidden-Markov-chain task: theory vs Gaussian-process limit vs sampled networks over
width, the order parameter U, head scores against single-head pruning, and pruning curves.

    python -m experiments.attention_paths --out results/attention_paths

The network (`pdeflow.paths`) has L = 2 layers of H = 4 heads; its query/key weights are fixed: layer 1's
head 0 is the hand-built switch detector (`pdeflow.tasks.switch_detector`), every other head is random.
Only the value weights learn. For each width N the theory's order parameter is found by minimising its action
on the P training sequences, and its predictor is compared on held-out sequences with the GP limit (U = I/H^L)
and with networks whose value weights are sampled from the posterior by Langevin dynamics (mean ± sd over
seeds). Heads of a network trained by gradient descent (weight decay, no noise) are then pruned one at a time
(accuracy drop per head, against the theory's head score) and cumulatively in score order, in reverse order
and in random orders.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import run_and_write
from pdeflow.paths import (
    OrderParameter,
    PathAttentionNet,
    PathNetConfig,
    SamplerConfig,
    all_paths,
    attentioned_inputs,
    gp_predict,
    head_scores,
    minimise_action,
    output_from_maps,
    path_kernels,
    prune_heads,
    readout_weights,
    sample_networks,
    total_kernel,
    with_bilinear_head,
)
from pdeflow.tasks import MarkovChainTask, digit_pair_task, switch_detector

DIGIT_CLASSES = (3, 8)


@dataclasses.dataclass(frozen=True)
class PathsExperiment:
    """Settings of the experiment.

    Attributes:
        widths: widths N of the value path to compare.
        num_layers: L.
        num_heads: H.
        num_train: P, training sequences.
        num_test: held-out sequences.
        temperature: T of the posterior and of the theory.
        seeds: Langevin chains (and random pruning orders) per setting.
        sampler_steps: Langevin steps per chain (half are burn-in).
        step_size: Langevin / gradient-descent step.
        prune_width: width of the gradient-descent-trained network that is pruned.
        action_steps: Adam steps minimising the action.
        vit_heads: also score the trained ViT's heads by path-kernel alignment against single-head removal.
    """

    widths: tuple[int, ...] = (2, 4, 8, 16, 32)
    num_layers: int = 2
    num_heads: int = 4
    num_train: int = 100
    num_test: int = 1000
    temperature: float = 0.1
    seeds: int = 3
    sampler_steps: int = 3000
    step_size: float = 5e-4
    prune_width: int = 16
    action_steps: int = 1500
    vit_heads: bool = True


def _error(prediction, labels) -> float:
    return float(np.mean(np.sign(np.asarray(prediction)) != np.asarray(labels)))


def setup(config: PathsExperiment, task_name: str = "markov"):
    """The network (fixed query/key weights) and the train/test data with their attention maps."""
    if task_name == "markov":
        task = MarkovChainTask()
        x_train, y_train, _ = task.sample(config.num_train, seed=1)
        x_test, y_test, _ = task.sample(config.num_test, seed=2)
    else:
        x_train, y_train, x_test, y_test = digit_pair_task(DIGIT_CLASSES, config.num_train)
        # scale the tokens so that the token average (what the mean readout sees) has squared norm 0.4 D, as the
        # Markov tokens have (0.40 D): unscaled, the function prior is so small (0.0008 D) that Monte Carlo
        # noise in the sampled predictions hides their sign (one scale from the training set, for both splits)
        scale = float(np.sqrt(0.4 * x_train.shape[-1] / np.mean(np.sum(x_train.mean(1) ** 2, -1))))
        x_train, x_test = x_train * scale, x_test * scale
    dim = x_train.shape[-1]
    net = PathNetConfig(input_dim=dim, width=8, num_layers=config.num_layers, num_heads=config.num_heads,
                        key_dim=dim, readout="mean")
    params = PathAttentionNet(net).init(jax.random.PRNGKey(0), jnp.asarray(x_train[:1]))
    if task_name == "markov":
        params = with_bilinear_head(params, net, 0, 0, switch_detector(task))
    _, maps_train = PathAttentionNet(net).apply(params, jnp.asarray(x_train))
    _, maps_test = PathAttentionNet(net).apply(params, jnp.asarray(x_test))
    return net, (x_train, y_train, maps_train), (x_test, y_test, maps_test)


def theory_predictions(order_matrix, xi_train, xi_test, y_train, temperature):
    k_train = total_kernel(order_matrix, path_kernels(xi_train, xi_train))
    k_cross = total_kernel(order_matrix, path_kernels(xi_test, xi_train))
    k_diag = jnp.einsum("pq,mpd,mqd->m", order_matrix, xi_test, xi_test) / xi_test.shape[-1]
    return gp_predict(k_train, k_cross, k_diag, jnp.asarray(y_train, jnp.float32), temperature)


def width_sweep(config: PathsExperiment, net, train, test, progress: bool = False, desc: str = "widths"):
    """Per width: theory (action minimised), GP limit and Langevin-sampled networks, on held-out data. Returns
    ``(rows, order parameter per width, paths)``."""
    from tqdm.auto import tqdm

    (x_train, y_train, maps_train), (x_test, y_test, maps_test) = train, test
    paths = all_paths(config.num_layers, config.num_heads)
    r = readout_weights(x_train.shape[1], net.readout)
    xi_train = attentioned_inputs(jnp.asarray(x_train), maps_train, r, paths)
    xi_test = attentioned_inputs(jnp.asarray(x_test), maps_test, r, paths)
    kernels = path_kernels(xi_train, xi_train)
    y = jnp.asarray(y_train, jnp.float32)
    gp_mean, _ = theory_predictions(OrderParameter.gp_limit(config.num_layers, config.num_heads).matrix(),
                                    xi_train, xi_test, y_train, config.temperature)
    rows, orders = [], {}
    for width in tqdm(config.widths, desc=desc, disable=not progress):
        order, history = minimise_action(kernels, y, config.num_layers, config.num_heads, width, config.temperature,
                                         steps=config.action_steps, learning_rate=0.01)
        mean, _ = theory_predictions(order.matrix(), xi_train, xi_test, y_train, config.temperature)
        sampled = []
        for seed in range(config.seeds):
            sampler = SamplerConfig(temperature=config.temperature, steps=config.sampler_steps,
                                    burn_in=config.sampler_steps // 2, step_size=config.step_size, seed=seed)
            out = sample_networks(dataclasses.replace(net, width=width), sampler, maps_train, x_train, y_train,
                                  maps_test, x_test)
            sampled.append(_error(out["test"], y_test))
        orders[width] = order
        rows.append({"width": width, "theory_error": _error(mean, y_test), "gp_error": _error(gp_mean, y_test),
                     "sampled_error_mean": float(np.mean(sampled)), "sampled_error_sd": float(np.std(sampled)),
                     "sampled_errors": sampled, "action_start": float(history[0]), "action_end": float(history[-1]),
                     "input_scale": float(order.input_scale),
                     "theory_vs_gp_prediction_gap": float(jnp.mean(jnp.abs(mean - gp_mean)))})
    return rows, orders, paths


def run(config: PathsExperiment, progress: bool = False) -> dict:
    net, train, test = setup(config, "markov")
    rows, orders, paths = width_sweep(config, net, train, test, progress, "markov widths")
    narrow = orders[min(config.widths)]
    scores = np.asarray(head_scores(narrow.matrix(), paths, config.num_heads))  # (L, H)
    pruning = prune_study(config, net, *train, *test, scores)
    digit_net, digit_train, digit_test = setup(config, "digits")
    digit_rows, _, _ = width_sweep(config, digit_net, digit_train, digit_test, progress, "digit widths")
    vit = vit_head_study() if config.vit_heads else None
    return {"config": dataclasses.asdict(config), "task": dataclasses.asdict(MarkovChainTask()), "rows": rows,
            "digits": {"classes": DIGIT_CLASSES, "train": int(len(digit_train[1])), "test": int(len(digit_test[1])),
                       "rows": digit_rows},
            "order_parameter": {"width": min(config.widths), "matrix": np.asarray(narrow.matrix()),
                                "layers": np.asarray(narrow.layers), "input_scale": float(narrow.input_scale)},
            "paths": paths, "head_scores": scores, "pruning": pruning, "vit_heads": vit}


def vit_head_study(top_k: int = 64) -> dict:
    """Path-kernel head scores of the trained ViT (class-token readout, held-out test digits, one-hot labels)
    against the accuracy drop when each head is removed alone (its output zeroed)."""
    from scipy.stats import spearmanr

    from pdeflow.data.digits import digit_splits
    from pdeflow.models.vit import ViT
    from pdeflow.paths.traced import top_paths, traced_head_scores
    from pdeflow.train.vit import load_or_train_vit

    splits, model = digit_splits(), load_or_train_vit()
    trace = model.trace(splits.test_images)
    num_layers, num_heads = model.config.model.num_layers, model.config.model.num_heads
    readout = jnp.zeros(trace.hidden.shape[2]).at[0].set(1.0)  # the class token
    paths, alignment = top_paths(jnp.asarray(trace.hidden[0]), jnp.asarray(trace.attention), readout,
                                 splits.test_labels, k=top_k)
    scores = traced_head_scores(paths, alignment, num_heads)
    logits = jax.jit(lambda mask: ViT(model.config.model).apply(model.params, jnp.asarray(splits.test_images),
                                                                mask)[0])

    def accuracy(mask):
        return float(np.mean(np.argmax(logits(mask), -1) == splits.test_labels))

    full = accuracy(jnp.ones((num_layers, num_heads)))
    drops = np.array([[full - accuracy(jnp.ones((num_layers, num_heads)).at[l, h].set(0.0))
                       for h in range(num_heads)] for l in range(num_layers)])
    within = [spearmanr(scores[l], drops[l]).statistic for l in range(num_layers)]
    return {"top_k": top_k, "best_paths": paths[:8], "best_alignment": alignment[:8], "head_scores": scores,
            "full_accuracy": full, "single_head_drop": drops,
            "spearman_within_layer": [None if not np.isfinite(v) else float(v) for v in within],
            "spearman_all_heads": float(spearmanr(scores.ravel(), drops.ravel()).statistic)}


def prune_study(config, net, x_train, y_train, maps_train, x_test, y_test, maps_test, scores) -> dict:
    """Single-head and cumulative pruning of a gradient-descent-trained network of width ``prune_width``."""
    from scipy.stats import spearmanr

    trained = dataclasses.replace(net, width=config.prune_width)
    sampler = SamplerConfig(temperature=config.temperature, steps=config.sampler_steps,
                            burn_in=config.sampler_steps - 1, step_size=config.step_size, noise=False)
    values = sample_networks(trained, sampler, maps_train, x_train, y_train, maps_test, x_test)["values"]

    def accuracy(keep):
        f = output_from_maps(prune_heads(values, keep, trained), maps_test, jnp.asarray(x_test), trained)
        return 1.0 - _error(f, y_test)

    full = accuracy(np.ones((config.num_layers, config.num_heads), bool))
    drops = np.zeros((config.num_layers, config.num_heads))
    for layer in range(config.num_layers):
        for head in range(config.num_heads):
            keep = np.ones_like(drops, bool)
            keep[layer, head] = False
            drops[layer, head] = full - accuracy(keep)
    heads = [(l, h) for l in range(config.num_layers) for h in range(config.num_heads)]

    def curve(order):
        keep, accuracies = np.ones_like(drops, bool), [full]
        for layer, head in order:
            if keep[layer].sum() == 1:  # a layer keeps its last head
                continue
            keep[layer, head] = False
            accuracies.append(accuracy(keep))
        return accuracies

    by_score = sorted(heads, key=lambda lh: scores[lh])  # least relevant first
    rng = np.random.default_rng(0)
    random_curves = [curve([heads[i] for i in rng.permutation(len(heads))]) for _ in range(max(config.seeds, 5))]
    half = len(heads) // 2
    random_half = [c[min(half, len(c) - 1)] for c in random_curves]
    score_curve = curve(by_score)
    return {"width": config.prune_width, "full_accuracy": full, "single_head_drop": drops,
            "spearman_score_vs_drop": float(spearmanr(scores.ravel(), drops.ravel()).statistic),
            "score_order": score_curve, "reverse_order": curve(by_score[::-1]), "random_orders": random_curves,
            "half_pruned": {"score_order": score_curve[min(half, len(score_curve) - 1)],
                            "random_mean": float(np.mean(random_half)), "random_sd": float(np.std(random_half))}}


def write_figures(result: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    digits = result["digits"]
    for ax, rows, title in ((axes[0], result["rows"], "Markov-chain task (switch-detector head + random heads)"),
                            (axes[1], digits["rows"], f"digits {digits['classes'][0]} vs {digits['classes'][1]} "
                                                      "as patch sequences (random heads)")):
        widths = [r["width"] for r in rows]
        ax.plot(widths, [r["theory_error"] for r in rows], "o-", label="theory (action minimised)")
        ax.plot(widths, [r["gp_error"] for r in rows], "k--", label="GP limit (U = I/H^L)")
        ax.errorbar(widths, [r["sampled_error_mean"] for r in rows], [r["sampled_error_sd"] for r in rows],
                    fmt="s:", capsize=3, label="sampled networks (Langevin, mean ± sd)")
        ax.set(xscale="log", xlabel="width N", ylabel="held-out classification error", title=title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "error_vs_width.png", dpi=110)
    plt.close(fig)

    matrix = np.asarray(result["order_parameter"]["matrix"])
    labels = ["".join(str(h) for h in p) for p in np.asarray(result["paths"])]
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-abs(matrix).max(), vmax=abs(matrix).max())
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_title(f"order parameter U at N = {result['order_parameter']['width']} (path = heads of layers 1, 2)",
                 fontsize=8)
    fig.colorbar(image)
    fig.tight_layout()
    fig.savefig(folder / "order_parameter.png", dpi=110)
    plt.close(fig)

    pruning = result["pruning"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    scores, drops = np.asarray(result["head_scores"]), np.asarray(pruning["single_head_drop"])
    for layer in range(scores.shape[0]):
        axes[0].scatter(scores[layer], drops[layer], label=f"layer {layer + 1}")
        for head in range(scores.shape[1]):
            axes[0].annotate(f"{layer + 1}.{head}", (scores[layer, head], drops[layer, head]), fontsize=7)
    axes[0].set(xlabel="head score (share of |U| through the head)", ylabel="accuracy drop when removed alone",
                title=f"Spearman ρ = {pruning['spearman_score_vs_drop']:.2f}")
    axes[0].legend(fontsize=8)
    axes[1].plot(pruning["score_order"], "o-", label="least relevant first (score order)")
    axes[1].plot(pruning["reverse_order"], "s-", label="most relevant first")
    for i, c in enumerate(pruning["random_orders"]):
        axes[1].plot(c, color="grey", alpha=0.5, lw=0.8, label="random orders" if i == 0 else None)
    axes[1].set(xlabel="heads removed", ylabel="held-out accuracy", title=f"pruning, N = {pruning['width']}")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "pruning.png", dpi=110)
    plt.close(fig)


def _error_table(rows) -> list[str]:
    lines = ["| N | theory error | GP-limit error | sampled networks (mean ± sd) | u₀ |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['width']} | {r['theory_error']:.3f} | {r['gp_error']:.3f} | "
                     f"{r['sampled_error_mean']:.3f} ± {r['sampled_error_sd']:.3f} | {r['input_scale']:.3f} |")
    return lines


def summary(result: dict) -> str:
    digits = result["digits"]
    lines = ["# Attention paths", "", "## Markov-chain task", "", *_error_table(result["rows"]), "",
             f"## Digits {digits['classes'][0]} vs {digits['classes'][1]} ({digits['train']} train, "
             f"{digits['test']} held-out test sequences)", "", *_error_table(digits["rows"])]
    p = result["pruning"]
    lines += ["", f"Head scores (layers × heads): {np.round(np.asarray(result['head_scores']), 3).tolist()}",
              f"Pruning (gradient-descent network, N = {p['width']}, full accuracy {p['full_accuracy']:.3f}): "
              f"Spearman(score, single-head drop) = {p['spearman_score_vs_drop']:.3f}; half the heads removed: "
              f"score order {p['half_pruned']['score_order']:.3f}, random order "
              f"{p['half_pruned']['random_mean']:.3f} ± {p['half_pruned']['random_sd']:.3f}.", ""]
    vit = result.get("vit_heads")
    if vit:
        lines += ["## ViT heads (path-kernel alignment vs single-head removal)", "",
                  f"Top {vit['top_k']} paths by kernel-target alignment (class-token readout, held-out digits); "
                  f"full accuracy {vit['full_accuracy']:.3f}.", "",
                  "| layer | head scores | accuracy drop per head removed | Spearman within layer |",
                  "|---|---|---|---|"]
        for layer, (sc, dr, rho) in enumerate(zip(vit["head_scores"], vit["single_head_drop"],
                                                  vit["spearman_within_layer"])):
            scores, drops = (np.round(np.asarray(v), 3).tolist() for v in (sc, dr))
            lines.append(f"| {layer + 1} | {scores} | {drops} | {'n/a' if rho is None else f'{rho:.2f}'} |")
        lines += ["", f"Spearman over all heads: {vit['spearman_all_heads']:.2f}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/attention_paths")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    parser.add_argument("--widths", type=int, nargs="+", default=list(PathsExperiment.widths))
    parser.add_argument("--seeds", type=int, default=PathsExperiment.seeds)
    parser.add_argument("--sampler-steps", type=int, default=PathsExperiment.sampler_steps)
    parser.add_argument("--num-train", type=int, default=PathsExperiment.num_train)
    parser.add_argument("--num-test", type=int, default=PathsExperiment.num_test)
    parser.add_argument("--action-steps", type=int, default=PathsExperiment.action_steps)
    parser.add_argument("--vit-heads", action=argparse.BooleanOptionalAction, default=PathsExperiment.vit_heads)
    args = parser.parse_args(argv)
    config = PathsExperiment(widths=tuple(args.widths), seeds=args.seeds, sampler_steps=args.sampler_steps,
                             num_train=args.num_train, num_test=args.num_test, action_steps=args.action_steps,
                             vit_heads=args.vit_heads)
    return run_and_write(args.out, args.overwrite, lambda: run(config, args.progress), summary, write_figures)


if __name__ == "__main__":
    sys.exit(main())
