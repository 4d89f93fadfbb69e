"""Attention paths on the hidden-Markov-chain task and on digit-patch sequences: the theory in two forms of
its order parameter (the project's Kronecker form and the authors' full hierarchy) vs the Gaussian-process limit
vs networks sampled from the posterior, over width; the order parameter U; the authors' head scores against
single-head pruning; and cumulative pruning curves.

    python -m experiments.attention_paths --out results/attention_paths

The network (`pdeflow.paths`) has L = 2 layers of H = 4 heads; its query/key weights are fixed: on the Markov
task layer 1's head 0 is the hand-built switch detector (`pdeflow.tasks.switch_detector`), every other head is
random. Only the value weights learn. For each width N the theory's order parameter is found by minimising its
action on the P training sequences, in each form, and its predictor is compared on held-out sequences with the
GP limit (U = I/H^L) and with networks whose value weights are sampled from the posterior by Langevin dynamics
(mean ± sd over seeds): by classification error and by the RMS distance of each predictor from the sampled
networks' mean output. Heads of a network trained by gradient descent (weight decay, no noise) are then pruned
one at a time (accuracy drop per head, against each form's head score, Σ|U_ππ'| over pairs through the head
divided by the largest, as the authors' ``compute_heads_score``; and against the drop the theory predicts when
the head's rows and columns of U are zeroed) and cumulatively in score order, in reverse order and in random
orders.
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
    ORDER_PARAMETER_FORMS,
    FullOrderParameter,
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
        order_parameters: the forms of the order parameter to compare (`pdeflow.paths.ORDER_PARAMETER_FORMS`).
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
    order_parameters: tuple[str, ...] = ("kronecker", "full")
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


def path_inputs(config: PathsExperiment, net, train, test):
    """``(paths (H^L, L), ξ on the training inputs (P, H^L, D), ξ on the test inputs (M, H^L, D))``."""
    paths = all_paths(config.num_layers, config.num_heads)
    r = readout_weights(train[0].shape[1], net.readout)
    return (paths, attentioned_inputs(jnp.asarray(train[0]), train[2], r, paths),
            attentioned_inputs(jnp.asarray(test[0]), test[2], r, paths))


def _rms(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def width_sweep(config: PathsExperiment, net, train, test, progress: bool = False, desc: str = "widths"):
    """Per width: the theory in each form (action minimised), the GP limit and Langevin-sampled networks, on
    held-out data. Returns ``(rows, {form: order parameter per width})``."""
    from tqdm.auto import tqdm

    (x_train, y_train, maps_train), (x_test, y_test, maps_test) = train, test
    _, xi_train, xi_test = path_inputs(config, net, train, test)
    kernels = path_kernels(xi_train, xi_train)
    y = jnp.asarray(y_train, jnp.float32)
    gp_mean, _ = theory_predictions(OrderParameter.gp_limit(config.num_layers, config.num_heads).matrix(),
                                    xi_train, xi_test, y_train, config.temperature)
    rows, orders = [], {form: {} for form in config.order_parameters}
    for width in tqdm(config.widths, desc=desc, disable=not progress):
        sampled, sampled_errors = [], []
        for seed in range(config.seeds):
            sampler = SamplerConfig(temperature=config.temperature, steps=config.sampler_steps,
                                    burn_in=config.sampler_steps // 2, step_size=config.step_size, seed=seed)
            out = sample_networks(dataclasses.replace(net, width=width), sampler, maps_train, x_train, y_train,
                                  maps_test, x_test)
            sampled.append(np.asarray(out["test"]))
            sampled_errors.append(_error(out["test"], y_test))
        sampled_mean = np.mean(sampled, axis=0)
        # Monte Carlo noise of the chains' mean output: the sd over chains / √chains (0 with one chain)
        noise = float(np.sqrt(np.mean(np.var(sampled, axis=0, ddof=1) / len(sampled)))) if len(sampled) > 1 else 0.0
        row = {"width": width, "gp_error": _error(gp_mean, y_test),
               "sampled_error_mean": float(np.mean(sampled_errors)), "sampled_error_sd": float(np.std(sampled_errors)),
               "sampled_errors": sampled_errors, "sampled_mean_error": _error(sampled_mean, y_test),
               "sampled_output_rms": _rms(sampled_mean, 0.0), "sampling_noise_rms": noise,
               "gp_gap_to_sampled": _rms(gp_mean, sampled_mean), "theory": {}}
        for form in config.order_parameters:
            order, history = minimise_action(kernels, y, config.num_layers, config.num_heads, width,
                                             config.temperature, steps=config.action_steps, learning_rate=0.01,
                                             order_parameter=form)
            mean, _ = theory_predictions(order.matrix(), xi_train, xi_test, y_train, config.temperature)
            orders[form][width] = order
            row["theory"][form] = {"error": _error(mean, y_test), "gap_to_sampled": _rms(mean, sampled_mean),
                                   "gap_to_gp": _rms(mean, gp_mean), "action_start": float(history[0]),
                                   "action_end": float(history[-1]), "input_scale": float(order.input_scale)}
        rows.append(row)
    return rows, orders


def _order_summary(order) -> dict:
    summary = {"matrix": np.asarray(order.matrix()), "input_scale": float(order.input_scale)}
    if isinstance(order, FullOrderParameter):
        summary["levels"] = [np.asarray(u) for u in order.levels]
    else:
        summary["layers"] = np.asarray(order.layers)
    return summary


def task_study(config: PathsExperiment, task_name: str, progress: bool = False) -> dict:
    """Width sweep, head scores of each form at the narrowest width, and pruning, on one task."""
    net, train, test = setup(config, task_name)
    rows, orders = width_sweep(config, net, train, test, progress, f"{task_name} widths")
    paths, xi_train, xi_test = path_inputs(config, net, train, test)
    narrow = {form: orders[form][min(config.widths)] for form in config.order_parameters}
    scores = {form: np.asarray(head_scores(order.matrix(), paths, config.num_heads, normalisation="max"))
              for form, order in narrow.items()}  # (L, H), the authors' normalisation (largest = 1)
    theory_drops = {form: theory_single_head_drops(config, order.matrix(), paths, xi_train, xi_test, train[1],
                                                   test[1]) for form, order in narrow.items()}
    pruning = prune_study(config, net, *train, *test, scores, theory_drops)
    return {"train": int(len(train[1])), "test": int(len(test[1])), "rows": rows,
            "order_parameter": {"width": min(config.widths),
                                **{form: _order_summary(order) for form, order in narrow.items()}},
            "paths": paths, "head_scores": scores, "pruning": pruning}


def run(config: PathsExperiment, progress: bool = False) -> dict:
    markov = task_study(config, "markov", progress)
    digits = task_study(config, "digits", progress)
    digits["classes"] = DIGIT_CLASSES
    vit = vit_head_study() if config.vit_heads else None
    return {"config": dataclasses.asdict(config), "task": dataclasses.asdict(MarkovChainTask()), "markov": markov,
            "digits": digits, "vit_heads": vit}


def theory_single_head_drops(config, order_matrix, paths, xi_train, xi_test, y_train, y_test) -> np.ndarray:
    """``(L, H)``: the theory's accuracy drop when a head's rows and columns of U are zeroed (as the authors'
    head-silencing of the order parameter), the rest of U kept."""
    def accuracy(matrix):
        return 1.0 - _error(theory_predictions(matrix, xi_train, xi_test, y_train, config.temperature)[0], y_test)

    full = accuracy(order_matrix)
    drops = np.zeros((config.num_layers, config.num_heads))
    for layer in range(config.num_layers):
        for head in range(config.num_heads):
            keep = jnp.asarray(np.asarray(paths)[:, layer] != head, order_matrix.dtype)
            drops[layer, head] = full - accuracy(order_matrix * keep[:, None] * keep[None, :])
    return drops


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


def prune_study(config, net, x_train, y_train, maps_train, x_test, y_test, maps_test, scores: dict,
                theory_drops: dict) -> dict:
    """Single-head and cumulative pruning of a gradient-descent-trained network of width ``prune_width``, against
    each form's head scores ``{form: (L, H)}`` and theory-predicted drops ``{form: (L, H)}``."""
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

    def spearman(a, b):
        value = spearmanr(np.ravel(a), np.ravel(b)).statistic
        return None if not np.isfinite(value) else float(value)

    rng = np.random.default_rng(0)
    random_curves = [curve([heads[i] for i in rng.permutation(len(heads))]) for _ in range(max(config.seeds, 5))]
    half = len(heads) // 2
    random_half = [c[min(half, len(c) - 1)] for c in random_curves]
    forms = {}
    for form, score in scores.items():
        by_score = sorted(heads, key=lambda lh: score[lh])  # least relevant first (ties: layer, head order)
        score_curve, reverse_curve = curve(by_score), curve(by_score[::-1])
        forms[form] = {"head_scores": score, "theory_single_head_drop": theory_drops[form],
                       "spearman_score_vs_drop": spearman(score, drops),
                       "spearman_theory_drop_vs_drop": spearman(theory_drops[form], drops),
                       "score_order": score_curve, "reverse_order": reverse_curve,
                       "half_pruned_score_order": score_curve[min(half, len(score_curve) - 1)],
                       "half_pruned_reverse_order": reverse_curve[min(half, len(reverse_curve) - 1)],
                       "area_score_order": float(np.mean(score_curve)),
                       "area_reverse_order": float(np.mean(reverse_curve))}
    return {"width": config.prune_width, "full_accuracy": full, "single_head_drop": drops, "forms": forms,
            "random_orders": random_curves,
            "half_pruned_random": {"mean": float(np.mean(random_half)), "sd": float(np.std(random_half))},
            "area_random": {"mean": float(np.mean([np.mean(c) for c in random_curves])),
                            "sd": float(np.std([np.mean(c) for c in random_curves]))}}


