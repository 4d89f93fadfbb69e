"""Sparse Boolean memory (after Wang & E 2024): does one layer with enough heads and FFN width learn a Boolean
function of a few far-apart tokens, and why does parity not?

    python -m experiments.sparse_boolean --out experiments/results/sparse_boolean     # every sweep, ~10 min

Tokens are uniform bits ``x_t ∈ {−1, +1}`` and ``y_t = g(x_{t−T₁}, …, x_{t−T_k})`` with ``g`` parity, AND or
majority (`pdeflow.tasks.sparse_memory.SparseBoolean`); the models are one-layer `RPETransformer` s with
position-only attention (T5 buckets, exact at every lag used here) trained on the MSE to the ±1 target
(`pdeflow.train.memory`). Each cell: normalised test MSE (1 = predicting the mean) and sign error (0.5 = chance
for a balanced target) on 512 fresh sequences, mean ± sd over seeds. The sweeps:

* ``diagnosis``: parity at the smallest size (lags 1, 4, 9 in 16 tokens) and the default one (lags 2, 9, 21 in
  64 tokens) against the peak learning rate, with the training-loss curve;
* ``length``: parity with the same lags (1, 4, 9) in longer sequences, and the default lags in 32 tokens: whether
  the sequence length or the reach of the lags decides if gradient descent finds them;
* ``curriculum``: parity at the default size trained on one lag, then two, then three (each stage from the last
  one's parameters), against direct training for the same total steps;
* ``heads_vs_width``: heads H against FFN width m for each target at the default size, and parity at the
  smallest size.

Each sweep writes ``<sweep>.json`` and ``<sweep>.png``; ``summary.md`` has every table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import numpy as np

from experiments.common import run_and_write
from pdeflow.models.bert import parameter_count
from pdeflow.models.rpe_transformer import RPETransformerConfig
from pdeflow.tasks.sparse_memory import BOOLEAN_TARGETS, SparseBoolean, normalised_mse, sign_error
from pdeflow.train.memory import MemoryTrainConfig, held_out_batch, traces, train_memory_models

SWEEPS = ("diagnosis", "length", "curriculum", "heads_vs_width")
SMALL = ((1, 4, 9), 16)  # (lags, length): the smallest size
DEFAULT = ((2, 9, 21), 64)  # SparseBoolean's defaults
CURVE_POINTS = 20  # training-loss curve kept at this many evenly spaced steps


@dataclasses.dataclass(frozen=True)
class BooleanExperiment:
    """Settings shared by the sweeps.

    Attributes:
        sweeps: which sweeps to run (`SWEEPS`).
        seeds: one model per seed and setting.
        steps: optimiser steps per model (each curriculum stage; ``diagnosis`` trains 2×).
        grid_steps: optimiser steps per model of ``heads_vs_width``.
        learning_rate: peak AdamW learning rate (``diagnosis`` also tries 0.3× and 3×).
        batch_size: sequences per step.
        model_dim, heads, ffn_width: the model of ``diagnosis``, ``length`` and ``curriculum``.
        grid_heads, grid_widths: the grid of ``heads_vs_width``.
        targets: the Boolean targets of ``heads_vs_width``.
    """

    sweeps: tuple[str, ...] = SWEEPS
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 1000
    grid_steps: int = 600
    learning_rate: float = 1e-2
    batch_size: int = 32
    model_dim: int = 32
    heads: int = 4
    ffn_width: int = 64
    grid_heads: tuple[int, ...] = (1, 2, 4)
    grid_widths: tuple[int, ...] = (8, 32, 128)
    targets: tuple[str, ...] = ("majority", "and", "parity")

    def __post_init__(self):
        for name in ("sweeps", "seeds", "grid_heads", "grid_widths", "targets"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if set(self.sweeps) - set(SWEEPS):
            raise ValueError(f"unknown sweeps {sorted(set(self.sweeps) - set(SWEEPS))}; choose from {list(SWEEPS)}.")
        if set(self.targets) - set(BOOLEAN_TARGETS):
            raise ValueError(f"unknown targets {sorted(set(self.targets) - set(BOOLEAN_TARGETS))}; choose from "
                             f"{sorted(BOOLEAN_TARGETS)}.")
        if not self.seeds or min(self.steps, self.grid_steps, self.batch_size) < 1:
            raise ValueError("need at least one seed and positive steps, grid_steps and batch_size.")

    def model(self, heads: int | None = None, ffn_width: int | None = None) -> RPETransformerConfig:
        return RPETransformerConfig(input_dim=1, model_dim=self.model_dim, num_heads=heads or self.heads,
                                    ffn_width=self.ffn_width if ffn_width is None else ffn_width, rpe="t5",
                                    dot_product=False)

    def train(self, steps: int | None = None, learning_rate: float | None = None) -> MemoryTrainConfig:
        return MemoryTrainConfig(steps=steps or self.steps, batch_size=self.batch_size,
                                 learning_rate=learning_rate or self.learning_rate)


def evaluate(task: SparseBoolean, model: RPETransformerConfig, train: MemoryTrainConfig, params) -> dict:
    """Held-out normalised MSE and sign error of each stacked model, as lists over seeds with mean and sd."""
    batch = held_out_batch(task, train)
    predictions, _ = traces(model, params, batch.inputs)
    mse = np.asarray(normalised_mse(predictions, batch.targets, batch.valid))
    wrong = np.asarray(sign_error(predictions, batch.targets, batch.valid))
    return {"errors": mse.tolist(), "mean": float(mse.mean()), "sd": float(mse.std()),
            "sign_errors": wrong.tolist(), "sign_mean": float(wrong.mean()), "sign_sd": float(wrong.std())}


def _curve(losses: np.ndarray) -> dict:
    """The mean-over-seeds training loss at `CURVE_POINTS` steps (each the mean of the 10 steps ending there)."""
    steps = np.unique(np.linspace(min(10, len(losses)), len(losses), CURVE_POINTS).astype(int))
    return {"steps": steps.tolist(), "loss": [float(losses[max(0, s - 10):s].mean()) for s in steps]}


def fit(config: BooleanExperiment, task: SparseBoolean, model: RPETransformerConfig, train: MemoryTrainConfig,
        initial_params=None, progress: bool = False, label: str = "") -> tuple[dict, object]:
    """Train one model per seed and evaluate it: ``(row, stacked params)``."""
    start = time.perf_counter()
    params, losses = train_memory_models(task, model, train, config.seeds, initial_params)
    row = {"target": task.target, "lags": list(task.lags), "length": task.length, "heads": model.num_heads,
           "ffn_width": model.ffn_width, "steps": train.steps, "learning_rate": train.learning_rate,
           **evaluate(task, model, train, params), "curve": _curve(losses),
           "parameters": parameter_count(jax.tree_util.tree_map(lambda p: p[0], params)),
           "seconds": time.perf_counter() - start}
    if progress:
        print(f"  {label} {task.target} lags={task.lags} N={task.length} H={model.num_heads} m={model.ffn_width} "
              f"lr={train.learning_rate:g} steps={train.steps}: mse {row['mean']:.3f} ± {row['sd']:.3f}, sign "
              f"{row['sign_mean']:.3f} ({row['seconds']:.0f} s)", file=sys.stderr, flush=True)
    return row, params


def diagnosis(config: BooleanExperiment, progress: bool) -> dict:
    rows = []
    for size, (lags, length) in (("small", SMALL), ("default", DEFAULT)):
        for factor in (0.3, 1.0, 3.0):
            train = config.train(2 * config.steps, factor * config.learning_rate)
            row, _ = fit(config, SparseBoolean(lags, length, "parity"), config.model(), train, progress=progress)
            rows.append({"size": size, **row})
    return {"claim": "parity fails at the default size whatever the learning rate; it learns at the smallest",
            "rows": rows}


def length(config: BooleanExperiment, progress: bool) -> dict:
    rows = []
    for lags, n in ((SMALL[0], 16), (SMALL[0], 32), (SMALL[0], 64), (DEFAULT[0], 32), DEFAULT):
        row, _ = fit(config, SparseBoolean(lags, n, "parity"), config.model(), config.train(), progress=progress)
        rows.append(row)
    return {"claim": "how far the lags reach (the context uniform initial attention spreads over at the first "
                     "valid position), not the sequence length, decides whether parity is found", "rows": rows}


def curriculum(config: BooleanExperiment, progress: bool) -> dict:
    lags, n = DEFAULT
    model, rows, params = config.model(), [], None
    for k in range(1, len(lags) + 1):
        row, params = fit(config, SparseBoolean(lags[:k], n, "parity"), model, config.train(), params, progress,
                          f"stage {k}:")
        rows.append({"schedule": "curriculum", "stage": k, **row})
    direct, _ = fit(config, SparseBoolean(lags, n, "parity"), model, config.train(len(lags) * config.steps),
                    progress=progress, label="direct:")
    rows.append({"schedule": "direct", "stage": len(lags), **direct})
    return {"claim": "a curriculum over the number of lags (1 -> 2 -> 3) finds the parity that direct training "
                     "does not", "rows": rows}


def heads_vs_width(config: BooleanExperiment, progress: bool) -> dict:
    rows = []
    settings = [(target, "default", DEFAULT) for target in config.targets]
    if "parity" in config.targets:
        settings.append(("parity", "small", SMALL))
    for target, size, (lags, n) in settings:
        for h in config.grid_heads:
            for m in config.grid_widths:
                row, _ = fit(config, SparseBoolean(lags, n, target), config.model(h, m),
                             config.train(config.grid_steps), progress=progress)
                rows.append({"size": size, **row})
    return {"claim": "one layer with enough heads H and FFN width m learns a sparse Boolean function of the lags",
            "rows": rows}


SWEEP_FUNCTIONS = {"diagnosis": diagnosis, "length": length, "curriculum": curriculum,
                   "heads_vs_width": heads_vs_width}


def run_experiment(config: BooleanExperiment, progress: bool = False) -> dict:
    """Every sweep of ``config``: ``{sweep: {"claim", "rows", "seconds"}}`` plus the settings."""
    results = {"settings": dataclasses.asdict(config), "device": jax.devices()[0].device_kind,
               "jax": jax.__version__}
    for name in config.sweeps:
        if progress:
            print(f"{name}:", file=sys.stderr, flush=True)
        start = time.perf_counter()
        results[name] = SWEEP_FUNCTIONS[name](config, progress)
        results[name]["seconds"] = time.perf_counter() - start
    return results


def _cell(row: dict) -> str:
    return f"{row['mean']:.3f} ± {row['sd']:.3f} ({row['sign_mean']:.2f})"


def _table(title: str, header: list[str], rows) -> list[str]:
    return [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def _lags(row: dict) -> str:
    return f"({', '.join(map(str, row['lags']))}) in {row['length']}"


def summary(results: dict) -> str:
    s = results["settings"]
    lines = [f"# Sparse Boolean memory (seeds {s['seeds']}, one layer, position-only T5 attention, model width "
             f"{s['model_dim']})", "",
             "Each cell: normalised test MSE (1 = predicting the mean), mean ± sd over seeds, and in brackets the "
             "mean sign error (0.5 = chance for parity and majority; AND is +1 on 1/8 of inputs).", ""]
    if "diagnosis" in results:
        rows = results["diagnosis"]["rows"]
        lines += _table(f"Parity against the learning rate ({rows[0]['steps']} steps, H = {rows[0]['heads']}, "
                        f"m = {rows[0]['ffn_width']})",
                        ["lags in N", "peak lr", "error", "training loss at 25 / 50 / 100 % of steps"],
                        [[_lags(r), f"{r['learning_rate']:g}", _cell(r),
                          " / ".join(f"{r['curve']['loss'][i]:.3f}" for i in (CURVE_POINTS // 4 - 1,
                                                                               CURVE_POINTS // 2 - 1, -1))]
                         for r in rows])
    if "length" in results:
        rows = results["length"]["rows"]
        lines += _table(f"Parity against sequence length ({rows[0]['steps']} steps, H = {rows[0]['heads']}, "
                        f"m = {rows[0]['ffn_width']})", ["lags in N", "error"],
                        [[_lags(r), _cell(r)] for r in rows])
    if "curriculum" in results:
        rows = results["curriculum"]["rows"]
        lines += _table("Parity at the default size: curriculum over the number of lags vs direct training",
                        ["schedule", "lags", "steps", "error"],
                        [[r["schedule"], ", ".join(map(str, r["lags"])), str(r["steps"]), _cell(r)] for r in rows])
    if "heads_vs_width" in results:
        rows = results["heads_vs_width"]["rows"]
        widths = sorted({r["ffn_width"] for r in rows})
        settings = list(dict.fromkeys((r["target"], _lags(r)) for r in rows))
        lines += _table(f"Heads H vs FFN width m ({rows[0]['steps']} steps)",
                        ["target", "lags in N", "H", *(f"m = {m}" for m in widths)],
                        [[target, where, str(h), *(_cell(r) for m in widths for r in rows
                                                   if (r["target"], _lags(r), r["heads"], r["ffn_width"])
                                                   == (target, where, h, m))]
                         for target, where in settings for h in sorted({r["heads"] for r in rows})])
    return "\n".join(lines)


def write_figures(results: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def curves(ax, rows, label, offsets=None):
        for i, r in enumerate(rows):
            start = 0 if offsets is None else offsets[i]
            ax.plot(np.asarray(r["curve"]["steps"]) + start, r["curve"]["loss"], marker=".", label=label(r))
        ax.set_xlabel("step")
        ax.set_ylabel("training loss (normalised MSE)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)

    for name, label in (("diagnosis", lambda r: f"{_lags(r)}, lr {r['learning_rate']:g}"),
                        ("length", _lags)):
        if name in results:
            fig, ax = plt.subplots(figsize=(5.5, 3.8))
            curves(ax, results[name]["rows"], label)
            ax.set_title(results[name]["claim"], fontsize=8)
            fig.tight_layout()
            fig.savefig(folder / f"{name}.png", dpi=120)
            plt.close(fig)
    if "curriculum" in results:
        rows = results["curriculum"]["rows"]
        staged = [r for r in rows if r["schedule"] == "curriculum"]
        offsets = np.cumsum([0] + [r["steps"] for r in staged[:-1]]).tolist()
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        curves(ax, staged + [r for r in rows if r["schedule"] == "direct"],
               lambda r: f"{r['schedule']}, lags {', '.join(map(str, r['lags']))}", offsets + [0])
        fig.tight_layout()
        fig.savefig(folder / "curriculum.png", dpi=120)
        plt.close(fig)
    if "heads_vs_width" in results:
        rows = results["heads_vs_width"]["rows"]
        settings = list(dict.fromkeys((r["target"], _lags(r)) for r in rows))
        heads, widths = sorted({r["heads"] for r in rows}), sorted({r["ffn_width"] for r in rows})
        fig, axes = plt.subplots(1, len(settings), figsize=(3.2 * len(settings), 3.2), squeeze=False)
        for ax, (target, where) in zip(axes[0], settings):
            grid = np.full((len(heads), len(widths)), np.nan)
            for r in rows:
                if (r["target"], _lags(r)) == (target, where):
                    grid[heads.index(r["heads"]), widths.index(r["ffn_width"])] = r["mean"]
            ax.imshow(grid, vmin=0, vmax=1, cmap="viridis_r")
            for (i, j), v in np.ndenumerate(grid):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v > 0.5 else "black")
            ax.set_xticks(range(len(widths)), [str(m) for m in widths])
            ax.set_yticks(range(len(heads)), [str(h) for h in heads])
            ax.set_xlabel("FFN width m")
            ax.set_ylabel("heads H")
            ax.set_title(f"{target}, lags {where}", fontsize=9)
        fig.tight_layout()
        fig.savefig(folder / "heads_vs_width.png", dpi=120)
        plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/sparse_boolean", help="folder for the JSONs, figures and summary")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                        help="print each setting's errors as it finishes")
    parser.add_argument("--sweeps", nargs="+", default=list(SWEEPS), choices=SWEEPS, metavar="SWEEP",
                        help=f"which sweeps to run (default: all of {', '.join(SWEEPS)})")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(BooleanExperiment.seeds),
                        help="one model per seed and setting (error bars are over seeds)")
    parser.add_argument("--steps", type=int, default=BooleanExperiment.steps,
                        help="optimiser steps per model (per curriculum stage)")
    parser.add_argument("--grid-steps", type=int, default=BooleanExperiment.grid_steps,
                        help="optimiser steps per model of heads_vs_width")
    parser.add_argument("--grid-heads", type=int, nargs="+", default=list(BooleanExperiment.grid_heads))
    parser.add_argument("--grid-widths", type=int, nargs="+", default=list(BooleanExperiment.grid_widths))
    parser.add_argument("--targets", nargs="+", default=list(BooleanExperiment.targets),
                        choices=sorted(BOOLEAN_TARGETS), help="the targets of heads_vs_width")
    args = parser.parse_args(argv)
    config = BooleanExperiment(sweeps=tuple(args.sweeps), seeds=tuple(args.seeds), steps=args.steps,
                               grid_steps=args.grid_steps, grid_heads=tuple(args.grid_heads),
                               grid_widths=tuple(args.grid_widths), targets=tuple(args.targets))
    return run_and_write(args.out, args.overwrite, lambda: run_experiment(config, args.progress), summary,
                         write_figures, parts=lambda results: {name: results[name] for name in config.sweeps})


if __name__ == "__main__":
    sys.exit(main())
