"""Long, sparse memory (after Wang & E 2024): what heads, layers, FFN width, relative-position encodings and
dot-product attention each buy, and which position-bias family the attention-PDE recovers from trained models.

    python -m experiments.sparse_memory --out results/sparse_memory            # every sweep, a few minutes
    python -m experiments.sparse_memory --sweeps rpe_vs_tail --large           # longer memories (for a GPU)

Every model is an `RPETransformer` trained on a task of `pdeflow.tasks.sparse_memory` with one seed per
model (initialisation and training stream), several seeds trained at once; errors are normalised test MSEs
(1 = predicting the mean) on fresh sequences, reported as mean ± sd over seeds. The sweeps:

* ``rpe_vs_tail``: position-only attention (no dot product) with log- vs linear-type RPE, against the number
  of heads H, on heavy-tailed (power-law) and light-tailed (Matérn-type) smooth memory kernels;
* ``depth_vs_nesting``: one layer vs two on adaptive memory (the lag is chosen by the tokens) and on nested
  adaptive memory (a fetched token chooses the next lag);
* ``dot_product``: with and without the ``q·k`` term on adaptive memory, and on fixed-lag memory as a control;
* ``heads_vs_width``: H against the FFN width m on fixed memory with two lags and a read-out that mixes them,
  ``y_t = sin(2x_{t−4})cos(x_{t−20}) + sin(2x_{t−20})cos(x_{t−4})``;
* ``depth_vs_heads``: (L, H, m) = (1, 4, 4m₀), (2, 2, 2m₀), (4, 1, m₀) at equal parameter count;
* ``pde_positional``: the attention-PDE with each position-bias family fitted to the maps of models whose
  RPE is free (T5 buckets), per memory type; which family fits the held-out maps best, and its decay. As a
  check of the method, the same fit on models trained with linear and with log RPE.

Each sweep writes ``<sweep>.json`` and ``<sweep>.png``; ``summary.md`` has every table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import run_and_write
from pdeflow.fitting.fit import FitConfig, evaluate_losses, fit_surrogate
from pdeflow.metrics import attention_kl
from pdeflow.models.bert import parameter_count
from pdeflow.models.rpe_transformer import RPETransformerConfig
from pdeflow.models.trace import Trace
from pdeflow.pde.attention_pde import SurrogateConfig
from pdeflow.pde.solve import SolverConfig
from pdeflow.surrogate import predict_attention
from pdeflow.tasks.sparse_memory import (
    AdaptiveMemory,
    FixedMemory,
    SmoothMemory,
    sample,
)
from pdeflow.train.memory import MemoryTrainConfig, held_out_errors, traces, train_memory_models

SWEEPS = ("rpe_vs_tail", "depth_vs_nesting", "dot_product", "heads_vs_width", "depth_vs_heads", "pde_positional")


@dataclasses.dataclass(frozen=True)
class MemoryExperiment:
    """Settings shared by the sweeps.

    Attributes:
        sweeps: which sweeps to run (`SWEEPS`).
        seeds: one model per seed and setting.
        steps: optimiser steps per model.
        batch_size: sequences per step.
        learning_rate: peak learning rate.
        large: longer sequences, lags and kernels (4× the default), and 4× the steps: for a GPU.
        model_dim: width of every model's residual stream.
        pde_steps: optimiser steps of each PDE fit.
        pde_heads: heads of the models the PDE is fitted to.
    """

    sweeps: tuple[str, ...] = SWEEPS
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 1000
    batch_size: int = 32
    learning_rate: float = 1e-2
    large: bool = False
    model_dim: int = 32
    pde_steps: int = 200
    pde_heads: int = 2

    def __post_init__(self):
        object.__setattr__(self, "sweeps", tuple(self.sweeps))
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        unknown = set(self.sweeps) - set(SWEEPS)
        if unknown:
            raise ValueError(f"unknown sweeps {sorted(unknown)}; choose from {list(SWEEPS)}.")
        if not self.seeds or self.steps < 1 or self.batch_size < 1:
            raise ValueError("need at least one seed, steps >= 1 and batch_size >= 1.")

    @property
    def scale(self) -> int:
        return 4 if self.large else 1

    def train_config(self) -> MemoryTrainConfig:
        return MemoryTrainConfig(steps=self.steps * self.scale, batch_size=self.batch_size,
                                 learning_rate=self.learning_rate)

    # the tasks, at this experiment's scale
    def heavy(self) -> SmoothMemory:
        s = self.scale
        return SmoothMemory((("power", 2.0 * s, 1.0),), support=64 * s, readout="linear", length=128 * s)

    def light(self) -> SmoothMemory:
        s = self.scale
        return SmoothMemory((("matern", 4.0 * s, 0.0),), support=64 * s, readout="linear", length=128 * s)

    def adaptive(self, nested: bool = False) -> AdaptiveMemory:
        return AdaptiveMemory(num_keys=12 * self.scale, nested=nested, readout="tanh", length=48 * self.scale)

    def fixed(self) -> FixedMemory:
        s = self.scale
        return FixedMemory(lags=(4 * s, 20 * s), readout="complex", length=48 * s)

    def model(self, task, **settings) -> RPETransformerConfig:
        buckets = dict(num_buckets=64 * self.scale, max_distance=128 * self.scale)
        return RPETransformerConfig(input_dim=task.input_dim, model_dim=self.model_dim, **{**buckets, **settings})


class Runner:
    """Trains each (task, model) once per experiment and remembers the result (sweeps share settings)."""

    def __init__(self, config: MemoryExperiment, progress: bool):
        self.config, self.progress, self.done = config, progress, {}

    def __call__(self, task, model: RPETransformerConfig) -> dict:
        key = (task, model)
        if key not in self.done:
            start = time.perf_counter()
            train = self.config.train_config()
            params, losses = train_memory_models(task, model, train, self.config.seeds)
            errors = held_out_errors(task, model, train, params)
            one = jax.tree_util.tree_map(lambda p: p[0], params)
            self.done[key] = {"errors": errors.tolist(), "mean": float(errors.mean()), "sd": float(errors.std()),
                              "final_train_loss": float(losses[-50:].mean()), "parameters": parameter_count(one),
                              "seconds": time.perf_counter() - start, "params": params}
            if self.progress:
                print(f"  {type(task).__name__} L={model.num_layers} H={model.num_heads} m={model.ffn_width} "
                      f"rpe={model.rpe} dp={model.dot_product}: {errors.mean():.3f} ± {errors.std():.3f} "
                      f"({self.done[key]['seconds']:.0f} s)", file=sys.stderr, flush=True)
        return self.done[key]


def _row(result: dict, **labels) -> dict:
    return {**labels, **{k: v for k, v in result.items() if k != "params"}}


def rpe_vs_tail(config: MemoryExperiment, run: Runner) -> dict:
    heads = (1, 2, 4)
    rows = []
    for memory, task in (("heavy", config.heavy()), ("light", config.light())):
        for family in ("linear", "log"):
            for h in heads:
                model = config.model(task, num_heads=h, rpe=family, dot_product=False, ffn_width=32)
                result = run(task, model)
                slopes = np.asarray(result["params"]["params"]["layer_0"]["position_bias"])[..., 0]  # (seeds, H)
                rows.append(_row(result, memory=memory, rpe=family, heads=h, slopes=slopes.tolist()))
    return {"claim": "log-type RPE suits heavy-tailed memory and linear-type light-tailed memory",
            "tasks": {"heavy": dataclasses.asdict(config.heavy()), "light": dataclasses.asdict(config.light())},
            "rows": rows}


def depth_vs_nesting(config: MemoryExperiment, run: Runner) -> dict:
    rows = []
    for memory, task in (("adaptive", config.adaptive()), ("nested", config.adaptive(nested=True))):
        for layers in (1, 2):
            model = config.model(task, num_layers=layers, num_heads=2, rpe="t5")
            rows.append(_row(run(task, model), memory=memory, layers=layers))
    return {"claim": "one layer suffices for adaptive memory; nested memory needs depth",
            "tasks": {"adaptive": dataclasses.asdict(config.adaptive()),
                      "nested": dataclasses.asdict(config.adaptive(nested=True))},
            "rows": rows}


def dot_product(config: MemoryExperiment, run: Runner) -> dict:
    rows = []
    for memory, task, heads in (("adaptive", config.adaptive(), 2), ("fixed", config.fixed(), 2)):
        for dp in (True, False):
            model = config.model(task, num_heads=heads, rpe="t5", dot_product=dp)
            rows.append(_row(run(task, model), memory=memory, dot_product=dp, heads=heads))
    return {"claim": "dot-product attention is needed for adaptive memory (not for fixed memory)",
            "tasks": {"adaptive": dataclasses.asdict(config.adaptive()), "fixed": dataclasses.asdict(config.fixed())},
            "rows": rows}


def heads_vs_width(config: MemoryExperiment, run: Runner) -> dict:
    task = config.fixed()
    rows = []
    for h in (1, 2, 4):
        for m in (8, 32, 128):
            model = config.model(task, num_heads=h, ffn_width=m, rpe="t5", dot_product=False)
            rows.append(_row(run(task, model), heads=h, ffn_width=m))
    return {"claim": "heads fetch the M memory positions (H >= M needed); the FFN width approximates the "
                     "read-out",
            "tasks": {"fixed": dataclasses.asdict(task)}, "rows": rows}


def depth_vs_heads(config: MemoryExperiment, run: Runner) -> dict:
    rows = []
    for memory, task in (("nested", config.adaptive(nested=True)), ("fixed", config.fixed())):
        for layers, heads, width in ((1, 4, 128), (2, 2, 64), (4, 1, 32)):
            model = config.model(task, num_layers=layers, num_heads=heads, ffn_width=width, rpe="t5")
            rows.append(_row(run(task, model), memory=memory, layers=layers, heads=heads, ffn_width=width))
    return {"claim": "at equal parameter count, depth wins where memories depend on each other (nested)",
            "tasks": {"nested": dataclasses.asdict(config.adaptive(nested=True)),
                      "fixed": dataclasses.asdict(config.fixed())},
            "rows": rows}


PDE_FAMILIES = ("none", "linear", "log", "t5", "offsets")


def _memory_traces(task, model: RPETransformerConfig, params, seed: int, sizes=(64, 32, 64), length: int = 64):
    """Train / validation / test traces of the first seed's model on fresh sequences (test never fitted), cut to
    their first ``length`` tokens (the model is causal with relative positions only, so a prefix's trace is the
    trace's prefix; shorter sequences keep the PDE fits cheap)."""
    one = jax.tree_util.tree_map(lambda p: p[:1], params)
    out = []
    for split, size in enumerate(sizes):
        batch = sample(task, jax.random.fold_in(jax.random.PRNGKey(seed), 1000 + split), size)
        _, trace = traces(model, one, batch.inputs[:, :length])
        out.append(jax.tree_util.tree_map(lambda x: np.asarray(x[0]), trace))
    return out


def uniform_kl(trace: Trace) -> float:
    """Held-out KL of uniform causal attention (the trivial baseline)."""
    n = trace.mask.shape[1]
    log_uniform = jnp.where(jnp.tril(jnp.ones((n, n), bool)), -jnp.log(jnp.arange(1, n + 1))[:, None], -jnp.inf)
    kl = jax.vmap(lambda p, m: attention_kl(p, log_uniform, m))(trace.attention.swapaxes(0, 1), trace.mask)
    return float(kl.mean())


def last_row_kernel(attention) -> list:
    """``(H, N)``: each head's attention of the last query over distances 0 … N−1, mean over inputs (block 0)."""
    return np.asarray(attention)[0, :, :, -1, ::-1].mean(0).tolist()


def fit_families(config: MemoryExperiment, trace_splits, families=PDE_FAMILIES) -> dict:
    """Fit the PDE with each position family to ``(train, validation, test)`` traces of a one-layer causal model;
    held-out KL per family, the fitted slopes of the parametric ones, each head's kernel, and which of linear
    and log fits better."""
    train, validation, test = trace_splits
    n, heads = train.mask.shape[1], train.num_heads
    out = {"uniform_kl": uniform_kl(test), "families": {}, "model_kernel": last_row_kernel(test.attention)}
    for family in families:
        surrogate = SurrogateConfig(num_layers=train.num_layers, num_heads=heads, model_dim=train.hidden.shape[-1],
                                    width=16, key_dim=8, value_rank=2, mlp_width=16, num_knots=1,
                                    max_distance=n - 1, position_family=family, position_buckets=32, causal=True)
        # a one-layer model's maps are the kernel at t = 0 on u(0): the solve to t = 1 does not enter the
        # attention loss, so one fixed Euler step keeps the fit cheap (a deeper model needs a real solver)
        solver = SolverConfig() if train.num_layers > 1 else SolverConfig("euler", adaptive=False, dt0=1.0,
                                                                           adjoint="stored")
        fit = fit_surrogate(train, validation, surrogate, solver,
                            FitConfig(steps=config.pde_steps, batch_size=32, learning_rate=3e-2, eval_every=25,
                                      patience=0, seed=0, devices=1), progress=False)
        kl, _ = evaluate_losses(fit.params, surrogate, solver, Trace(*test), 32)
        entry = {"test_kl": kl,
                 "kernel": last_row_kernel(predict_attention(fit.params, surrogate, solver, Trace(*test), 32))}
        if family in ("linear", "log"):
            entry["slopes"] = np.asarray(fit.params["kernel"]["position_bias"])[0, :, 0].tolist()
        out["families"][family] = entry
    parametric = {f: out["families"][f]["test_kl"] for f in ("linear", "log") if f in out["families"]}
    out["recovered"] = min(parametric, key=parametric.get) if parametric else None
    return out


def pde_positional(config: MemoryExperiment, run: Runner) -> dict:
    h = config.pde_heads
    rows = []
    for memory, task in (("heavy", config.heavy()), ("light", config.light())):
        for trained_rpe in ("t5", "linear", "log"):
            model = config.model(task, num_heads=h, rpe=trained_rpe, dot_product=False, ffn_width=32)
            result = run(task, model)
            families = PDE_FAMILIES if trained_rpe == "t5" else ("linear", "log")
            fitted = fit_families(config, _memory_traces(task, model, result["params"], config.seeds[0]), families)
            row = {"memory": memory, "trained_rpe": trained_rpe, "model_error": result["mean"], **fitted}
            if trained_rpe in ("linear", "log"):  # the truth the PDE's slopes should recover (first seed)
                row["model_slopes"] = np.asarray(result["params"]["params"]["layer_0"]["position_bias"])[0, :, 0]
            rows.append(row)
            if run.progress:
                print(f"  PDE on {memory}/{trained_rpe}: recovered {fitted['recovered']} "
                      + " ".join(f"{f}={v['test_kl']:.4f}" for f, v in fitted["families"].items()),
                      file=sys.stderr, flush=True)
    return {"claim": "the PDE's position bias recovers a power law (log family) from heavy-tailed memory and an "
                     "exponential (linear family) from light-tailed memory",
            "rows": rows}


SWEEP_FUNCTIONS = {"rpe_vs_tail": rpe_vs_tail, "depth_vs_nesting": depth_vs_nesting, "dot_product": dot_product,
                   "heads_vs_width": heads_vs_width, "depth_vs_heads": depth_vs_heads,
                   "pde_positional": pde_positional}


def run_experiment(config: MemoryExperiment, progress: bool = False) -> dict:
    """Every sweep of ``config``: ``{sweep: {"claim", "rows", ...}}`` plus the settings."""
    runner = Runner(config, progress)
    results = {"settings": dataclasses.asdict(config), "train": dataclasses.asdict(config.train_config()),
               "device": jax.devices()[0].device_kind, "jax": jax.__version__}
    for name in config.sweeps:
        if progress:
            print(f"{name}:", file=sys.stderr, flush=True)
        start = time.perf_counter()
        results[name] = SWEEP_FUNCTIONS[name](config, runner)
        results[name]["seconds"] = time.perf_counter() - start
    return results


def _pm(row: dict) -> str:
    return f"{row['mean']:.3f} ± {row['sd']:.3f}"


def _table(title: str, header: list[str], rows) -> list[str]:
    """The lines of one section of the summary: ``## title``, then a markdown table of ``rows`` (lists of cells)
    under ``header``, then a blank line."""
    return [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def summary(results: dict) -> str:
    s = results["settings"]
    lines = [f"# Long, sparse memory (seeds {s['seeds']}, {results['train']['steps']} steps, "
             f"{'large' if s['large'] else 'default'} size)", "",
             "Normalised test MSE (1 = predicting the mean), mean ± sd over seeds.", ""]
    if "rpe_vs_tail" in results:
        rows = results["rpe_vs_tail"]["rows"]
        heads = sorted({r["heads"] for r in rows})
        lines += _table("Log- vs linear-type RPE on heavy- and light-tailed memory (position-only attention)",
                        ["memory", "RPE", *(f"H={h}" for h in heads)],
                        [[memory, family, *(_pm(r) for h in heads for r in rows
                                            if (r["memory"], r["rpe"], r["heads"]) == (memory, family, h))]
                         for memory in ("heavy", "light") for family in ("linear", "log")])
    if "depth_vs_nesting" in results:
        rows = results["depth_vs_nesting"]["rows"]
        lines += _table("One layer vs two on adaptive and nested adaptive memory (T5 RPE, dot product, H=2)",
                        ["memory", "L=1", "L=2"],
                        [[memory, *(_pm(r) for r in rows if r["memory"] == memory)]
                         for memory in ("adaptive", "nested")])
    if "dot_product" in results:
        by_memory = {memory: [r for r in results["dot_product"]["rows"] if r["memory"] == memory]
                     for memory in ("adaptive", "fixed")}
        lines += _table("With and without dot-product attention (T5 RPE, L=1)",
                        ["memory", "heads", "with q·k", "position only"],
                        [[memory, str(rows[0]["heads"]), *map(_pm, rows)] for memory, rows in by_memory.items()])
    if "heads_vs_width" in results:
        rows = results["heads_vs_width"]["rows"]
        widths = sorted({r["ffn_width"] for r in rows})
        lines += _table("Heads H vs FFN width m on fixed memory with lags 4 and 20 (complex read-out)",
                        ["H", *(f"m={m}" for m in widths)],
                        [[str(h), *(_pm(r) for m in widths for r in rows if (r["heads"], r["ffn_width"]) == (h, m))]
                         for h in sorted({r["heads"] for r in rows})])
    if "depth_vs_heads" in results:
        lines += _table("Depth vs heads at equal parameter count (T5 RPE, dot product)",
                        ["memory", "L", "H", "m", "parameters", "error"],
                        [[str(r[key]) for key in ("memory", "layers", "heads", "ffn_width", "parameters")] + [_pm(r)]
                         for r in results["depth_vs_heads"]["rows"]])
    if "pde_positional" in results:
        rows = []
        for r in results["pde_positional"]["rows"]:
            slopes = r["families"].get(r["recovered"], {}).get("slopes", [])
            truth = f" ({', '.join(f'{p:.2f}' for p in r['model_slopes'])})" if "model_slopes" in r else ""
            rows.append([r["memory"], f"{r['trained_rpe']}{truth}", f"{r['uniform_kl']:.4f}",
                         *(f"{r['families'][f]['test_kl']:.4f}" if f in r["families"] else "" for f in PDE_FAMILIES),
                         r["recovered"], ", ".join(f"{p:.2f}" for p in slopes)])
        lines += _table("The attention-PDE's position-bias family fitted to trained models (held-out KL, nats)",
                        ["memory", "model's RPE (slopes)", "uniform", *PDE_FAMILIES, "best of linear/log",
                         "its fitted slopes"], rows)
    return "\n".join(lines)


def write_figures(results: dict, folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def bars(ax, labels, rows, title):
        means, sds = [r["mean"] for r in rows], [r["sd"] for r in rows]
        ax.bar(range(len(rows)), means, yerr=sds, capsize=3, color="tab:blue")
        ax.set_xticks(range(len(rows)), labels, rotation=20)
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("normalised test MSE")

    if "rpe_vs_tail" in results:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5), sharey=True)
        rows = results["rpe_vs_tail"]["rows"]
        for ax, memory in zip(axes, ("heavy", "light")):
            for family, color in (("linear", "tab:orange"), ("log", "tab:blue")):
                sel = [r for r in rows if r["memory"] == memory and r["rpe"] == family]
                ax.errorbar([r["heads"] for r in sel], [r["mean"] for r in sel], [r["sd"] for r in sel],
                            marker="o", capsize=3, label=f"{family} RPE", color=color)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("heads H")
            ax.set_title(f"{memory}-tailed memory kernel")
        axes[0].set_ylabel("normalised test MSE")
        axes[0].legend()
        fig.tight_layout()
        fig.savefig(folder / "rpe_vs_tail.png", dpi=120)
        plt.close(fig)
    for name, label in (("depth_vs_nesting", lambda r: f"{r['memory']}\nL={r['layers']}"),
                        ("dot_product", lambda r: f"{r['memory']}\n{'q·k + RPE' if r['dot_product'] else 'RPE only'}"),
                        ("depth_vs_heads", lambda r: f"{r['memory']}\nL{r['layers']} H{r['heads']} m{r['ffn_width']}")):
        if name in results:
            rows = results[name]["rows"]
            fig, ax = plt.subplots(figsize=(1.3 * len(rows) + 2, 3.5))
            bars(ax, [label(r) for r in rows], rows, results[name]["claim"])
            fig.tight_layout()
            fig.savefig(folder / f"{name}.png", dpi=120)
            plt.close(fig)
    if "heads_vs_width" in results:
        rows = results["heads_vs_width"]["rows"]
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for m in sorted({r["ffn_width"] for r in rows}):
            sel = [r for r in rows if r["ffn_width"] == m]
            ax.errorbar([r["heads"] for r in sel], [r["mean"] for r in sel], [r["sd"] for r in sel], marker="o",
                        capsize=3, label=f"m = {m}")
        ax.set_yscale("log")
        ax.set_xlabel("heads H (the memory has 2 lags)")
        ax.set_ylabel("normalised test MSE")
        ax.legend()
        fig.tight_layout()
        fig.savefig(folder / "heads_vs_width.png", dpi=120)
        plt.close(fig)
    if "pde_positional" in results:
        rows = results["pde_positional"]["rows"]
        fig, axes = plt.subplots(2, len(rows), figsize=(2.6 * len(rows), 6.4), squeeze=False)
        for ax, r in zip(axes[0], rows):
            names = [f for f in PDE_FAMILIES if f in r["families"]]
            ax.bar(range(len(names) + 1), [r["uniform_kl"]] + [r["families"][f]["test_kl"] for f in names],
                   color=["grey"] + ["tab:green" if f == r["recovered"] else "tab:blue" for f in names])
            ax.set_xticks(range(len(names) + 1), ["uniform"] + names, rotation=45, fontsize=8)
            ax.set_yscale("log")
            ax.set_title(f"{r['memory']} memory,\nmodel RPE {r['trained_rpe']}", fontsize=9)
        axes[0, 0].set_ylabel("held-out KL (nats)")
        for ax, r in zip(axes[1], rows):
            if "model_kernel" not in r:
                continue
            distance = np.arange(1, len(r["model_kernel"][0]) + 1)  # 1 + δ, for log axes
            for h, row in enumerate(r["model_kernel"]):
                ax.plot(distance, row, color="black", lw=1.5, label="model" if h == 0 else None)
                for family, style in (("linear", "--"), ("log", ":")):
                    if family in r["families"]:
                        ax.plot(distance, r["families"][family]["kernel"][h], style, lw=1.2,
                                color="tab:orange" if family == "linear" else "tab:blue",
                                label=f"PDE {family}" if h == 0 else None)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_ylim(1e-4, 1.0)
            ax.set_xlabel("1 + distance")
        axes[1, 0].set_ylabel("attention of the last token")
        axes[1, 0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(folder / "pde_positional.png", dpi=120)
        plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/sparse_memory", help="folder for the JSONs, figures and summary")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                        help="print each model's error as it finishes")
    parser.add_argument("--sweeps", nargs="+", default=list(SWEEPS), choices=SWEEPS, metavar="SWEEP",
                        help=f"which sweeps to run (default: all of {', '.join(SWEEPS)})")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(MemoryExperiment.seeds),
                        help="one model per seed and setting (error bars are over seeds)")
    parser.add_argument("--steps", type=int, default=MemoryExperiment.steps, help="optimiser steps per model")
    parser.add_argument("--learning-rate", type=float, default=MemoryExperiment.learning_rate,
                        help="peak AdamW learning rate")
    parser.add_argument("--pde-steps", type=int, default=MemoryExperiment.pde_steps,
                        help="optimiser steps of each attention-PDE fit (pde_positional)")
    parser.add_argument("--large", action="store_true", help="4x longer memories and 4x the steps (for a GPU)")
    args = parser.parse_args(argv)
    config = MemoryExperiment(sweeps=tuple(args.sweeps), seeds=tuple(args.seeds), steps=args.steps,
                              learning_rate=args.learning_rate, large=args.large, pde_steps=args.pde_steps)
    return run_and_write(args.out, args.overwrite, lambda: run_experiment(config, args.progress), summary,
                         write_figures, parts=lambda results: {name: results[name] for name in config.sweeps})


if __name__ == "__main__":
    sys.exit(main())