FORM_NAMES = {"kronecker": "Kronecker", "full": "full"}


def _task_title(result: dict, task: str) -> str:
    if task == "markov":
        return "Markov-chain task (switch-detector head + random heads)"
    classes = result["digits"]["classes"]
    return f"digits {classes[0]} vs {classes[1]} as patch sequences (random heads)"


def write_figures(result: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    forms = result["config"]["order_parameters"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for column, task in enumerate(("markov", "digits")):
        rows = result[task]["rows"]
        widths = [r["width"] for r in rows]
        ax = axes[0, column]
        for form, marker in zip(forms, "o^"):
            ax.plot(widths, [r["theory"][form]["error"] for r in rows], marker + "-",
                    label=f"theory, {FORM_NAMES[form]} U")
        ax.plot(widths, [r["gp_error"] for r in rows], "k--", label="GP limit (U = I/H^L)")
        ax.errorbar(widths, [r["sampled_error_mean"] for r in rows], [r["sampled_error_sd"] for r in rows],
                    fmt="s:", capsize=3, label="sampled networks (Langevin, mean ± sd)")
        ax.set(xscale="log", xlabel="width N", ylabel="held-out classification error", title=_task_title(result, task))
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
        ax = axes[1, column]
        for form, marker in zip(forms, "o^"):
            ax.plot(widths, [r["theory"][form]["gap_to_sampled"] for r in rows], marker + "-",
                    label=f"theory, {FORM_NAMES[form]} U")
        ax.plot(widths, [r["gp_gap_to_sampled"] for r in rows], "k--", label="GP limit")
        ax.plot(widths, [r["sampling_noise_rms"] for r in rows], ":", color="grey",
                label="Monte Carlo noise of sampled")
        ax.set(xscale="log", xlabel="width N", ylabel="RMS distance from the sampled networks' mean output")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "error_vs_width.png", dpi=110)
    plt.close(fig)

    markov = result["markov"]
    labels = ["".join(str(h) for h in p) for p in np.asarray(markov["paths"])]
    fig, axes = plt.subplots(1, len(forms), figsize=(5.5 * len(forms), 4.8), squeeze=False)
    for ax, form in zip(axes[0], forms):
        matrix = np.asarray(markov["order_parameter"][form]["matrix"])
        image = ax.imshow(matrix, cmap="RdBu_r", vmin=-abs(matrix).max(), vmax=abs(matrix).max())
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.set_title(f"{FORM_NAMES[form]} U, Markov task, N = {markov['order_parameter']['width']} (path = heads of "
                     "layers 1, 2)", fontsize=8)
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(folder / "order_parameter.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for row, task in enumerate(("markov", "digits")):
        pruning = result[task]["pruning"]
        drops = np.asarray(pruning["single_head_drop"])
        ax = axes[row, 0]
        for form, marker in zip(forms, "o^"):
            scores = np.asarray(pruning["forms"][form]["head_scores"])
            rho = pruning["forms"][form]["spearman_score_vs_drop"]
            ax.scatter(scores.ravel(), drops.ravel(), marker=marker,
                       label=f"{FORM_NAMES[form]} U (ρ = {'n/a' if rho is None else f'{rho:.2f}'})")
            for layer in range(scores.shape[0]):
                for head in range(scores.shape[1]):
                    ax.annotate(f"{layer + 1}.{head}", (scores[layer, head], drops[layer, head]), fontsize=6)
        ax.set(xlabel="head score (Σ|U| through the head / largest)", ylabel="accuracy drop when removed alone",
               title=_task_title(result, task))
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
        ax = axes[row, 1]
        for form, style in zip(forms, ("-", "--")):
            ax.plot(pruning["forms"][form]["score_order"], "o" + style,
                    label=f"least relevant first ({FORM_NAMES[form]} scores)")
            ax.plot(pruning["forms"][form]["reverse_order"], "s" + style,
                    label=f"most relevant first ({FORM_NAMES[form]} scores)")
        for i, c in enumerate(pruning["random_orders"]):
            ax.plot(c, color="grey", alpha=0.5, lw=0.8, label="random orders" if i == 0 else None)
        ax.set(xlabel="heads removed", ylabel="held-out accuracy", title=f"pruning, N = {pruning['width']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(folder / "pruning.png", dpi=110)
    plt.close(fig)


def _error_table(rows, forms) -> list[str]:
    names = [FORM_NAMES[f] for f in forms]
    lines = ["| N | " + " | ".join(f"theory, {n} U: error" for n in names) + " | GP-limit error | sampled networks "
             "(mean ± sd) | " + " | ".join(f"RMS gap to sampled: {n}" for n in names) + " | GP | Monte Carlo noise | "
             + " | ".join(f"input scale ({n})" for n in names) + " |"]
    lines.append("|" + "---|" * (5 + 3 * len(forms)))
    for r in rows:
        t = r["theory"]
        lines.append(f"| {r['width']} | " + " | ".join(f"{t[f]['error']:.3f}" for f in forms)
                     + f" | {r['gp_error']:.3f} | {r['sampled_error_mean']:.3f} ± {r['sampled_error_sd']:.3f} | "
                     + " | ".join(f"{t[f]['gap_to_sampled']:.4f}" for f in forms)
                     + f" | {r['gp_gap_to_sampled']:.4f} | {r['sampling_noise_rms']:.4f} | "
                     + " | ".join(f"{t[f]['input_scale']:.3f}" for f in forms) + " |")
    return lines


def _pruning_lines(pruning, forms) -> list[str]:
    drops = np.asarray(pruning["single_head_drop"])
    lines = [f"Pruning a gradient-descent-trained network (N = {pruning['width']}, full accuracy "
             f"{pruning['full_accuracy']:.3f}): single-head accuracy drops (points, layers × heads) "
             f"{np.round(100 * np.asarray(drops, float), 1).tolist()}; half the heads removed, random orders "
             f"{pruning['half_pruned_random']['mean']:.3f} ± {pruning['half_pruned_random']['sd']:.3f}, mean accuracy "
             f"along the random curves {pruning['area_random']['mean']:.3f} ± {pruning['area_random']['sd']:.3f}.", "",
             "| U | head scores (layers × heads, largest = 1) | Spearman(score, drop) | theory-predicted drops "
             "(points) | Spearman(theory drop, drop) | half removed: score order | reverse order | mean accuracy "
             "along the curve: score order | reverse |", "|---|---|---|---|---|---|---|---|---|"]
    for form in forms:
        p = pruning["forms"][form]

        def fmt(v):
            return "n/a" if v is None else f"{v:.2f}"

        lines.append(f"| {FORM_NAMES[form]} | {np.round(np.asarray(p['head_scores'], float), 3).tolist()} | "
                     f"{fmt(p['spearman_score_vs_drop'])} | "
                     f"{np.round(100 * np.asarray(p['theory_single_head_drop'], float), 1).tolist()} | "
                     f"{fmt(p['spearman_theory_drop_vs_drop'])} | {p['half_pruned_score_order']:.3f} | "
                     f"{p['half_pruned_reverse_order']:.3f} | {p['area_score_order']:.3f} | "
                     f"{p['area_reverse_order']:.3f} |")
    return lines


def summary(result: dict) -> str:
    forms = result["config"]["order_parameters"]
    markov, digits = result["markov"], result["digits"]
    lines = ["# Attention paths", "",
             "Theory in each form of the order parameter U against the GP limit and Langevin-sampled networks "
             "(held-out error; RMS distance of each predictor from the sampled networks' mean output, beside the "
             "Monte Carlo noise of that mean). Head scores: the authors' compute_heads_score at the narrowest width.",
             "", f"## Markov-chain task ({markov['train']} train, {markov['test']} held-out test sequences)", "",
             *_error_table(markov["rows"], forms), "", *_pruning_lines(markov["pruning"], forms), "",
             f"## Digits {digits['classes'][0]} vs {digits['classes'][1]} ({digits['train']} train, "
             f"{digits['test']} held-out test sequences)", "", *_error_table(digits["rows"], forms), "",
             *_pruning_lines(digits["pruning"], forms), ""]
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
    parser.add_argument("--order-parameters", nargs="+", default=list(PathsExperiment.order_parameters),
                        choices=list(ORDER_PARAMETER_FORMS))
    parser.add_argument("--vit-heads", action=argparse.BooleanOptionalAction, default=PathsExperiment.vit_heads)
    args = parser.parse_args(argv)
    config = PathsExperiment(widths=tuple(args.widths), seeds=args.seeds, sampler_steps=args.sampler_steps,
                             num_train=args.num_train, num_test=args.num_test, action_steps=args.action_steps,
                             order_parameters=tuple(args.order_parameters), vit_heads=args.vit_heads)
    return run_and_write(args.out, args.overwrite, lambda: run(config, args.progress), summary, write_figures)


if __name__ == "__main__":
    sys.exit(main())
