"""Where the faithful preset's fit step spends its time: the step (``value_and_grad`` of the preset's training
loss on one batch) beside the same step with one part removed, all compiled first, then timed in interleaved
rounds (medians), each printed as a fraction of the preset's coarse step.

    python -m benchmarks.faithful_step_parts                       # MiniLM's preset, B = 32, N = 32 and 48
    python -m benchmarks.faithful_step_parts --tokens 48 --rounds 7

Cases: the coarse step (the preset's first phase), its forward alone, without the hidden-state term, without
each PDE term (attention, residual MLP, diffusion), with an MLP of the state's width instead of twice it, not
split, with the field's products in the other dtype (float32 for bfloat16 or the reverse), differentiated by the
other exact fixed-step adjoint ("stored" for "discrete" or the reverse); the shooting step; the
fine step, and it by the other adjoint (images fit on the fine step alone); and one validation batch (the fine
forward of ``--batch`` inputs).
Inputs are random of the fit's shapes (the time depends on shapes, not values). Writes a labelled JSON to
``benchmarks/results/`` and one row of its history.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np

from benchmarks.reporting import machine_label, write_result
from pdeflow.fitting import fit as fit_module
from pdeflow.models.trace import Trace
from pdeflow.pde.attention_pde import init_surrogate
from pdeflow.pipeline import preset_config, surrogate_config_for
from pdeflow.sources import model_source_for


def step_cases(surrogate, solver, fit_config) -> dict:
    """``{name: (surrogate, solver, fit_config, shooting, kind)}``; kind ``"grad"`` (value and gradient) or
    ``"forward"`` (the loss alone) or ``"validation"`` (the fine forward the fit validates with)."""
    coarse = dataclasses.replace(solver, dt0=solver.dt0 * fit_config.coarse_factor)
    other_dtype = "float32" if surrogate.compute_dtype == "bfloat16" else "bfloat16"
    other_adjoint = "stored" if solver.adjoint == "discrete" else "discrete"
    return {
        "coarse step": (surrogate, coarse, fit_config, False, "grad"),
        "coarse step, forward only": (surrogate, coarse, fit_config, False, "forward"),
        "coarse step, no hidden-state term": (surrogate, coarse, dataclasses.replace(fit_config, hidden_weight=0.0),
                                              False, "grad"),
        "coarse step, no attention term": (surrogate.without("attention"), coarse, fit_config, False, "grad"),
        "coarse step, no residual MLP": (surrogate.without("residual"), coarse, fit_config, False, "grad"),
        "coarse step, no diffusion": (surrogate.without("diffusion"), coarse, fit_config, False, "grad"),
        "coarse step, MLP of the state's width": (dataclasses.replace(surrogate, mlp_width=surrogate.width),
                                                  coarse, fit_config, False, "grad"),
        "coarse step, not split": (dataclasses.replace(surrogate, splitting="none"), coarse, fit_config, False,
                                   "grad"),
        f"coarse step, {other_dtype} products": (dataclasses.replace(surrogate, compute_dtype=other_dtype), coarse,
                                                 fit_config, False, "grad"),
        f"coarse step, {other_adjoint} adjoint": (surrogate, dataclasses.replace(coarse, adjoint=other_adjoint),
                                                  fit_config, False, "grad"),
        "shooting step": (surrogate, coarse, fit_config, True, "grad"),
        "fine step": (surrogate, solver, fit_config, False, "grad"),
        f"fine step, {other_adjoint} adjoint": (surrogate, dataclasses.replace(solver, adjoint=other_adjoint),
                                                fit_config, False, "grad"),
        "validation batch (fine forward)": (surrogate, solver, fit_config, False, "validation"),
    }


def _compiled(surrogate, solver, fit_config, shooting, kind, batch, laplacians):
    if kind == "validation":
        return lambda params: fit_module._eval_losses(surrogate, solver, params, batch, laplacians)
    loss = fit_module.FitLoss.from_config(surrogate, solver, fit_config, shooting)
    value = lambda params: loss(params, batch, laplacians)[0]  # noqa: E731
    return jax.jit(jax.value_and_grad(value) if kind == "grad" else value)


def run(surrogate, solver, fit_config, batch_size: int, tokens: int, rounds: int, seed: int = 0) -> list[dict]:
    """Time every case of `step_cases` at ``(batch_size, tokens)``; one row per case."""
    rng = np.random.default_rng(seed)
    L, H, d = surrogate.num_layers, surrogate.num_heads, surrogate.model_dim
    hidden = rng.standard_normal((L + 1, batch_size, tokens, d)).astype(np.float32)
    attention = rng.random((L, batch_size, H, tokens, tokens)).astype(np.float32)
    attention /= attention.sum(-1, keepdims=True)
    mask = np.ones((batch_size, tokens), bool)
    mask[:, max(1, tokens - 3):] = False  # some padding, as in a bucket
    trace = Trace(hidden, attention, mask)
    functions, compile_s = {}, {}
    for name, (case_surrogate, case_solver, case_fit, shooting, kind) in step_cases(surrogate, solver,
                                                                                  fit_config).items():
        params = init_surrogate(jax.random.PRNGKey(seed), case_surrogate)
        batch, laplacians = fit_module.sharded_batch(trace, np.arange(batch_size), None, case_surrogate)
        function = _compiled(case_surrogate, case_solver, case_fit, shooting, kind, batch, laplacians)
        start = time.perf_counter()
        jax.block_until_ready(function(params))
        compile_s[name] = time.perf_counter() - start
        functions[name] = (function, params)
    times = {name: [] for name in functions}
    for _ in range(rounds):
        for name, (function, params) in functions.items():
            start = time.perf_counter()
            jax.block_until_ready(function(params))
            times[name].append(time.perf_counter() - start)
    base = float(np.median(times["coarse step"]))
    return [{"B": batch_size, "N": tokens, "case": name, "median_s": float(np.median(values)),
             "min_s": float(np.min(values)), "of_coarse_step": float(np.median(values)) / base,
             "first_call_s": compile_s[name]} for name, values in times.items()]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm", help="a registered model source (its preset and shape)")
    parser.add_argument("--tokens", type=int, nargs="*", default=[32, 48], help="token counts N (the buckets)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the preset's)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    config = preset_config("faithful", args.model)
    surrogate = surrogate_config_for(model_source_for(args.model).shape(), config.surrogate)
    batch_size = args.batch or config.fit.batch_size
    label = machine_label()
    print(f"{label['device']} ({label['cpu']}, {label['cpu_count']} cores)  jax {label['jax']}", flush=True)
    rows = []
    for tokens in args.tokens:
        for row in run(surrogate, config.solver, config.fit, batch_size, tokens, args.rounds):
            rows.append(row)
            print(f"  B={row['B']} N={row['N']} {row['case']:40s} median {row['median_s']:7.3f} s  "
                  f"{row['of_coarse_step']:.2f} of the coarse step", flush=True)
    print(f"wrote {write_result('faithful_step_parts', label, rows, args.out)}")


if __name__ == "__main__":
    main()
