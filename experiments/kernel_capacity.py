"""How much of the surrogate's shortfall is its attention kernel and how much its dynamics: the PDE's kernel
fitted on the transformer's own states (teacher forcing) beside the fitted PDE.

    python -m experiments.kernel_capacity --out results/kernel_capacity

At ``t = l`` the surrogate's kernel reads the solved state ``u(l)``. Here the same kernel reads
``hidden[l] · P``: the transformer's own state entering block ``l``, through a learned linear map to width
``r`` shared by all blocks (the map that gives ``u(0)``). No dynamics are involved, so each fit is a ceiling
for a surrogate of that width and key rank: the PDE can only do as well as its kernel on states it must also
produce itself. With ``r = d`` and key rank = the transformer's head width, the kernel has the form of the
transformer's own attention (low-rank bilinear logits of normalised states, a query bias, plus a position
bias), so it should come close to every block; if not, the kernel's form, not its size, is the limit.

Every kernel is fitted with the default fit's data, budget, optimiser and seed (AdamW, 300 steps of 32
training sentences, early stopping on the validation split) and measured on the same held-out sentences.
The PDE row is the default fit, fitted in the same run. Writes ``capacity.json`` and ``capacity.md``
atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from pdeflow import metrics
from pdeflow.data.batches import fixed_size_batches, shuffled_batches
from pdeflow.fitting.fit import FitConfig, fit_surrogate, make_optimizer
from pdeflow.fitting.losses import per_input_attention_kl
from pdeflow.fitting.train_loop import make_train_step, train_loop
from pdeflow.models.minilm import load_minilm
from pdeflow.models.trace import Trace
from pdeflow.pde import SolverConfig, SurrogateConfig, attention_pde, init_surrogate
from pdeflow.pipeline import DataConfig, surrogate_for, trace_sentence_splits
from pdeflow.store import check_output_dir, result_folder
from pdeflow.surrogate import predict_attention

KERNEL_PARAMETERS = ("projection", "kernel")  # what a teacher-forced fit uses and trains


def teacher_forced_log_maps(params: dict, config: SurrogateConfig, hidden, mask) -> jax.Array:
    """The kernel at ``t = l`` on ``hidden[l] · P`` for every block: ``hidden (L+1, B, N, d)``, ``mask (B, N)``
    -> log maps ``(L, B, H, N, N)``."""
    return jax.vmap(lambda h, m: attention_pde.attention_log_maps(params, config, h @ params["projection"], m),
                    in_axes=(1, 0), out_axes=1)(hidden, mask)


def teacher_forced_kl(params: dict, config: SurrogateConfig, trace: Trace) -> jax.Array:
    """Per-input attention KL (nats; mean over blocks, heads and real query rows), as the PDE fit's loss."""
    return per_input_attention_kl(trace.attention, teacher_forced_log_maps(params, config, trace.hidden, trace.mask),
                                  trace.mask)


@dataclasses.dataclass(frozen=True)
class TeacherForcedLoss:
    """``(params, trace) -> `teacher_forced_kl` averaged over the batch``: the teacher-forced fit's loss (a frozen
    dataclass, so fits of equal configs share one compiled step)."""

    config: SurrogateConfig

    def __call__(self, params: dict, trace: Trace) -> jax.Array:
        return teacher_forced_kl(params, self.config, trace).mean()


_kl = jax.jit(teacher_forced_kl, static_argnums=1)
_maps = jax.jit(lambda params, config, trace: jnp.exp(teacher_forced_log_maps(params, config, trace.hidden,
                                                                                   trace.mask)), static_argnums=1)


def _batched(function, params, config, trace: Trace, batch_size: int, axis: int) -> np.ndarray:
    """``function(params, config, batch)`` over ``trace`` in fixed-size batches, concatenated along ``axis``,
    the batch axis of its result (0 for per-input values, 1 for maps)."""
    pieces = []
    for index, keep in fixed_size_batches(trace.mask.shape[0], batch_size):
        pieces.append(np.take(np.asarray(function(params, config, trace.take(index))), np.arange(keep), axis=axis))
    return np.concatenate(pieces, axis=axis)


def fit_teacher_forced(train: Trace, validation: Trace, config: SurrogateConfig, fit: FitConfig = FitConfig()):
    """Fit the projection and the kernel on teacher-forced states with the PDE fit's optimiser, batches and
    early stopping. Returns ``(best params, best step, history [(step, validation KL)])``."""
    params = init_surrogate(jax.random.PRNGKey(fit.seed), config, train.hidden[0][train.mask])
    params = {name: params[name] for name in KERNEL_PARAMETERS}
    optimizer = make_optimizer(fit)
    opt_state = optimizer.init(params)
    step = make_train_step(TeacherForcedLoss(config), optimizer)
    batches = shuffled_batches(train.mask.shape[0], fit.batch_size, np.random.default_rng(fit.seed))
    best, best_step, best_kl, history, waited, stopped = params, 0, np.inf, [], 0, False

    def train_step(i: int) -> None:
        nonlocal params, opt_state
        params, opt_state, info = step(params, opt_state, train.take(next(batches)))
        if not np.isfinite(float(info["loss"])):
            raise FloatingPointError(f"the teacher-forced fit's loss is {float(info['loss'])} at step {i}; lower "
                                     "the learning rate.")

    def evaluate(i: int, info) -> None:
        nonlocal best, best_step, best_kl, waited, stopped
        kl = float(_batched(_kl, params, config, validation, fit.batch_size, axis=0).mean())
        history.append((i, kl))
        if kl < best_kl:
            best, best_step, best_kl, waited = params, i, kl, 0
        else:
            waited += 1
            stopped = bool(fit.patience) and waited >= fit.patience

    train_loop(train_step, fit.steps, eval_every=fit.eval_every, evaluate=evaluate, should_stop=lambda: stopped,
               name="teacher-forced fit")
    return best, best_step, history


