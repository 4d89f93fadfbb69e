"""Diagnostic: is a finished fit's shortfall capacity or generalisation?

Measures a fit written by `pdeflow fit` (a folder with ``params.safetensors``) block by block on its own training
inputs (the first ``--train-inputs``), its validation inputs and its held-out inputs, with the same free-running
surrogate solved from ``u(0)`` alone; beside it, the kernel on the transformer's own state entering each block,
``hidden[l]·P`` (teacher-forced: a labelled diagnostic, never a headline), and the free-running cosine of long and
short inputs apart. A surrogate whose training inputs sit far above its held-out ones is short of data or
regularisation, not of capacity; one whose teacher-forced maps sit below its free-running ones has a kernel that
has adapted to the surrogate's own states rather than the transformer's.

    pdeflow fit --preset faithful --seed 1 --out runs/minilm-seed1
    python -m experiments.generalisation_gap runs/minilm-seed1
"""

from __future__ import annotations

import sys

import numpy as np

from experiments.common import check_fit_folder, fit_folder_parser, load_fit, run_and_write

SPLITS = ("train", "validation", "test")


def split_blocks(params, surrogate, solver, trace, long_tokens: int, batch_size: int = 32) -> dict:
    """One split's per-block figures: ``{"inputs", "long_inputs", "free": {"cosine": [L], "js": [L]},
    "forced": {"cosine": [L]}, "free_long": {"cosine": [L]}, "free_short": {"cosine": [L]}}``; "long" inputs have
    at least ``long_tokens`` real tokens (a part with no input is NaN)."""
    import jax
    import jax.numpy as jnp

    from pdeflow import metrics
    from pdeflow.pde import attention_pde
    from pdeflow.surrogate import predict_attention

    L = surrogate.num_layers
    free = metrics.attention_fidelity(trace.attention, predict_attention(params, surrogate, solver, trace, batch_size),
                                      trace.mask)

    @jax.jit
    def forced_maps(hidden, mask):  # (L, B, N, d), (B, N) -> (L, B, H, N, N): the kernel at t = l on hidden[l]·P
        starts = attention_pde.initial_state(params, hidden)
        times = jnp.arange(L, dtype=starts.dtype)
        return jnp.exp(jax.vmap(lambda s, m: attention_pde.log_maps_at(params, surrogate, times, s, m),
                                in_axes=(1, 0), out_axes=1)(starts, mask))

    forced = np.concatenate([np.asarray(forced_maps(jnp.asarray(trace.hidden[:L, i:i + batch_size]),
                                                    jnp.asarray(trace.mask[i:i + batch_size])))
                             for i in range(0, trace.mask.shape[0], batch_size)], axis=1)
    forced_cosine = metrics.attention_fidelity(trace.attention, forced, trace.mask)["cosine"]
    per_input = free["cosine"].mean(2)  # (L, B)
    long = np.asarray(trace.mask).sum(1) >= long_tokens

    def part(keep):
        return [float(x) for x in (per_input[:, keep].mean(1) if keep.any() else np.full(L, np.nan))]

    summary = metrics.summarise(free)
    return {"inputs": int(long.size), "long_inputs": int(long.sum()),
            "free": {name: summary[name] for name in ("cosine", "js")},
            "forced": {"cosine": metrics.summarise({"cosine": forced_cosine})["cosine"]},
            "free_long": {"cosine": part(long)}, "free_short": {"cosine": part(~long)}}


def measure(params, surrogate, solver, splits, train_inputs: int, long_tokens: int, batch_size: int = 32) -> dict:
    """`split_blocks` of the first ``train_inputs`` training inputs, the validation and the held-out inputs."""
    train = splits.train.take(np.arange(min(train_inputs, splits.train.mask.shape[0])))
    traces = {"train": train, "validation": splits.validation, "test": splits.test}
    return {"long_tokens": long_tokens,
            "splits": {name: split_blocks(params, surrogate, solver, traces[name], long_tokens, batch_size)
                       for name in SPLITS}}


def summary(result: dict) -> str:
    splits = result["splits"]
    blocks = len(splits["test"]["free"]["cosine"])
    names = {"train": "training", "validation": "validation", "test": "held-out"}
    lines = [f"# Training, validation and held-out fidelity of one fit ({result['folder']})", "",
             "Cosine per block. *Free*: the surrogate solved from `u(0)` alone (the headline's measure). "
             "*Forced*: the kernel on the transformer's own state entering the block, `hidden[l]·P` (a diagnostic, "
             f"not a headline). *Long*: inputs of at least {result['long_tokens']} tokens.", "",
             "| inputs | " + " | ".join(f"block {i}" for i in range(blocks)) + " | JS max (bits) |",
             "|---|" + "---|" * (blocks + 1)]

    def row(label, values, js=""):
        return f"| {label} | " + " | ".join(f"{v:.5f}" for v in values) + f" | {js} |"

    for name in SPLITS:
        s = splits[name]
        lines.append(row(f"{names[name]} ({s['inputs']}), free", s["free"]["cosine"], f"{max(s['free']['js']):.4f}"))
    for name in SPLITS:
        s = splits[name]
        lines.append(row(f"{names[name]}, forced", s["forced"]["cosine"]))
    for name in SPLITS:
        s = splits[name]
        lines.append(row(f"{names[name]}, free, long ({s['long_inputs']})", s["free_long"]["cosine"]))
        lines.append(row(f"{names[name]}, free, short ({s['inputs'] - s['long_inputs']})", s["free_short"]["cosine"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = fit_folder_parser(__doc__, "experiments/results/generalisation_gap")
    parser.add_argument("--train-inputs", type=int, default=256, help="training inputs measured (the first ones)")
    parser.add_argument("--long-tokens", type=int, default=35, help="an input this long or longer counts as long")
    args = parser.parse_args(argv)
    check_fit_folder(parser, args.folder)
    if args.train_inputs < 1 or args.long_tokens < 2:
        parser.error("need --train-inputs >= 1 and --long-tokens >= 2.")

    def run() -> dict:
        config, params, surrogate, solver, splits = load_fit(args.folder)
        return {"folder": str(args.folder), "model": config["model"], "preset": config.get("preset"),
                "seed": config["fit"]["seed"],
                **measure(params, surrogate, solver, splits, args.train_inputs, args.long_tokens)}

    return run_and_write(args.out, args.overwrite, run, summary, lambda result, out: None)


if __name__ == "__main__":
    sys.exit(main())
