"""Probe: is the faithful preset held back by its step budget? The preset run for many more steps, its held-out
fidelity measured along the way.

The faithful preset's 800 steps are what fits 30 minutes on 2 CPU cores; its deep blocks stop at 0.975 / 0.972.
This script runs the same preset (`pdeflow.pipeline.preset_config`) with ``--steps`` steps (the shooting phase
unchanged) and, at every ``--eval-every`` steps, measures the **free-running** surrogate of that step on the
held-out inputs (cosine and Jensen-Shannon per block; the evaluation's time is not counted as fitting time).
The curve is written after every point, so a run stopped by ``--max-seconds`` (or killed) keeps what it measured.
At the end the parameters with the best validation loss are measured in full (`held_out_fidelity`: baselines,
ablations and the 4×-finer re-solve). Meant for a machine with an accelerator (`benchmarks.gpu_suite` runs it);
it runs anywhere.

    python -m experiments.longer_fit --steps 4000 --out experiments/results/longer_fit/minilm
    python -m experiments.longer_fit --model vit-digits --steps 12000 --out ...

The learning-rate schedule spans ``--steps``, so the point at step 800 is not the 800-step preset's result.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import jax
import numpy as np

from pdeflow import metrics
from pdeflow.fitting.fit import fit_surrogate
from pdeflow.pipeline import held_out_fidelity, preset_config, starting_params, surrogate_config_for
from pdeflow.sources import model_source_for
from pdeflow.store import write_text_atomically
from pdeflow.surrogate import predict_attention


class _OutOfTime(Exception):
    """Raised from the evaluation callback when ``--max-seconds`` has passed."""


def _write_json(path: Path, value) -> None:
    write_text_atomically(path, json.dumps(value, indent=1))


def run(model: str, steps: int, eval_every: int, max_seconds: float, out: Path, length_buckets: int | None,
        shooting_steps: int | None, progress: bool) -> dict:
    source = model_source_for(model)
    config = preset_config("faithful", source)
    fit = dataclasses.replace(config.fit, steps=steps, eval_every=eval_every,
                              length_buckets=config.fit.length_buckets if length_buckets is None else length_buckets,
                              shooting_steps=config.fit.shooting_steps if shooting_steps is None else shooting_steps)
    surrogate = surrogate_config_for(source.shape(), config.surrogate)
    solver = config.solver
    started = time.perf_counter()
    splits = source.trace_splits(config.data, progress)
    blocks = source.block_weights()
    train, test = splits.train, splits.test
    params = starting_params(dataclasses.replace(config, surrogate=surrogate, fit=fit), train, blocks)
    traced = time.perf_counter()
    header = {"model": source.name, "device": f"{jax.devices()[0].platform}:{jax.devices()[0].device_kind}",
              "jax": jax.__version__, "matmul_precision": os.environ.get("JAX_DEFAULT_MATMUL_PRECISION", "default"),
              "preset": "faithful", "steps": steps, "shooting_steps": fit.shooting_steps,
              "length_buckets": fit.length_buckets, "eval_every": eval_every, "train_inputs": int(train.mask.shape[0]),
              "held_out_inputs": int(test.mask.shape[0]), "trace_s": traced - started}
    curve, excluded, best = [], [0.0], {"validation_loss": float("inf"), "params": None, "step": None}
    out.mkdir(parents=True, exist_ok=True)

    def on_eval(record: dict, step_params: dict) -> None:
        began = time.perf_counter()
        if record["validation_loss"] < best["validation_loss"]:
            best.update(validation_loss=record["validation_loss"], step=record["step"],
                        params=jax.tree_util.tree_map(np.asarray, step_params))
        maps = predict_attention(step_params, surrogate, solver, test, fit.batch_size)
        point = {"step": record["step"], "phase": record["phase"], "fit_s": began - traced - excluded[0],
                 "validation_kl": record["validation_kl"], "validation_loss": record["validation_loss"],
                 **metrics.summarise(metrics.attention_fidelity(test.attention, maps, test.mask))}
        curve.append(point)
        _write_json(out / "curve.json", {**header, "curve": curve})
        print(f"step {point['step']:5d} ({point['phase']:8s}) fit {point['fit_s']:7.1f}s  held-out cosine "
              + " ".join(f"{c:.3f}" for c in point["cosine"]) + f"  JS max {max(point['js']):.4f}", flush=True)
        excluded[0] += time.perf_counter() - began
        if time.perf_counter() - started > max_seconds:
            raise _OutOfTime

    stopped = False
    try:
        fit_surrogate(train, splits.validation, surrogate, solver, fit, params=params, progress=progress,
                      on_eval_params=on_eval)
    except _OutOfTime:
        stopped = True
    result = {**header, "stopped_by_time": stopped, "curve": curve, "best_step": best["step"]}
    if best["params"] is not None:
        fidelity, _ = held_out_fidelity(best["params"], surrogate, solver, train, test, 3, fit.batch_size)
        result["best"] = {name: metrics.summarise(value) for name, value in fidelity.items()}
    result["total_s"] = time.perf_counter() - started
    _write_json(out / "results.json", result)
    return result


def summary(result: dict) -> str:
    lines = [f"# Longer fit: the faithful preset on {result['model']}, {result['steps']} steps "
             f"({result['device']}, jax {result['jax']}, matmul precision {result['matmul_precision']})", "",
             "Held-out, free-running surrogate at each evaluation (cosine per block; JS max in bits):", "",
             "| step | phase | fit s | cosine per block | worst | JS max |", "|---|---|---|---|---|---|"]
    for p in result["curve"]:
        lines.append(f"| {p['step']} | {p['phase']} | {p['fit_s']:.0f} | "
                     + " / ".join(f"{c:.3f}" for c in p["cosine"]) + f" | {min(p['cosine']):.3f} | "
                     f"{max(p['js']):.4f} |")
    if "best" in result:
        pde, tight = result["best"]["pde"], result["best"]["pde_tight_solve"]
        lines += ["", f"Best validation step {result['best_step']}: cosine "
                  + " / ".join(f"{c:.3f}" for c in pde["cosine"]) + f" (JS max {max(pde['js']):.4f}); re-solved "
                  "with a 4x finer step " + " / ".join(f"{c:.3f}" for c in tight["cosine"]) + "."]
    if result["stopped_by_time"]:
        lines += ["", "Stopped by --max-seconds before the last step."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="minilm", help="a registered model source")
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--shooting-steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--eval-every", type=int, default=200)
    parser.add_argument("--length-buckets", type=int, default=None, help="default: the preset's")
    parser.add_argument("--max-seconds", type=float, default=float("inf"),
                        help="stop at the first evaluation after this many seconds (tracing included)")
    parser.add_argument("--out", required=True, help="folder for curve.json, results.json and summary.md")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    result = run(args.model, args.steps, args.eval_every, args.max_seconds, out, args.length_buckets,
                 args.shooting_steps, args.progress)
    (out / "summary.md").write_text(summary(result))
    print(summary(result))
    os.sync()


if __name__ == "__main__":
    main()
