"""Fitting throughput on the MiniLM fit at the default's shape (``SurrogateConfig()``, ``FitConfig()``: a random
start and the attention loss alone, the default until the start from the transformer's weights became it; kept so
that runs stay comparable): compile time, steady optimisation steps per second, recompilations, wall time to a
held-out cosine target on every layer, and the same-run peer ratio.

    python -m benchmarks.fit_throughput                    # default fit (a few minutes on 2 CPU cores)
    python -m benchmarks.fit_throughput --steps 600 --target 0.98
    python -m benchmarks.fit_throughput --no-peer          # without the PyTorch/torchdiffeq fit step
    python -m benchmarks.fit_throughput --length-buckets 1 # without the length-bucketed comparison
    XLA_FLAGS=--xla_force_host_platform_device_count=2 python -m benchmarks.fit_throughput --no-fit --no-peer
                                                           # data parallel over 2 CPU devices

What is measured, all in one run:
- compile: tracing + lowering and XLA compilation of the default fit step, apart from each other;
- steady state: the default step (adaptive Tsit5, the default preset's adjoint: ``"discrete"`` since 2026-12-07,
  ``"recursive"`` checkpointing before; ``--adjoint`` picks another) over ``--timed-steps`` steps,
  and the same step with dopri5 (the solver torchdiffeq also has) beside the peer's step: the identical loss
  (mean attention KL over blocks, heads and real rows) through torchdiffeq's ``odeint`` with autograd, and
  the same optimiser (AdamW, clipping) in PyTorch;
- recompilations: XLA compilations counted by ``jax.monitoring`` during the timed steps (must be 0) and
  during the whole fit, named by function;
- length bucketing: the default step with ``--length-buckets`` buckets (every bucket compiled first), its
  mean step time over the bucket mix the fit draws, and its ratio to the padded step;
- time to target: the default fit, with held-out per-layer cosine measured at every validation point; the
  fit's wall time excludes those measurements.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import time

import jax
import numpy as np

from benchmarks.reporting import machine_label, peak_memory_bytes, write_result
from pdeflow import metrics
from pdeflow.data.batches import next_batch
from pdeflow.fitting.fit import FitConfig, fit_surrogate, make_fit_step, make_optimizer, sharded_batch, training_batches
from pdeflow.fitting.parallel import data_mesh, replicated
from pdeflow.models.minilm import load_minilm
from pdeflow.pde import SolverConfig, SurrogateConfig, attention_pde, init_surrogate
from pdeflow.pde.solve import ADJOINTS, FIXED_STEP_ADJOINTS
from pdeflow.pipeline import DataConfig, preset_config, surrogate_for, trace_sentence_splits
from pdeflow.surrogate import predict_attention, token_laplacians

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
    """Counts XLA compilations (by function name) through ``jax.monitoring``."""

    def __init__(self):
        self.events: list[tuple[str, float]] = []
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE_EVENT:
            self.events.append((str(kwargs.get("fun_name", "?")), duration))

    def since(self, mark: int) -> dict:
        return dict(collections.Counter(name for name, _ in self.events[mark:]))


def time_steps(surrogate, solver, fit: FitConfig, train, count: int, counter: CompileCounter) -> dict:
    """Compile the fit step (timed apart; once per length bucket with ``fit.length_buckets > 1``), then time
    ``count`` steps on fresh batches drawn as the fit draws them."""
    optimizer = make_optimizer(fit)
    mesh = data_mesh(fit.devices)  # the batch is split over every device JAX sees, as in a fit
    params = replicated(init_surrogate(jax.random.PRNGKey(fit.seed), surrogate, train.hidden[0][train.mask]), mesh)
    opt_state = replicated(optimizer.init(params), mesh)
    batches = training_batches(train, fit.batch_size, fit)
    draws = [next_batch(batches) for _ in range(count + 1)]
    step = make_fit_step(surrogate, solver, fit)  # the fit's own (free-running) step
    lengths = sorted({length for _, length in draws}, key=lambda n: -1 if n is None else n)
    trace_s = compile_s = 0.0
    for length in lengths:  # every shape the timed steps will use, compiled before them (as the fit does)
        index = next(i for i, n in draws if n == length)
        start = time.perf_counter()
        batch = sharded_batch(train, index, mesh, surrogate, length)
        lowered = step.lower(params, opt_state, *batch)
        traced = time.perf_counter()
        lowered.compile()
        trace_s, compile_s = trace_s + traced - start, compile_s + time.perf_counter() - traced
    start = time.perf_counter()
    params, opt_state, info = step(params, opt_state, *sharded_batch(train, draws[0][0], mesh, surrogate,
                                                                     draws[0][1]))
    jax.block_until_ready(params)
    first = time.perf_counter() - start
    mark = len(counter.events)
    durations, solver_steps = [], []
    for index, length in draws[1:]:
        start_step = time.perf_counter()
        batch, laplacians = sharded_batch(train, index, mesh, surrogate, length)
        params, opt_state, info = step(params, opt_state, batch, laplacians)
        float(info["loss"])  # the fit reads the loss every step (NaN check): so does the benchmark
        durations.append(time.perf_counter() - start_step)
        solver_steps.append(int(info["num_steps"]))
    return {"solver": dataclasses.asdict(solver), "devices": int(mesh.devices.size),
            "length_buckets": fit.length_buckets, "compiled_lengths": [n or train.mask.shape[1] for n in lengths],
            "trace_and_lower_s": trace_s, "xla_compile_s": compile_s, "first_step_s": first,
            "steady_step_s_median": float(np.median(durations)), "steady_step_s_mean": float(np.mean(durations)),
            "steps_per_s": 1.0 / float(np.mean(durations)), "solver_steps_mean": float(np.mean(solver_steps)),
            "recompilations_during_timed_steps": counter.since(mark)}


def peer_steps(surrogate: SurrogateConfig, solver: SolverConfig, fit: FitConfig, train, count: int,
               torch_device: str = "cpu") -> dict:
    """The same loss and optimiser in PyTorch + torchdiffeq (dopri5, autograd through the solver), on
    ``torch_device``."""
    from benchmarks.torch_peer import TorchAttentionField, torch, torchdiffeq

    torch.set_num_threads(os.cpu_count() or 1)
    params = init_surrogate(jax.random.PRNGKey(fit.seed), surrogate, train.hidden[0][train.mask])
    first_batch = np.arange(fit.batch_size)
    field = TorchAttentionField(params, surrogate, token_laplacians(train.mask[first_batch]), train.mask[first_batch],
                                torch_device)
    used = [p for name, p in field.named_parameters() if not name.startswith(("readout", "projection"))]
    projection = field.p("projection")
    optimizer = torch.optim.AdamW(used + [projection], lr=fit.learning_rate, weight_decay=fit.weight_decay)
    times = torch.arange(surrogate.num_layers + 1, dtype=torch.float32, device=field.device)
    rng = np.random.default_rng(0)
    durations = []
    for i in range(count + 1):
        index = rng.choice(train.mask.shape[0], fit.batch_size, replace=False)
        mask = train.mask[index]
        start = time.perf_counter()
        field.set_inputs(np.asarray(token_laplacians(mask)), mask)
        teacher = torch.from_numpy(np.asarray(train.attention[:, index])).to(field.device)  # (L, B, H, N, N)
        mask_t = torch.from_numpy(np.asarray(mask)).to(field.device)
        optimizer.zero_grad(set_to_none=True)
        u0 = torch.from_numpy(np.asarray(train.hidden[0][index])).to(field.device) @ projection
        states = torchdiffeq.odeint(field, u0, times, method="dopri5", rtol=solver.rtol, atol=solver.atol,
                                    options={"first_step": solver.dt0})
        log_maps = torch.stack([torch.log_softmax(field.logits(times[l], states[l]), -1)
                                for l in range(surrogate.num_layers)])
        p = teacher.clamp_min(1e-12)
        kl = (teacher * (p.log() - log_maps)).sum(-1)  # (L, B, H, N)
        rows = mask_t[None, :, None, :].expand_as(kl)
        loss = (kl * rows).sum((0, 2, 3)) / rows.sum((0, 2, 3))
        loss = loss.mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(used + [projection], fit.clip_norm)
        optimizer.step()
        float(loss.detach())  # wait for the step, as block_until_ready does for pdeflow
        if i:
            durations.append(time.perf_counter() - start)
    return {"steady_step_s_median": float(np.median(durations)), "steps_per_s": 1.0 / float(np.median(durations)),
            "torch_threads": torch.get_num_threads()}


# the faithful preset's step (blockwise, the maps held over each interval, each interval split into its token mixing
# then its residual MLP, autodiff's field backward, step 0.5: "held") and each with one setting changed: {name:
# (SurrogateConfig fields, SolverConfig fields)}; "unsplit" is the previous preset, and the maps read off the moving
# state need no autodiff backward, so "live" is the one before it (the hand-written one)
UNSPLIT = {"splitting": "none"}
FAITHFUL_VARIANTS = {"held": ({}, {}), "unsplit": (UNSPLIT, {}),
                     "live": ({**UNSPLIT, "held_maps": False, "field_backward": "custom"}, {}),
                     "autodiff": ({**UNSPLIT, "held_maps": False}, {}),
                     "smooth": ({**UNSPLIT, "held_maps": False, "depth_time": "smooth"}, {}),
                     "coarse": ({}, {"dt0": 1.0}), "mlp384": ({"mlp_width": 384}, {})}


def faithful_steps(encoder, splits, count: int, rounds: int, counter: CompileCounter) -> dict:
    """The faithful preset's free-running step (full width, rk4 dt 0.5, stored adjoint, blockwise depth-time, the
    maps held over each interval, each interval split, the hidden-state term; its length buckets) as it is ("held"),
    with its terms acting at once as in the previous preset ("unsplit"), with the maps read off the moving state and
    the hand-written field backward of the preset before it ("live"), the same with
    autodiff's backward ("autodiff"), that with the smooth depth-time of an earlier preset ("smooth"), on the
    coarse step of the preset's first steps, 1.0 ("coarse"), and with the residual MLP of an earlier preset, 384
    wide instead of 768 ("mlp384"), timed in alternating rounds of ``count`` steps each (so the host's load falls
    on all alike). Parameters start at random: the cost of a step does not depend on where it starts. (History:
    before 2026-12-05 the preset read its maps off the moving state, "custom" was the preset and "autodiff",
    "smooth", "coarse" and "mlp384" changed it, and until the splitting of 2026-12-05 "held" was unsplit;
    before 2026-12-04 22:35 the preset's MLP was 384 and "mlp768" was timed instead, ``slowdown_mlp768``; before
    2026-12-04 19:00 "autodiff" was the preset.)"""
    preset = preset_config("faithful")
    fit = dataclasses.replace(preset.fit, shooting_steps=0)
    out = {"rounds": rounds, "timed_steps_per_round": count}
    for round_index in range(rounds):
        for name, (change, solver_change) in FAITHFUL_VARIANTS.items():
            surrogate = surrogate_for(encoder, dataclasses.replace(preset.surrogate, **change))
            solver = dataclasses.replace(preset.solver, **solver_change)
            timed = time_steps(surrogate, solver, fit, splits.train, count, counter)
            out.setdefault(name, []).append(timed)
            print(f"faithful step, {name:8s} round {round_index + 1}: {timed['steady_step_s_median']:.3f} s/step "
                  f"(median of {count}; compile {timed['xla_compile_s']:.1f}s)", flush=True)
    medians = {name: float(np.median([t["steady_step_s_median"] for t in out[name]])) for name in FAITHFUL_VARIANTS}
    out["steady_step_s_median"] = medians
    out["speedup_held_over_live"] = medians["live"] / medians["unsplit"]
    out["slowdown_split_over_unsplit"] = medians["held"] / medians["unsplit"]
    out["speedup_custom_over_autodiff"] = medians["autodiff"] / medians["live"]
    out["speedup_blockwise_over_smooth"] = medians["smooth"] / medians["autodiff"]
    out["speedup_coarse_over_fine"] = medians["held"] / medians["coarse"]
    out["slowdown_mlp768_over_384"] = medians["held"] / medians["mlp384"]
    return out


def time_to_target(splits, surrogate, solver, fit: FitConfig, target: float, counter: CompileCounter) -> dict:
    """Run the fit; at every validation point measure held-out per-layer cosine (time excluded)."""
    curve = []
    excluded = [0.0]
    start = time.perf_counter()
    mark = len(counter.events)

    def on_eval(record: dict, params: dict) -> None:  # the parameters of that step, not the best so far
        began = time.perf_counter()
        maps = predict_attention(params, surrogate, solver, splits.test, fit.batch_size)
        cosine = metrics.attention_fidelity(splits.test.attention, maps, splits.test.mask)["cosine"]  # (L, B, H)
        per_layer = cosine.mean(axis=(1, 2))
        curve.append({"step": record["step"], "fit_wall_s": began - start - excluded[0],
                      "held_out_cosine_per_layer": per_layer.tolist(), "validation_kl": record["validation_kl"]})
        print(f"  step {record['step']:4d}  fit {curve[-1]['fit_wall_s']:7.1f}s  held-out cosine per layer "
              + " ".join(f"{c:.3f}" for c in per_layer), flush=True)
        excluded[0] += time.perf_counter() - began

    result = fit_surrogate(splits.train, splits.validation, surrogate, solver, fit, progress=False,
                           on_eval_params=on_eval)
    total = time.perf_counter() - start - excluded[0]
    reached = next((c for c in curve if min(c["held_out_cosine_per_layer"]) >= target), None)
    return {"target": target, "curve": curve, "fit_wall_s": total, "steps_run": result.history[-1]["step"],
            "reached_at_step": reached["step"] if reached else None,
            "reached_after_s": reached["fit_wall_s"] if reached else None,
            "best_min_layer_cosine": max(min(c["held_out_cosine_per_layer"]) for c in curve),
            "compilations_during_fit": counter.since(mark)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=FitConfig.steps, help="fit steps for the time-to-target run")
    parser.add_argument("--target", type=float, default=0.98, help="held-out cosine every layer must reach")
    parser.add_argument("--timed-steps", type=int, default=20)
    parser.add_argument("--no-peer", action="store_true", help="skip the PyTorch/torchdiffeq step")
    parser.add_argument("--no-fit", action="store_true", help="skip the time-to-target fit")
    parser.add_argument("--length-buckets", type=int, default=4,
                        help="also time the step, and run the time-to-target fit, with this many length buckets "
                             "(FitConfig.length_buckets; 1 skips the comparison)")
    parser.add_argument("--torch-device", default="cpu", help="where the peer's step runs: cpu, or cuda on a GPU")
    parser.add_argument("--field-backward", default=SurrogateConfig.field_backward,
                        choices=list(attention_pde.FIELD_BACKWARDS),
                        help="SurrogateConfig.field_backward: autodiff's VJP of the field or the hand-written one")
    parser.add_argument("--adjoint", default=preset_config("default").solver.adjoint,
                        choices=[a for a in ADJOINTS if a not in FIXED_STEP_ADJOINTS],
                        help="SolverConfig.adjoint of the default step (adaptive tsit5); default: the default "
                             "preset's")
    parser.add_argument("--faithful", action="store_true",
                        help="instead: time the faithful preset's step as it is, with the maps read off the moving "
                             "state (hand-written and autodiff backward), with smooth depth-time, on the coarse step "
                             "and with the MLP of 384, in alternating rounds (--timed-steps per round, --rounds "
                             "rounds)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    counter = CompileCounter()
    label = machine_label()
    print(f"{label['device']} ({label['cpu']}, {label['cpu_count']} cores)  jax {label['jax']}", flush=True)
    encoder = load_minilm()
    if args.faithful:
        splits = trace_sentence_splits(encoder, DataConfig())
        result = {"faithful_step": faithful_steps(encoder, splits, args.timed_steps, args.rounds, counter)}
        path = write_result("fit_throughput", label, [], args.out, **result, peak_memory_bytes=peak_memory_bytes())
        step = result["faithful_step"]
        print(f"split over unsplit: x{step['slowdown_split_over_unsplit']:.2f} the time; held maps over live: "
              f"x{step['speedup_held_over_live']:.2f}; custom over autodiff (live maps): "
              f"x{step['speedup_custom_over_autodiff']:.2f}; blockwise over smooth: "
              f"x{step['speedup_blockwise_over_smooth']:.2f}; coarse step over fine: "
              f"x{step['speedup_coarse_over_fine']:.2f}; MLP 768 over 384: "
              f"x{step['slowdown_mlp768_over_384']:.2f} the time; wrote {path}")
        return
    surrogate = surrogate_for(encoder, SurrogateConfig(field_backward=args.field_backward))
    splits = trace_sentence_splits(encoder, DataConfig())
    fit = dataclasses.replace(FitConfig(), steps=args.steps)
    result = {"field_backward": args.field_backward, "adjoint": args.adjoint}
    path = None

    def save() -> None:  # after every measurement, so a late failure keeps the earlier ones
        nonlocal path
        path = write_result("fit_throughput", label, [], args.out, **result, peak_memory_bytes=peak_memory_bytes())

    default = SolverConfig(adjoint=args.adjoint)
    result["default_step"] = time_steps(surrogate, default, fit, splits.train, args.timed_steps, counter)
    d = result["default_step"]
    print(f"default step (tsit5 adaptive, {args.adjoint} adjoint): trace+lower {d['trace_and_lower_s']:.1f}s, "
          f"XLA compile {d['xla_compile_s']:.1f}s, steady {d['steady_step_s_median']:.3f}s/step = "
          f"{d['steps_per_s']:.2f} steps/s, "
          f"recompilations during timed steps: {d['recompilations_during_timed_steps'] or 0}", flush=True)
    save()
    peer_solver = dataclasses.replace(default, solver="dopri5")
    result["dopri5_step"] = time_steps(surrogate, peer_solver, fit, splits.train, args.timed_steps, counter)
    print(f"dopri5 step: {result['dopri5_step']['steady_step_s_median']:.3f}s/step", flush=True)
    if not args.no_peer:
        result["peer_dopri5_step"] = peer_steps(surrogate, peer_solver, fit, splits.train, args.timed_steps,
                                                args.torch_device)
        ratio = result["peer_dopri5_step"]["steady_step_s_median"] / result["dopri5_step"]["steady_step_s_median"]
        result["speedup_pdeflow_over_peer"] = ratio
        print(f"peer (torch + torchdiffeq dopri5): {result['peer_dopri5_step']['steady_step_s_median']:.3f}s/step; "
              f"pdeflow is x{ratio:.2f} faster", flush=True)
        save()
    bucketed = dataclasses.replace(fit, length_buckets=args.length_buckets)
    if args.length_buckets > 1:
        result["bucketed_step"] = b = time_steps(surrogate, default, bucketed, splits.train, args.timed_steps, counter)
        result["speedup_bucketed_over_padded"] = b["steps_per_s"] / d["steps_per_s"]
        print(f"default step with {args.length_buckets} length buckets {b['compiled_lengths']} (of "
              f"{splits.train.mask.shape[1]} tokens): compile {b['xla_compile_s']:.1f}s in all, steady "
              f"{1 / b['steps_per_s']:.3f}s/step (mean over the bucket mix), "
              f"x{result['speedup_bucketed_over_padded']:.2f} the padded step's throughput; recompilations during "
              f"timed steps: "
              f"{b['recompilations_during_timed_steps'] or 0}", flush=True)
        save()
    for name, config in (("time_to_target", fit), ("time_to_target_bucketed", bucketed)):
        if args.no_fit or (name.endswith("bucketed") and args.length_buckets == 1):
            continue
        print(f"time to held-out cosine >= {args.target} on every layer ({args.steps} steps max, length_buckets="
              f"{config.length_buckets}):")
        result[name] = t = time_to_target(splits, surrogate, default, config, args.target, counter)
        print(f"reached: {t['reached_at_step'] is not None} (step {t['reached_at_step']}, {t['reached_after_s']} s); "
              f"best min-over-layers cosine {t['best_min_layer_cosine']:.3f}; fit wall {t['fit_wall_s']:.1f}s; "
              f"compilations during the fit: {t['compilations_during_fit']}", flush=True)
        save()
    save()
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
