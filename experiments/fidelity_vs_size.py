"""Fidelity against size: a sweep of the surrogate's width r and per-head key rank, fitted to MiniLM (text) and to
the ViT (digits), plotting held-out fidelity against the surrogate's parameter count (the Pareto front of each
modality), with the transformer's own parameter count for scale.

    python -m experiments.fidelity_vs_size --out results/fidelity_vs_size

The surrogate's head count is the transformer's in every run (its maps are compared head by head), so size is
swept through the width ``r`` and each head's key rank. Each modality is traced once; every size is fitted with
the same budget and seed and measured on the same held-out inputs. Writes ``sweep.json``, ``sweep.md`` and
``pareto.png`` atomically, and names the smallest surrogate reaching held-out cosine >= ``--target`` on every
block of each modality (or says that none did, and how close the best came). The default grid takes about
30 minutes on 2 CPU cores; ``--widths``/``--key-dims``/``--steps`` make it smaller or larger.

``--reports`` adds the fits of ``pdeflow fit`` output folders (a preset, the default) to the figure and the
table, and ``--from-sweep`` redraws from an earlier ``sweep.json`` instead of refitting the sweep:

    python -m experiments.fidelity_vs_size --from-sweep experiments/results/fidelity_vs_size/sweep.json \
        --reports results/minilm results/faithful-minilm results/faithful-vit --out results/fidelity_vs_size
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from experiments.common import fit_sweep_parser
from pdeflow import metrics
from pdeflow.fitting.fit import FitConfig, fit_surrogate
from pdeflow.models.parameters import parameter_count
from pdeflow.pde import SolverConfig, SurrogateConfig
from pdeflow.pipeline import MODELS, DataConfig, surrogate_config_for
from pdeflow.results import FitMetrics
from pdeflow.sources import model_source
from pdeflow.store import check_output_dir, result_folder
from pdeflow.surrogate import predict_attention


def traced_modality(model: str, data: DataConfig, progress: bool):
    """``(splits, surrogate_from(SurrogateConfig) -> SurrogateConfig, transformer parameter counts)`` of the
    registered model source ``model``."""
    source = model_source(model)
    splits = source.trace_splits(data, progress)
    return splits, lambda s: surrogate_config_for(source.shape(), s), source.describe()["parameters"]


def attention_parameter_count(params: dict) -> int:
    """Parameters the attention fit uses (the r -> d readout serves only the hidden-state term)."""
    return parameter_count({k: v for k, v in params.items() if k != "readout"})


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both axes (fewer parameters, higher fidelity)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def sweep(model: str, sizes, data: DataConfig, solver: SolverConfig, fit: FitConfig, progress: bool) -> dict:
    splits, surrogate_from, transformer = traced_modality(model, data, progress)
    runs = []
    for width, key_dim in sizes:
        surrogate = surrogate_from(SurrogateConfig(width=width, key_dim=key_dim))
        started = time.perf_counter()
        result = fit_surrogate(splits.train, splits.validation, surrogate, solver, fit, progress=progress)
        maps = predict_attention(result.params, surrogate, solver, splits.test, min(fit.batch_size, data.num_test))
        held_out = metrics.summarise(metrics.attention_fidelity(splits.test.attention, maps, splits.test.mask))
        runs.append({"width": width, "key_dim": key_dim, "parameters": attention_parameter_count(result.params),
                     "held_out": held_out, "mean_cosine": float(np.mean(held_out["cosine"])),
                     "min_cosine": float(np.min(held_out["cosine"])), "best_step": result.best_step,
                     "seconds": time.perf_counter() - started})
        print(f"{model} r={width} k={key_dim}: {runs[-1]['parameters']:,} parameters, held-out cosine mean "
              f"{runs[-1]['mean_cosine']:.3f}, min over blocks {runs[-1]['min_cosine']:.3f} "
              f"({runs[-1]['seconds']:.0f} s)", file=sys.stderr)
    front = pareto_front([(r["parameters"], r["mean_cosine"]) for r in runs])
    return {"runs": runs, "pareto_front": front, **transformer}


def smallest_reaching(result: dict, target: float) -> dict | None:
    reaching = [r for r in result["runs"] if r["min_cosine"] >= target]
    return min(reaching, key=lambda r: r["parameters"]) if reaching else None


def sweep_markdown(results: dict, target: float, fit: FitConfig, data: DataConfig, reports: list[dict] = ()) -> str:
    lines = ["# Held-out fidelity against surrogate size", "",
             f"Each surrogate: {fit.steps} steps of batch {fit.batch_size}, {data.num_train} training inputs, seed "
             f"{fit.seed}; cosine on {data.num_test} held-out inputs. Heads = the transformer's. Parameters are those "
             "the attention fit uses.", ""]
    for model, result in results.items():
        lines += [f"## {model} (transformer: {result['transformer']:,} parameters, {result['transformer_blocks']:,} "
                  "in its blocks)", "", "| width r | key rank | parameters | mean cosine | min over blocks | "
                  "per block | Pareto |", "|---|---|---|---|---|---|---|"]
        for i, r in enumerate(result["runs"]):
            lines.append(f"| {r['width']} | {r['key_dim']} | {r['parameters']:,} | {r['mean_cosine']:.3f} | "
                         f"{r['min_cosine']:.3f} | {' '.join(f'{c:.3f}' for c in r['held_out']['cosine'])} | "
                         f"{'yes' if i in result['pareto_front'] else ''} |")
        hit = smallest_reaching(result, target)
        best = max(result["runs"], key=lambda r: r["min_cosine"])
        lines += ["", (f"Smallest surrogate with held-out cosine >= {target} on every block: r = {hit['width']}, key "
                       f"rank {hit['key_dim']} ({hit['parameters']:,} parameters)." if hit else
                       f"No surrogate in the sweep reaches held-out cosine >= {target} on every block; the closest, "
                       f"r = {best['width']}, key rank {best['key_dim']} ({best['parameters']:,} parameters), reaches "
                       f"{best['min_cosine']:.3f} on its worst block."), ""]
    if reports:
        lines += ["## Fits written by `pdeflow fit` (their own settings and budgets)", "",
                  "| model | preset | parameters | fit wall time (s) | mean cosine | min over blocks | per block |",
                  "|---|---|---|---|---|---|---|"]
        for p in reports:
            per_block = " ".join(f"{c:.3f}" for c in p["per_block"])
            lines.append(f"| {p['model']} | {p['label']} | {p['parameters']:,} | {p['seconds']:.0f} | "
                         f"{p['mean_cosine']:.3f} | {p['min_cosine']:.3f} | {per_block} |")
        lines.append("")
    return "\n".join(lines)


def report_point(folder) -> dict:
    """A ``pdeflow fit`` output folder as a point of the figure: ``{"model", "label", "parameters",
    "mean_cosine", "min_cosine", "seconds"}`` (parameters used by the attention fit, held-out cosine of the
    free-running surrogate, the fit's wall time); the label is the preset's name (``"default"`` without one),
    with the seed when it is not 0."""
    metrics_file = Path(folder) / "metrics.json"
    if not metrics_file.is_file():
        raise FileNotFoundError(f"{metrics_file} not found: --reports takes folders written by `pdeflow fit`.")
    found = FitMetrics.from_json(json.loads(metrics_file.read_text()))
    config = json.loads((Path(folder) / "config.json").read_text())
    cosine = list(found.held_out["pde"]["cosine"])
    seed = config.get("fit", {}).get("seed", 0)
    label = (found.preset or "default") + (f" (seed {seed})" if seed else "")
    return {"model": config["model"], "label": label, "folder": str(folder),
            "parameters": found.parameters.surrogate_used_by_attention_fit,
            "mean_cosine": float(np.mean(cosine)), "min_cosine": float(np.min(cosine)),
            "seconds": found.seconds.fit, "per_block": cosine}


def write_figure(results: dict, target: float, path, reports: list[dict] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, grid = plt.subplots(2, 2, figsize=(13, 9.2))
    axes, time_axes = grid
    colors = dict(zip(MODELS, ("tab:blue", "tab:orange")))
    for model, result in results.items():
        color, runs = colors[model], result["runs"]
        for ax, key in zip(time_axes, ("mean_cosine", "min_cosine")):
            ax.scatter([r["seconds"] for r in runs], [r[key] for r in runs], color=color, s=28,
                       label=f"{model} sweep")
        for ax, key in zip(axes, ("mean_cosine", "min_cosine")):
            x = [r["parameters"] for r in runs]
            y = [r[key] for r in runs]
            ax.scatter(x, y, color=color, label=model, s=28)
            for r in runs:
                ax.annotate(f"r{r['width']}k{r['key_dim']}", (r["parameters"], r[key]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
            front = sorted(result["pareto_front"], key=lambda i: runs[i]["parameters"])
            if key == "mean_cosine":
                ax.plot([runs[i]["parameters"] for i in front], [runs[i][key] for i in front], color=color, lw=1.5)
            ax.axvline(result["transformer_blocks"], color=color, ls=":", lw=1.2,
                       label=f"{model} transformer blocks ({result['transformer_blocks']:,})")
    models = sorted({point["model"] for point in reports})
    for point in reports:  # fits written by `pdeflow fit`: stars, named by their preset
        # the faithful fits sit side by side near the target: every other model's name goes to the star's left
        left = point["label"].startswith("faithful") and models.index(point["model"]) % 2 == 1
        for row, x in ((axes, point["parameters"]), (time_axes, point["seconds"])):
            for ax, key in zip(row, ("mean_cosine", "min_cosine")):
                ax.scatter([x], [point[key]], marker="*", s=160, color=colors[point["model"]], edgecolor="black",
                           zorder=3)
                # another seed of a fit sits on its star (same size): its name goes above, to the left
                above = "seed" in point["label"]
                ax.annotate(f"{point['model']} {point['label']}", (x, point[key]), fontsize=7,
                            xytext=(-5, 7) if above else (-5, -12) if left else (5, -10),
                            ha="right" if left or above else "left", textcoords="offset points")
    for row, xlabel in ((axes, "surrogate parameters (attention fit)"), (time_axes, "fit wall time (s)")):
        for ax, title in zip(row, ("mean over blocks", "worst block")):
            ax.axhline(target, color="gray", ls="--", lw=1, label=f"target {target}")
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("held-out cosine")
            ax.set_title(title + (" (line: Pareto front of the sweep)" if row is axes and title[0] == "m" else ""))
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("held-out fidelity against surrogate size, text vs images")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = fit_sweep_parser(__doc__, "results/fidelity_vs_size", MODELS)
    parser.add_argument("--widths", nargs="+", type=int, default=[8, 16, 32, 64, 128], help="surrogate widths r")
    parser.add_argument("--key-dims", nargs="+", type=int, default=[4, 16], help="per-head key ranks")
    parser.add_argument("--steps", type=int, default=150, help="fit steps per size")
    parser.add_argument("--num-train", type=int, default=DataConfig.num_train, help="training inputs")
    parser.add_argument("--target", type=float, default=0.98, help="held-out cosine every block must reach")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty())
    parser.add_argument("--reports", nargs="*", default=[],
                        help="`pdeflow fit` output folders to add to the figure and table (stars, named by preset)")
    parser.add_argument("--from-sweep", default=None,
                        help="an earlier sweep.json to redraw (with --reports) instead of fitting the sweep again")
    args = parser.parse_args(argv)
    data = DataConfig(num_train=args.num_train)
    fit = FitConfig(steps=args.steps, seed=args.seed)
    solver = SolverConfig()
    sizes = [(w, k) for w in args.widths for k in args.key_dims]
    reports = [report_point(folder) for folder in args.reports]
    check_output_dir(args.out, args.overwrite)
    if args.from_sweep:
        earlier = json.loads(Path(args.from_sweep).read_text())
        results = earlier["results"]
        data, fit = DataConfig(**earlier["data"]), FitConfig(**earlier["fit"])
        solver = SolverConfig(**earlier["solver"])
    else:
        results = {model: sweep(model, sizes, data, solver, fit, args.progress) for model in args.models}
    with result_folder(args.out, args.overwrite) as folder:
        folder.write_json("sweep.json", {
            "data": dataclasses.asdict(data), "fit": dataclasses.asdict(fit), "solver": dataclasses.asdict(solver),
            "target": args.target, "results": results, "reports": reports,
            "smallest_reaching_target": {m: smallest_reaching(r, args.target) for m, r in results.items()}})
        folder.write_text("sweep.md", sweep_markdown(results, args.target, fit, data, reports))
        write_figure(results, args.target, folder.path / "pareto.png", reports)
    print(sweep_markdown(results, args.target, fit, data, reports))
    print(f"wrote {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
