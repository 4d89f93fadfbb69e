"""Writing a run's outputs: metrics JSON, fitted parameters (safetensors), a Markdown summary, and figures.

The metrics are read through their record (`pdeflow.results.FitMetrics`), the fidelity metrics shown are those of
the registry (`pdeflow.metrics.METRICS`), and the folder is written as every result folder is
(`pdeflow.store.result_folder`: atomically, a failed run never leaves it half-written).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pdeflow.metrics import METRICS, Metric
from pdeflow.pde import terms
from pdeflow.pde.attention_pde import SurrogateConfig
from pdeflow.pde.solve import SolverConfig
from pdeflow.results import FitMetrics, as_fit_metrics
from pdeflow.store import (
    check_output_dir,
    flatten_params,
    json_ready,
    result_folder,
    save_checked_tensors,
    save_figure,
    unflatten_params,
)

__all__ = ["check_output_dir", "fidelity_table", "json_ready", "load_surrogate", "measured_metrics",
           "summary_markdown", "write_figures", "write_report"]

METHOD_LABELS = {
    "pde": "attention-PDE",
    "pde_tight_solve": "PDE, tolerances / 100",
    **terms.ablation_labels(),  # "pde_without_attention": "PDE, α = 0", ...
    "mean_training_map": "mean training map",
    "previous_layer": "previous layer",
    "uniform": "uniform",
}


def load_surrogate(out: str | Path) -> tuple[dict, SurrogateConfig, SolverConfig]:
    """Read back ``(params, surrogate config, solver config)`` from a folder written by `write_report`.

    Checked before anything is allocated: both files exist, ``config.json`` is the JSON of valid configs (the
    validation the CLI applies), every parameter in ``params.safetensors`` has the shape and dtype that config
    gives it; after reading, the tensors' checksum and the config's (both written with them) match. Every
    failure is one ``ValueError`` (``FileNotFoundError`` for a missing file) naming the file and the fix."""
    import jax

    from pdeflow.pde.attention_pde import parameter_shapes
    from pdeflow.store import read_checked_tensors

    out = Path(out)
    fix = f"fit it again with `pdeflow fit --out {out} --overwrite` (or restore the folder from a copy)"
    path = out / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {fix}.")
    try:
        config = json.loads(path.read_text())
        surrogate, solver = SurrogateConfig(**config["surrogate"]), SolverConfig(**config["solver"])
    except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} does not hold valid surrogate and solver settings ({type(error).__name__}: "
                         f"{error}); {fix}.") from error
    expected = {"/".join(part.key for part in where): (leaf.shape, "float32")
                for where, leaf in jax.tree_util.tree_leaves_with_path(parameter_shapes(surrogate))}
    flat, metadata = read_checked_tensors(out / "params.safetensors", expected, fix, config=path)
    if metadata.get("config_sha256", config_checksum(config)) != config_checksum(config):
        raise ValueError(f"{path} was changed after the fit wrote it (it no longer matches the checksum stored in "
                         f"params.safetensors); {fix}.")
    return unflatten_params(flat), surrogate, solver


def config_checksum(config: dict) -> str:
    """SHA-256 of a JSON-ready config in canonical form (key order and indentation do not count)."""
    import hashlib

    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def measured_metrics(held_out: Mapping, registry: Mapping[str, Metric] | None = None) -> list[Metric]:
    """The metrics of ``registry`` (default `METRICS`, in its order) that ``held_out`` (``{method: {metric:
    per-layer values}}``) holds: those its tables and figures show."""
    registry = METRICS if registry is None else registry
    held = next(iter(held_out.values()), {})
    return [metric for name, metric in registry.items() if name in held]


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def fidelity_table(held_out: Mapping, metric: str) -> list[str]:
    """Markdown lines of one metric: a row per method (as ``held_out`` orders them), a column per block and
    the mean over blocks that have a value. ``held_out`` is `FitMetrics.held_out` (or its JSON form: ``None``
    where a method has no value)."""
    layers = len(held_out["pde"][metric])
    lines = ["| method | " + " | ".join(f"block {l}" for l in range(layers)) + " | mean |", "|---" * (layers + 2) + "|"]
    for method, values in held_out.items():
        row = values[metric]
        finite = [v for v in row if v is not None and not math.isnan(v)]
        lines.append(f"| {METHOD_LABELS.get(method, method)} | " + " | ".join(_fmt(v) for v in row)
                     + f" | {_fmt(float(np.mean(finite)) if finite else None)} |")
    return lines


def summary_markdown(metrics: FitMetrics | Mapping, registry: Mapping[str, Metric] | None = None) -> str:
    """``summary.md`` of a fit: sizes, wall time, a table per metric of ``registry`` (default `METRICS`) that the
    metrics hold, and the notes. ``metrics``: a `FitMetrics` or its JSON form."""
    metrics = as_fit_metrics(metrics)
    splits, parameters = metrics.splits, metrics.parameters
    lines = [f"# attention-PDE surrogate of {metrics.model}", "",
             f"Held-out inputs ({metrics.text}): {splits.test} (train {splits.train}, validation "
             f"{splits.validation}). Surrogate parameters: {parameters.surrogate:,} "
             f"({parameters.surrogate_used_by_attention_fit:,} used by the attention fit); "
             f"transformer: {parameters.transformer:,} ({parameters.transformer_blocks:,} in its blocks).", ""]
    if metrics.seconds is not None:
        seconds = metrics.seconds
        preset = f"Preset `{metrics.preset}`. " if metrics.preset else ""
        where = f" on {seconds.machine}" if seconds.machine else ""
        lines += [f"{preset}Wall time {seconds.total:.0f} s (trace {seconds.trace:.0f} s, fit "
                  f"{seconds.fit:.0f} s, evaluation {seconds.evaluate:.0f} s){where}.", ""]
    for metric in measured_metrics(metrics.held_out, registry):
        lines += [f"## {metric.heading}", ""] + fidelity_table(metrics.held_out, metric.name) + [""]
    lines += ["## notes", ""] + [f"- {note}" for note in metrics.notes] + [""]
    return "\n".join(lines)


def write_figures(metrics: FitMetrics | Mapping, example: dict, folder: Path,
                  registry: Mapping[str, Metric] | None = None) -> list[str]:
    """The figures of a fit into ``folder``; returns their file names. ``fidelity.png`` has a panel per metric of
    ``registry`` (default `METRICS`) that the metrics hold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = as_fit_metrics(metrics)
    written = []
    held_out = metrics.held_out
    layers = np.arange(metrics.num_layers)
    shown = measured_metrics(held_out, registry)
    fig, axes = plt.subplots(1, len(shown), figsize=(5 * len(shown), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], shown):
        for method, values in held_out.items():
            row = np.array(values[metric.name], float)
            ax.plot(layers, row, marker="o", lw=2.5 if method == "pde" else 1.2,
                    ls="-" if method.startswith("pde") else "--", label=METHOD_LABELS.get(method, method))
        ax.set_xlabel("transformer block")
        ax.set_title(metric.axis_title)
        ax.set_xticks(layers)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("held-out attention fidelity: surrogate vs baselines")
    written.append(save_figure(fig, folder, "fidelity.png"))

    reference, predicted, cosine = example["transformer"], example["pde"], np.asarray(example["cosine"])
    tokens = example["tokens"]
    heads = [int(np.argsort(cosine[l])[len(cosine[l]) // 2]) for l in range(len(reference))]
    fig, axes = plt.subplots(len(reference), 4, figsize=(13, 3.1 * len(reference)))
    for l, row in enumerate(np.atleast_2d(axes)):
        panels = [(reference[l].mean(0), f"block {l}: transformer, head mean"),
                  (predicted[l].mean(0), f"block {l}: PDE (t = {l}), head mean"),
                  (reference[l, heads[l]], f"transformer head {heads[l]} (median cos)"),
                  (predicted[l, heads[l]], f"PDE head {heads[l]}, cos = {cosine[l, heads[l]]:.2f}")]
        for ax, (image, title) in zip(row, panels):
            ax.imshow(image, cmap="viridis", vmin=0.0)
            ax.set_title(title, fontsize=8)
            ax.set_xticks(range(len(tokens)))
            ax.set_yticks(range(len(tokens)))
            ax.set_xticklabels(tokens, rotation=90, fontsize=5)
            ax.set_yticklabels(tokens, fontsize=5)
    fig.suptitle(f"held-out input: {example['sentence'][:100]}", fontsize=10)
    written.append(save_figure(fig, folder, "attention_maps.png", dpi=100, rect=(0, 0, 1, 0.985)))

    curves = metrics.coefficients
    shown = [term for term in terms.REGISTRY.values() if term.coefficient_key in curves]
    fig, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 3.2), squeeze=False)
    for ax, key, label in zip(axes[0], (t.coefficient_key for t in shown), (t.title for t in shown)):
        ax.plot(curves["t"], curves[key])
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.set_xlabel("depth-time t (blocks)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    written.append(save_figure(fig, folder, "coefficients.png"))

    history = metrics.fit.history
    if history:
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        steps = [h["step"] for h in history]
        ax.plot(steps, [h["train_loss"] for h in history], label="train loss")
        ax.plot(steps, [h["validation_loss"] for h in history], label="validation loss")
        ax.axvline(metrics.fit.best_step, color="grey", ls=":", label="kept")
        ax.set_xlabel("step")
        ax.set_ylabel("KL (nats)")
        ax.set_yscale("log")
        ax.legend()
        ax.grid(alpha=0.3)
        written.append(save_figure(fig, folder, "loss.png"))
    if metrics.attention_entropy is not None:
        entropy = metrics.attention_entropy
        transformer, pde = np.asarray(entropy.transformer, float), np.asarray(entropy.pde, float)
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        t = np.asarray(entropy.pde_t, float)
        for h in range(pde.shape[1]):
            ax.plot(t, pde[:, h], color="tab:blue", lw=0.5, alpha=0.35)
            ax.plot(np.arange(len(transformer)), transformer[:, h], ls="none", marker=".", color="tab:orange",
                    alpha=0.35)
        ax.plot(t, pde.mean(1), color="tab:blue", lw=2.5, label="PDE kernel at t (head mean; thin: heads)")
        ax.plot(np.arange(len(transformer)), transformer.mean(1), color="tab:orange", marker="o", lw=0, ms=8,
                label="transformer block l at t = l (head mean; dots: heads)")
        ax.set_xlabel("depth-time t (block l at t = l)")
        ax.set_ylabel("attention entropy (bits)")
        ax.set_title("held-out attention entropy along depth")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(save_figure(fig, folder, "attention_entropy.png", dpi=120))
    return written


def write_report(report, out: str | Path, overwrite: bool = False, figures: bool = True) -> Path:
    """Write ``metrics.json``, ``config.json``, ``params.safetensors``, ``summary.md`` and figures into ``out``,
    atomically (all or nothing). ``report`` is a `pdeflow.pipeline.FitReport` (its ``metrics`` a `FitMetrics`,
    or that record's JSON form)."""
    metrics = report.metrics.to_json() if isinstance(report.metrics, FitMetrics) else json_ready(report.metrics)
    with result_folder(out, overwrite) as folder:
        folder.write_json("metrics.json", metrics)
        config = json_ready(dataclasses.asdict(report.config))
        folder.write_json("config.json", config)
        save_checked_tensors(flatten_params(report.params), folder.path / "params.safetensors",
                             {"config_sha256": config_checksum(config)})
        folder.write_text("summary.md", summary_markdown(metrics))
        if figures:
            write_figures(metrics, report.example, folder.path)
    return Path(out)
