"""The cross-modality table: the attention-PDE fitted to MiniLM on text (token chain) and to the ViT on digits
(2-D patch grid), with the same surrogate shape and fitting budget, each measured on held-out inputs beside
every baseline (uniform, previous layer, mean training map) and ablation (the fitted PDE with α = 0, D = 0,
β = 0, not refitted).

    python -m experiments.cross_modality --out results/cross_modality

writes, atomically: ``table.md`` and ``table.json`` (cosine, row-wise JS and top-k per block, per method, per
modality), ``cross_modality.png`` and one full report folder per modality (``minilm/``, ``vit-digits/``, as
``pdeflow fit`` writes them). Defaults are the defaults of ``pdeflow fit`` (its default preset; about 8 minutes
on 2 CPU cores, the ViT is trained first if it is not cached: about 4 more).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from experiments.common import fit_sweep_parser
from pdeflow.fitting.fit import FitConfig
from pdeflow.metrics import METRICS
from pdeflow.pde import SurrogateConfig
from pdeflow.pipeline import MODELS, DataConfig, RunConfig, fit_transformer, preset_config
from pdeflow.report import METHOD_LABELS, fidelity_table, measured_metrics, write_report
from pdeflow.results import as_fit_metrics
from pdeflow.sources import model_source
from pdeflow.store import check_output_dir, result_folder

FIGURE_METRICS = ("cosine", "js")
"""The metrics of the figure's rows (the table has every metric the fits measured)."""

TITLES = {"minilm": "text: all-MiniLM-L6-v2 on pydoc sentences (token chain)",
          "vit-digits": "images: ViT on scikit-learn digits (4x4 patch grid + class token)"}


def table_markdown(results: dict, config: RunConfig) -> str:
    """The Markdown table of every modality in ``results`` (``{model: metrics}``, each a
    `pdeflow.results.FitMetrics` or its JSON form)."""
    s, f = config.surrogate, config.fit
    start = "started from the transformer's weights" if f.init == "transformer" else "random start"
    lines = ["# Cross-modality table: the attention-PDE on text and on images", "",
             f"Same surrogate shape (width {s.width}, key rank {s.key_dim}, value rank {s.value_rank}, "
             f"{s.num_knots} knots, heads = the transformer's; {start}, hidden-state weight {f.hidden_weight:g}) "
             "and the same fitting budget "
             f"({f.steps} steps of "
             f"batch {f.batch_size}, {config.data.num_train} training / {config.data.num_validation} validation "
             f"inputs, seed {f.seed}); every number is on {config.data.num_test} held-out inputs. Ablations are "
             "the fitted PDE with one term switched off (not refitted).", ""]
    for model, metrics in results.items():
        title, metrics = TITLES[model], as_fit_metrics(metrics)
        params = metrics.parameters
        lines += [f"## {title}", "",
                  f"{metrics.model}; surrogate {params.surrogate_used_by_attention_fit:,} parameters used by "
                  f"the attention fit, transformer {params.transformer:,} ({params.transformer_blocks:,} in "
                  f"its blocks); fit {metrics.seconds.fit:.0f} s, stopped at step "
                  f"{metrics.fit.steps_run} (best {metrics.fit.best_step}).", ""]
        for metric in measured_metrics(metrics.held_out):
            lines += [f"### {metric.heading}", ""] + fidelity_table(metrics.held_out, metric.name) + [""]
    return "\n".join(lines)


def table_json(results: dict, config: RunConfig) -> dict:
    """``table.json``: the config, and each modality's held-out fidelity and parameter counts (and the ViT's)."""
    records = {model: as_fit_metrics(metrics) for model, metrics in results.items()}
    vit = records.get("vit-digits")
    return {"config": dataclasses.asdict(config),
            "held_out": {m: r.to_json()["held_out"] for m, r in records.items()},
            "parameters": {m: r.parameters.to_json() for m, r in records.items()},
            "vit": None if vit is None else vit.vit}


def write_figure(results: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(FIGURE_METRICS), len(results), figsize=(6.5 * len(results), 8.5), squeeze=False)
    for column, (model, metrics) in enumerate(results.items()):
        for row, metric in enumerate(METRICS[name] for name in FIGURE_METRICS):
            ax = axes[row, column]
            for method, values in as_fit_metrics(metrics).held_out.items():
                series = np.array(values[metric.name], float)
                ax.plot(np.arange(len(series)), series, marker="o", lw=2.5 if method == "pde" else 1.2,
                        ls="-" if method.startswith("pde") else "--", label=METHOD_LABELS.get(method, method))
            ax.set_title(f"{model}: {metric.axis_title}")
            ax.set_xlabel("transformer block")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("held-out attention fidelity of the attention-PDE, text vs images (same budget)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def config_for(model: str, config: RunConfig) -> RunConfig:
    """``config`` for ``model``, its surrogate reading the state as the model's blocks read their stream (what
    starting from the transformer's weights needs: `pdeflow.sources.ModelSource.block_input_norm`), its batches
    in as many length buckets as its default preset takes (text: 4; a patch grid has one length)."""
    buckets = preset_config("default", model).fit.length_buckets
    return dataclasses.replace(config, model=model, surrogate=dataclasses.replace(
        config.surrogate, state_norm=model_source(model).block_input_norm),
        fit=dataclasses.replace(config.fit, length_buckets=buckets))


def run(config: RunConfig, models=MODELS, progress: bool = True) -> tuple[dict, dict]:
    """Fit every modality with ``config`` (only ``model`` and the state norm change, `config_for`). Returns
    ``({model: metrics}, {model: FitReport})``."""
    results, reports = {}, {}
    for model in models:
        started = time.perf_counter()
        reports[model] = fit_transformer(config_for(model, config), progress=progress)
        results[model] = reports[model].metrics
        held_out = as_fit_metrics(results[model]).held_out
        print(f"{model}: mean held-out cosine {np.mean(held_out['pde']['cosine']):.3f} "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    return results, reports


def main(argv=None) -> int:
    parser = fit_sweep_parser(__doc__, "results/cross_modality", MODELS)
    parser.add_argument("--steps", type=int, default=preset_config("default").fit.steps,
                        help="fit steps (both modalities)")
    parser.add_argument("--width", type=int, default=SurrogateConfig.width, help="surrogate width r")
    parser.add_argument("--key-dim", type=int, default=SurrogateConfig.key_dim, help="rank of each head's maps")
    parser.add_argument("--num-train", type=int, default=DataConfig.num_train, help="training inputs")
    parser.add_argument("--seed", type=int, default=FitConfig.seed, help="seed of the fits")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    args = parser.parse_args(argv)
    default = preset_config("default")  # what `pdeflow fit` runs, with the options above
    config = dataclasses.replace(
        default, data=dataclasses.replace(default.data, num_train=args.num_train),
        surrogate=dataclasses.replace(default.surrogate, width=args.width, key_dim=args.key_dim),
        fit=dataclasses.replace(default.fit, steps=args.steps, seed=args.seed))
    check_output_dir(args.out, args.overwrite)
    results, reports = run(config, args.models, args.progress)
    with result_folder(args.out, args.overwrite) as folder:
        folder.write_text("table.md", table_markdown(results, config))
        folder.write_json("table.json", table_json(results, config))
        write_figure(results, folder.path / "cross_modality.png")
        for model, report in reports.items():
            write_report(report, folder.path / model)
    print(table_markdown(results, config))
    print(f"wrote {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
