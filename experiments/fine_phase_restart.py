"""Probe: is a finished fit still short of its optimum at the step it is measured with?

The faithful preset ends with 150 steps on the solver's own step at the tail of one cosine schedule (the learning
rate about 3 % of its peak, falling to 1 %). If block 5's last thousandth were a matter of training at that
step, more steps there would find it. This probe starts from a finished fit's parameters (a folder written by
`pdeflow fit`, with ``params.safetensors``) and, for each learning rate given, trains ``--steps`` more steps on
the measured step with the fit's own settings (batch, buckets, hidden-state term, kernel rate, seed) and a fresh
AdamW (warm-up, then cosine decay to 1 %), keeping the parameters of the lowest validation loss; then it measures
the free-running surrogate on the fit's own held-out inputs, block by block, beside the starting parameters.
With ``--cosine-weight w`` the arms train (and pick their best parameters) with ``w · (1 − cosine)`` of the maps
added to the fit's loss (`pdeflow.fitting.fit.FitConfig.cosine_weight`): does the measure the headline is given in
find what the KL leaves? With ``--weight-decay w --no-decay-kernel`` they decay the dynamics alone
(`pdeflow.fitting.fit.FitConfig.decay_kernel`): does regularising them narrow the gap between training and held-out
inputs?

    pdeflow fit --preset faithful --seed 1 --out runs/minilm-seed1
    python -m experiments.fine_phase_restart runs/minilm-seed1 --learning-rates 1e-3 5e-5
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from experiments.common import check_fit_folder, fit_folder_parser, load_fit, run_and_write


def held_out_blocks(params, surrogate, solver, test, batch_size: int = 32) -> dict:
    """``{"cosine": [L], "js": [L]}``: the free-running surrogate's maps against ``test``'s, mean per block."""
    from pdeflow import metrics
    from pdeflow.surrogate import predict_attention

    maps = predict_attention(params, surrogate, solver, test, batch_size)
    summary = metrics.summarise(metrics.attention_fidelity(test.attention, maps, test.mask))
    return {name: summary[name] for name in ("cosine", "js")}


def continue_fit(params, surrogate, solver, fit_config, splits, learning_rates, steps: int,
                 cosine_weight: float = 0.0, weight_decay: float | None = None, decay_kernel: bool = True) -> dict:
    """From ``params``, for each learning rate, ``steps`` more steps on ``solver`` (no shooting, no coarse step)
    with ``fit_config``'s other settings; returns ``{"start": held_out_blocks, "arms": [{"learning_rate",
    "best_step", "validation_kl": [...], "validation_cosine": [...], "held_out": held_out_blocks}]}``; the arms
    add ``cosine_weight`` times ``1 − cosine`` of the maps to the loss and train with ``weight_decay`` (None: the
    fit's own) on every group, or on the dynamics alone without ``decay_kernel``."""
    from pdeflow.fitting.fit import fit_surrogate

    batch = min(fit_config.batch_size, splits.test.mask.shape[0])
    decay = fit_config.weight_decay if weight_decay is None else weight_decay
    result = {"steps": steps, "cosine_weight": cosine_weight, "weight_decay": decay, "decay_kernel": decay_kernel,
              "start": held_out_blocks(params, surrogate, solver, splits.test, batch), "arms": []}
    for rate in learning_rates:
        config = dataclasses.replace(fit_config, steps=steps, shooting_steps=0, coarse_steps=0, learning_rate=rate,
                                     warmup_steps=min(fit_config.warmup_steps, steps - 1), patience=0,
                                     eval_every=min(fit_config.eval_every, steps), cosine_weight=cosine_weight,
                                     weight_decay=decay, decay_kernel=decay_kernel)
        fitted = fit_surrogate(splits.train, splits.validation, surrogate, solver, config, params=params,
                               progress=False)
        result["arms"].append({"learning_rate": rate, "best_step": fitted.best_step,
                               "validation_kl": [r["validation_kl"] for r in fitted.history],
                               "validation_cosine": [r["validation_cosine"] for r in fitted.history],
                               "held_out": held_out_blocks(fitted.params, surrogate, solver, splits.test, batch)})
        print(f"learning rate {rate}: measured", file=sys.stderr, flush=True)
    return result


def summary(result: dict) -> str:
    blocks = len(result["start"]["cosine"])
    lines = [f"# More steps on the measured step, from a finished fit ({result['folder']})", "",
             f"Held-out inputs of the fit ({result['held_out_inputs']}), the free-running surrogate; each arm "
             f"{result['steps']} more steps, a fresh AdamW at the peak rate given (warm-up, cosine decay to 1 %)"
             + (f", with {result.get('cosine_weight', 0.0):g} × (1 − cosine) of the maps added to the loss."
                if result.get("cosine_weight") else ".")
             + (f" Weight decay {result['weight_decay']:g}"
                + (" on every group." if result.get("decay_kernel", True) else " on the dynamics alone.")
                if result.get("weight_decay") else ""), "",
             "| parameters | " + " | ".join(f"block {i}" for i in range(blocks)) + " | JS max (bits) | "
             "validation KL (last) |", "|---|" + "---|" * (blocks + 2)]
    rows = [("the fit's own", result["start"], "")]
    rows += [(f"+ {result['steps']} steps at peak {arm['learning_rate']:g}", arm["held_out"],
              f"{arm['validation_kl'][-1]:.5f}") for arm in result["arms"]]
    for name, held_out, kl in rows:
        lines.append(f"| {name} | " + " | ".join(f"{c:.5f}" for c in held_out["cosine"])
                     + f" | {max(held_out['js']):.4f} | {kl} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = fit_folder_parser(__doc__, "experiments/results/fine_phase_restart")
    parser.add_argument("--learning-rates", nargs="+", type=float, default=[1e-3, 5e-5],
                        help="peak learning rate of each arm")
    parser.add_argument("--steps", type=int, default=150, help="steps of each arm")
    parser.add_argument("--cosine-weight", type=float, default=0.0,
                        help="weight of 1 - cosine of the maps in the arms' loss (FitConfig.cosine_weight)")
    parser.add_argument("--weight-decay", type=float, default=None,
                        help="the arms' AdamW weight decay (default: the fit's own)")
    parser.add_argument("--decay-kernel", action=argparse.BooleanOptionalAction, default=True,
                        help="decay the kernel group too (--no-decay-kernel: the dynamics alone)")
    args = parser.parse_args(argv)
    check_fit_folder(parser, args.folder)
    if args.steps < 2 or min(args.learning_rates) <= 0 or args.cosine_weight < 0 or (args.weight_decay or 0) < 0:
        parser.error("need --steps >= 2, positive --learning-rates, --cosine-weight >= 0 and --weight-decay >= 0.")

    def run() -> dict:
        from pdeflow.fitting.fit import FitConfig

        config, params, surrogate, solver, splits = load_fit(args.folder)
        result = continue_fit(params, surrogate, solver, FitConfig(**config["fit"]), splits, args.learning_rates,
                              args.steps, args.cosine_weight, args.weight_decay, args.decay_kernel)
        return {"folder": str(args.folder), "model": config["model"], "preset": config.get("preset"),
                "seed": config["fit"]["seed"], "held_out_inputs": int(splits.test.mask.shape[0]), **result}

    return run_and_write(args.out, args.overwrite, run, summary, lambda result, out: None)


if __name__ == "__main__":
    sys.exit(main())
