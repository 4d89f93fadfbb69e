"""Diagnostic: how a fitted surrogate's states relate to the transformer's, block by block.

For each folder written by `pdeflow fit` (it must hold ``params.safetensors``), on that fit's own held-out
inputs (the split its ``config.json`` names), block by block:

- the free-running surrogate's maps against the transformer's (held-out cosine: the report's headline);
- its kernel read on the transformer's own states ``hidden[l]·P`` instead of ``u(l)`` (teacher-forced: a
  labelled diagnostic, never a headline; a surrogate started from the transformer reads them exactly);
- the states: cosine of ``u(l)`` with ``hidden[l]·P`` per token, their relative distance
  ``|u(l) − hidden[l]·P| / |hidden[l]·P|``, the norm ratio, and the relative error of the read-out of ``u(l)``
  against ``hidden[l]`` (what the fit's hidden-state term lowers).

    pdeflow fit --preset faithful --out runs/minilm
    python -m experiments.state_drift runs/minilm --out experiments/results/state_drift
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import check_fit_folder, run_and_write

BATCH = 16


@jax.jit
def _state_stats(states, target, mask):
    """Per-block means over real tokens of ``states, target (L+1, B, N, r)``: cosine, relative distance and
    norm ratio of ``states`` against ``target``."""
    weights = mask[None].astype(states.dtype)
    norm_u, norm_t = jnp.linalg.norm(states, axis=-1), jnp.linalg.norm(target, axis=-1)
    cosine = jnp.sum(states * target, axis=-1) / jnp.maximum(norm_u * norm_t, 1e-12)
    distance = jnp.linalg.norm(states - target, axis=-1) / jnp.maximum(norm_t, 1e-12)
    ratio = norm_u / jnp.maximum(norm_t, 1e-12)
    return tuple(jnp.sum(x * weights, axis=(1, 2)) for x in (cosine, distance, ratio))


def drift(params: dict, surrogate, solver, test) -> dict:
    """The block-by-block figures of the module's docstring for a fitted surrogate on the held-out trace
    ``test``: ``{"map_cosine": {"free_running": [L], "kernel_on_transformer_states": [L]}, "state_cosine",
    "state_distance", "state_norm_ratio", "readout_error": [L+1] each}``."""
    from experiments.kernel_capacity import teacher_forced_log_maps
    from pdeflow import metrics
    from pdeflow.pde import attention_pde
    from pdeflow.surrogate import surrogate_forward, token_laplacians

    forward = jax.jit(surrogate_forward, static_argnums=(1, 2))
    read = jax.jit(teacher_forced_log_maps, static_argnums=1)  # the kernel on hidden[l]·P
    free, forced, read_error = [], [], []
    sums, tokens = np.zeros((3, surrogate.num_layers + 1)), 0
    for start in range(0, test.mask.shape[0], BATCH):
        hidden, mask = jnp.asarray(test.hidden[:, start:start + BATCH]), jnp.asarray(test.mask[start:start + BATCH])
        out = forward(params, surrogate, solver, hidden[0], token_laplacians(mask, surrogate), mask)
        target = hidden @ params["projection"]
        free.append(np.exp(np.asarray(out.log_attention)))
        forced.append(np.exp(np.asarray(read(params, surrogate, hidden, mask))))
        sums += np.asarray(_state_stats(out.states, target, mask))
        tokens += int(jnp.sum(mask))
        real = np.asarray(mask, bool)
        error = np.linalg.norm(np.asarray(attention_pde.readout(params, out.states) - hidden), axis=-1)
        read_error.append(error[:, real] / np.linalg.norm(np.asarray(hidden), axis=-1)[:, real])
    cosine = {name: metrics.summarise(metrics.attention_fidelity(test.attention, np.concatenate(maps, axis=1),
                                                                 test.mask))["cosine"]
              for name, maps in (("free_running", free), ("kernel_on_transformer_states", forced))}
    state_cosine, distance, ratio = (sums / tokens).tolist()
    return {"map_cosine": cosine, "state_cosine": state_cosine, "state_distance": distance,
            "state_norm_ratio": ratio, "readout_error": np.concatenate(read_error, axis=1).mean(axis=1).tolist()}


def measure(folder: Path, splits_cache: dict) -> dict:
    """`drift` of the fit in ``folder`` on its own held-out inputs (traced once per model and data split)."""
    from pdeflow.report import load_surrogate
    from pdeflow.sources import DataConfig, model_source_for

    config = json.loads((folder / "config.json").read_text())
    params, surrogate, solver = load_surrogate(folder)
    key = (config["model"], json.dumps(config["data"], sort_keys=True))
    if key not in splits_cache:
        splits_cache[key] = model_source_for(config["model"]).trace_splits(DataConfig(**config["data"]))
    test = splits_cache[key].test
    return {"folder": str(folder), "model": config["model"], "preset": config.get("preset"),
            "held_out_inputs": int(test.mask.shape[0]), **drift(params, surrogate, solver, test)}


def summary(result: dict) -> str:
    lines = ["# Surrogate states against the transformer's (a diagnostic)", "",
             "Held-out inputs of each fit. Map rows: cosine with the transformer's maps, block by block — the "
             "free-running surrogate (the headline) and its kernel read on the transformer's own states "
             "`hidden[l]·P` (teacher-forced, a diagnostic). State rows: at depth-time t = 0 … L, mean over real "
             "tokens.", ""]
    for run in result["runs"]:
        blocks = len(run["map_cosine"]["free_running"])
        lines += [f"## {run['folder']} ({run['model']}, preset {run['preset']}, {run['held_out_inputs']} inputs)",
                  "", "| | " + " | ".join(f"block {i}" for i in range(blocks)) + " |",
                  "|---|" + "---|" * blocks]
        lines += [f"| map cosine, {name.replace('_', ' ')} | " + " | ".join(f"{c:.3f}" for c in values) + " |"
                  for name, values in run["map_cosine"].items()]
        lines += ["", "| | " + " | ".join(f"t = {t}" for t in range(blocks + 1)) + " |",
                  "|---|" + "---|" * (blocks + 1)]
        for name in ("state_cosine", "state_distance", "state_norm_ratio", "readout_error"):
            lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(f"{v:.3f}" for v in run[name]) + " |")
        lines.append("")
    return "\n".join(lines)


def figures(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pdeflow.store import save_figure

    fig, (maps, states) = plt.subplots(1, 2, figsize=(10, 3.8))
    for index, run in enumerate(result["runs"]):  # a colour per fit; solid: the surrogate's own, dashed: the other
        name, colour = Path(run["folder"]).name, f"C{index}"
        for kind, style in (("free_running", "-o"), ("kernel_on_transformer_states", "--s")):
            maps.plot(run["map_cosine"][kind], style, color=colour, label=f"{name}: {kind.replace('_', ' ')}")
        states.plot(run["state_distance"], "-o", color=colour, label=f"{name}: |u − hP| / |hP|")
        states.plot(run["readout_error"], "--s", color=colour, label=f"{name}: read-out error")
    maps.set(xlabel="block", ylabel="held-out cosine with the transformer's maps", title="maps")
    states.set(xlabel="depth-time t", ylabel="relative error", title="states")
    for axis in (maps, states):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    save_figure(fig, out, "state_drift.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="folders written by `pdeflow fit`")
    parser.add_argument("--out", default="experiments/results/state_drift", help="output folder (written atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    for folder in args.folders:
        check_fit_folder(parser, folder)

    def run() -> dict:
        cache: dict = {}
        runs = []
        for folder in args.folders:
            runs.append(measure(folder, cache))
            print(f"{folder}: measured", file=sys.stderr, flush=True)
        return {"runs": runs}

    return run_and_write(args.out, args.overwrite, run, summary, figures)


if __name__ == "__main__":
    sys.exit(main())