def held_out_cosine(reference: Trace, maps) -> list[float]:
    return metrics.summarise(metrics.attention_fidelity(reference.attention, maps, reference.mask))["cosine"]


def run(kernels, data: DataConfig, fit: FitConfig, with_pde: bool, progress: bool) -> dict:
    encoder = load_minilm()
    splits = trace_sentence_splits(encoder, data)
    rows = []
    for width, key_dim in kernels:
        config = surrogate_for(encoder, SurrogateConfig(width=width, key_dim=key_dim))
        started = time.perf_counter()
        params, best_step, history = fit_teacher_forced(splits.train, splits.validation, config, fit)
        cosine = held_out_cosine(splits.test, _batched(_maps, params, config, splits.test, fit.batch_size, axis=1))
        rows.append({"method": "teacher-forced kernel", "width": width, "key_dim": key_dim, "cosine": cosine,
                     "best_step": best_step, "validation_kl": history, "seconds": time.perf_counter() - started})
        print(f"teacher-forced kernel r={width} k={key_dim}: held-out cosine "
              f"{' '.join(f'{c:.3f}' for c in cosine)} (best step {best_step}, {rows[-1]['seconds']:.0f} s)",
              file=sys.stderr, flush=True)
    if with_pde:
        config, solver = surrogate_for(encoder, SurrogateConfig()), SolverConfig()
        started = time.perf_counter()
        result = fit_surrogate(splits.train, splits.validation, config, solver, fit, progress=progress)
        cosine = held_out_cosine(splits.test, predict_attention(result.params, config, solver, splits.test))
        rows.append({"method": "attention-PDE (default fit)", "width": config.width, "key_dim": config.key_dim,
                     "cosine": cosine, "best_step": result.best_step, "seconds": time.perf_counter() - started})
        print(f"attention-PDE r={config.width} k={config.key_dim}: held-out cosine "
              f"{' '.join(f'{c:.3f}' for c in cosine)}", file=sys.stderr, flush=True)
    uniform = held_out_cosine(splits.test, metrics.uniform_maps(splits.test.mask, splits.test.num_layers,
                                                                splits.test.num_heads))
    rows.append({"method": "uniform", "cosine": uniform})
    return {"rows": rows, "data": dataclasses.asdict(data), "fit": dataclasses.asdict(fit),
            "transformer_head_width": encoder.config.hidden_size // encoder.config.num_heads}


def capacity_markdown(result: dict) -> str:
    fit = result["fit"]
    lines = ["# Attention kernel on the transformer's own states (teacher forcing) vs the fitted PDE", "",
             f"Held-out cosine per block; every fit {fit['steps']} steps of {fit['batch_size']}, seed {fit['seed']}, "
             f"early-stopped on the validation split. MiniLM's heads are {result['transformer_head_width']} wide.",
             "", "| method | width r | key rank | " + " | ".join(f"block {i}" for i in range(len(result['rows'][0]
                                                                                                ['cosine'])))
             + " | mean | min |", "|" + "---|" * (len(result["rows"][0]["cosine"]) + 5)]
    for row in result["rows"]:
        cells = " | ".join(f"{c:.3f}" for c in row["cosine"])
        lines.append(f"| {row['method']} | {row.get('width', '')} | {row.get('key_dim', '')} | {cells} | "
                     f"{np.mean(row['cosine']):.3f} | {np.min(row['cosine']):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/kernel_capacity")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--kernels", default="64x16,384x16,384x32",
                        help="comma-separated WIDTHxKEY_RANK kernels to fit on teacher-forced states")
    parser.add_argument("--steps", type=int, default=FitConfig.steps)
    parser.add_argument("--no-pde", action="store_true", help="skip the default PDE fit beside them")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        kernels = [tuple(int(x) for x in item.split("x")) for item in args.kernels.split(",")]
        if any(len(k) != 2 or min(k) < 1 for k in kernels):
            raise ValueError
    except ValueError:
        parser.error(f"--kernels takes WIDTHxKEY_RANK pairs such as 64x16,384x32; got {args.kernels!r}")
    check_output_dir(args.out, args.overwrite)
    result = run(kernels, DataConfig(), dataclasses.replace(FitConfig(), steps=args.steps), not args.no_pde,
                 args.progress)
    with result_folder(args.out, args.overwrite) as folder:
        folder.write_json("capacity.json", result)
        folder.write_text("capacity.md", capacity_markdown(result))
    print(capacity_markdown(result))


if __name__ == "__main__":
    main()
