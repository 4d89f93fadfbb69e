"""Throughput of the attention-PDE solve, forward and forward+backward, against this machine's matmul peak.

Every speed figure is a ratio measured in the same run: achieved GFLOP/s (from an analytic FLOP count of
the vector field, times the field evaluations the solver made, plus the attention maps read out of the
solved trajectory, which are timed with it) over the float32 matmul peak of a large
``jnp.dot`` on the same device, at the start and at the end of the run (the higher counts); bfloat16 cases
are also set against the bfloat16 matmul peak (bfloat16 operands, float32 accumulation) measured the same way,
since CPUs with bfloat16 matrix units (AMX) take those products several times faster. Compile time is
reported apart from steady-state time. Each forward+backward case also prints its overhead, steady time /
(field evaluations x one field+VJP, timed alone at the same size; the median of 10), and XLA's planned memory
of the compiled program (arguments + outputs + temporaries). Fixed steps are also timed forward through the
discrete adjoint's path ("forward discrete": pdeflow's own scan over the steps with the stages written out; the
default adjoint's forward is diffrax's loop), when ``--adjoints`` includes it.

    python -m benchmarks.solver_throughput                 # default grid (CPU-sized), writes a JSON
    python -m benchmarks.solver_throughput --sizes 32,128,384,12,6 --repeats 3
    python -m benchmarks.solver_throughput --compute-dtypes float32 bfloat16   # the bfloat16 option beside
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.reporting import compiled_memory_bytes, machine_label, matmul_peak, peak_memory_bytes, write_result
from pdeflow.pde import SolverConfig, SurrogateConfig, attention_pde, init_surrogate
from pdeflow.pde.attention_pde import COMPUTE_DTYPES
from pdeflow.pde.solve import ADJOINTS, FIXED_STEP_ADJOINTS, SOLVERS, STAGES
from pdeflow.surrogate import surrogate_forward, token_laplacians

DEFAULT_SIZES = ["8,32,64,12,6", "32,48,64,12,6", "32,128,384,12,6"]  # B, N, r, H, L


# forward+backward's work in forwards, counting a vector-Jacobian product as two: "recursive" re-runs each step's
# forward in the backward pass and then, in diffrax's checkpointed stage loop, each stage's forward once more before
# its VJP (1 + 1 + 1 + 2 = 5: the per-head logits run in three fusions of one call a stage each in the default fit's
# compiled step, 2026-12-07; counted as 4 until then), "backsolve" re-solves the state backwards beside the adjoint
# (1 + 1 + 2 = 4, on the forward's step count), "discrete" recomputes each stage's forward for its VJP, from the
# saved start (fixed steps) or the recorded stage increments (adaptive steps) (1 + 1 + 2 = 4), and so does
# "stored": it keeps every step's start and its stages' inputs, but diffrax runs a step's stages in a checkpointed
# loop whose backward recomputes each stage's forward before its VJP (seen in the compiled backward: the query/key
# product once more per stage, `benchmarks.solve_profile`). Counted as 3 until 2026-12-06, which understated its
# share of the peak by a quarter
FLOP_FACTORS = {"recursive": 5, "backsolve": 4, "discrete": 4, "stored": 4}


def benchmark_config(width: int, heads: int, layers: int, compute_dtype: str = "float32") -> SurrogateConfig:
    """The surrogate timed at a size ``(r, H, L)`` here and by the peer: state width r = d, key rank r / H, a knot
    per layer."""
    return SurrogateConfig(num_layers=layers, num_heads=heads, model_dim=width, width=width,
                           key_dim=max(width // heads, 1), num_knots=layers, compute_dtype=compute_dtype)


def kernel_flops(config: SurrogateConfig, n: int) -> int:
    """Multiply-adds x 2 of the attention kernel for one input of ``n`` tokens: queries and keys, logits and the
    softmax's exponentials."""
    r, h, k = config.width, config.num_heads, config.key_dim
    return 2 * n * r * 2 * h * k + 2 * h * n * n * k + h * n * n


def field_flops(config: SurrogateConfig, n: int) -> int:
    """Multiply-adds x 2 of one vector-field evaluation for one input of ``n`` tokens (matmuls and the
    softmax's exponentials; element-wise work is left out, so the count is a lower bound)."""
    r, h, v, m = config.width, config.num_heads, config.value_rank, config.mlp_width
    flops = 0
    if "diffusion" in config.terms or "attention" in config.terms:
        flops += 2 * n * n * r  # the mixing operator D·Δ + α·mean_h(A_h), one (N, N) matrix, times u
    if "attention" in config.terms:
        flops += kernel_flops(config, n)
        flops += 2 * (n * r * h * v + h * n * n * v + h * n * v * r)  # low-rank value path
    if "residual" in config.terms:
        flops += 2 * (n * r * m + n * m * r)
    return flops


def readout_flops(config: SurrogateConfig, n: int) -> int:
    """Multiply-adds x 2 of the attention maps read out of a solved trajectory for one input of ``n`` tokens: the
    kernel at ``t = 0, …, L−1``, as `pdeflow.surrogate.surrogate_forward` computes them after the solve."""
    return config.num_layers * kernel_flops(config, n)


def time_call(fn, *args, repeats: int):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    compile_and_first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(repeats):
        out = jax.block_until_ready(fn(*args))
    return compile_and_first, (time.perf_counter() - start) / repeats, out


def field_vjp_seconds(batch, n, width, heads, layers, compute_dtype: str = "float32", repeats: int = 10) -> float:
    """Median seconds of one field evaluation with its VJP (every weight and the state), at ``t = 0.5``, on the
    inputs `run_case` solves from."""
    config, params, u, laplacians, mask = solve_inputs(batch, n, width, heads, layers, compute_dtype)

    @jax.jit
    def vjp(params, u, laplacians, mask, cotangent):
        field = lambda p, x: attention_pde.batch_vector_field(config, jnp.float32(0.5), x, (p, laplacians, mask))  # noqa: E731
        return jax.vjp(field, params, u)[1](cotangent)

    args = (params, u, laplacians, mask, u)
    jax.block_until_ready(vjp(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(vjp(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def solve_inputs(batch, n, width, heads, layers, compute_dtype: str = "float32") -> tuple:
    """``(config, params, hidden0 (B, N, r), laplacians, mask)`` of the case timed at ``(B, N, r, H, L)``: seeded
    parameters and random states, every token real."""
    config = benchmark_config(width, heads, layers, compute_dtype)
    params = init_surrogate(jax.random.PRNGKey(0), config)
    rng = np.random.default_rng(0)
    hidden0 = jnp.asarray(rng.normal(size=(batch, n, width)), jnp.float32)
    mask = jnp.ones((batch, n), bool)
    return config, params, hidden0, token_laplacians(mask), mask


def run_case(batch, n, width, heads, layers, solver: SolverConfig, mode: str, repeats: int, peak: float,
             compute_dtype: str = "float32", field_vjp_s: float | None = None) -> dict:
    """One case timed; ``field_vjp_s`` (`field_vjp_seconds`) gives forward+backward cases their overhead."""
    config, params, hidden0, laplacians, mask = solve_inputs(batch, n, width, heads, layers, compute_dtype)

    def forward(p, hidden0, laplacians, mask):
        out = surrogate_forward(p, config, solver, hidden0, laplacians, mask)
        return jnp.sum(out.log_attention[..., 0]), out.num_steps

    # the batch is an argument, as in a fit: a constant all-ones mask would be folded into the compiled solve
    if mode == "forward":
        fn = jax.jit(forward)
    else:
        fn = jax.jit(jax.value_and_grad(forward, has_aux=True))
    compile_s, step_s, out = time_call(fn, params, hidden0, laplacians, mask, repeats=repeats)
    steps = int(out[1] if mode == "forward" else out[0][1])
    # per input, accepted steps only (rejected adaptive steps are not counted)
    evaluations = steps * STAGES[solver.solver]
    factor = 1 if mode == "forward" else FLOP_FACTORS[solver.adjoint]
    # the maps read out after the solve are timed too, so they are counted (plain autodiff: 3 forwards' work)
    readout_factor = 1 if mode == "forward" else 3
    per_field, per_readout = field_flops(config, n), readout_flops(config, n)
    flops = batch * (factor * evaluations * per_field + readout_factor * per_readout)
    gflops = flops / step_s / 1e9
    overhead = step_s / (evaluations * field_vjp_s) if field_vjp_s and mode != "forward" else None
    return {"B": batch, "N": n, "r": width, "H": heads, "L": layers, "solver": solver.solver,
            "adaptive": solver.adaptive, "dt0": solver.dt0, "mode": mode,
            # a forward's adjoint only where it picks the forward's path (fixed steps: "discrete" is pdeflow's scan)
            "adjoint": solver.adjoint if mode != "forward" or solver.adjoint != SolverConfig.adjoint else None,
            "flop_factor": factor,
            "field_flops_per_input": per_field, "readout_flops_per_input": per_readout,
            "compute_dtype": compute_dtype,
            "solver_steps": steps,
            "compile_and_first_s": compile_s, "steady_s": step_s,
            "field_evaluations_per_s": evaluations * batch / step_s,
            "token_layers_per_s": batch * n * layers / step_s,
            "gflop_per_s": gflops, "fraction_of_matmul_peak": gflops / peak, "peak_memory_bytes": peak_memory_bytes(),
            "field_vjp_s": field_vjp_s, "overhead": overhead,
            "compiled_memory_bytes": compiled_memory_bytes(fn, params, hidden0, laplacians, mask)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=DEFAULT_SIZES, help="B,N,r,H,L for each case")
    parser.add_argument("--solvers", nargs="*", default=["tsit5:adaptive", "tsit5:1.0", "rk4:0.5"],
                        help="SOLVER:adaptive or SOLVER:DT (fixed steps of DT)")
    parser.add_argument("--compute-dtypes", nargs="*", default=["float32"], choices=list(COMPUTE_DTYPES),
                        help="SurrogateConfig.compute_dtype of each case (bfloat16 cases are set against both the "
                             "float32 and the bfloat16 matmul peak)")
    parser.add_argument("--adjoints", nargs="*", default=list(ADJOINTS), choices=list(ADJOINTS),
                        help="adjoints timed forward+backward (stored only with fixed steps)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--peak-size", type=int, default=2048,
                        help="side of the square matmul the peak is measured on (a GPU needs 8192 or more to pass "
                             "its launch overhead)")
    parser.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    args = parser.parse_args(argv)
    peak = matmul_peak(args.peak_size)
    low = "bfloat16" in args.compute_dtypes
    low_peak = matmul_peak(args.peak_size, dtype=jnp.bfloat16) if low else None
    label = machine_label()
    print(f"{label['device']} ({label['cpu']}, {label['cpu_count']} cores)  matmul peak (float32, same run): "
          f"{peak:.1f} GFLOP/s" + (f"; bfloat16: {low_peak:.1f} GFLOP/s" if low else ""))
    rows = []
    for size in args.sizes:
        batch, n, width, heads, layers = (int(x) for x in size.split(","))
        vjp_s = {}  # compute dtype -> one field + VJP at this size (median seconds)
        for spec in args.solvers:
            name, step = spec.split(":")
            if name not in SOLVERS:
                raise SystemExit(f"unknown solver {name!r}; choose from {sorted(SOLVERS)}")
            solver = SolverConfig(name) if step == "adaptive" else SolverConfig(name, adaptive=False, dt0=float(step))
            adjoints = [a for a in args.adjoints if a not in FIXED_STEP_ADJOINTS or not solver.adaptive]
            modes = [("forward", solver)] + [("forward+backward", dataclasses.replace(solver, adjoint=a))
                                             for a in adjoints]
            if not solver.adaptive and "discrete" in adjoints:  # the discrete adjoint's forward: pdeflow's own
                # scan over the steps, the stages written out (the default adjoint's forward is diffrax's loop)
                modes[1:1] = [("forward", dataclasses.replace(solver, adjoint="discrete"))]
            for dtype, (mode, case) in itertools.product(args.compute_dtypes, modes):
                if dtype not in vjp_s:
                    vjp_s[dtype] = field_vjp_seconds(batch, n, width, heads, layers, dtype)
                row = run_case(batch, n, width, heads, layers, case, mode, args.repeats, peak, dtype, vjp_s[dtype])
                rows.append(row)
                what = f"fwd+bwd {case.adjoint}" if mode != "forward" else f"forward {row['adjoint'] or ''}"
                memory = row["compiled_memory_bytes"]
                extra = "" if mode == "forward" else f" overhead {row['overhead']:5.2f}"
                extra += f" XLA peak {memory['total'] / 2**20:6.0f} MiB" if memory else ""
                print(f"B={batch:3d} N={n:4d} r={width:4d} H={heads:3d} L={layers} {spec:15s} {dtype:8s} {what:18s} "
                      f"steps={row['solver_steps']:3d} compile={row['compile_and_first_s']:6.1f}s "
                      f"steady={row['steady_s'] * 1e3:8.1f}ms {row['gflop_per_s']:7.1f} GFLOP/s "
                      f"= {100 * row['fraction_of_matmul_peak']:5.1f}% of peak{extra}", flush=True)
                # after each case, against the start's peak (a run stopped by a time limit keeps what it measured;
                # the end of the run rewrites the file with the fractions against the higher peak)
                write_result("solver_throughput", {**label, "matmul_peak_gflop_per_s": peak,
                                                   "bfloat16_matmul_peak_gflop_per_s": low_peak}, rows, args.out)
    # a shared machine's peak moves between runs: measure it again at the end and count against the higher one
    end_peak = matmul_peak(args.peak_size)
    if low:
        low_peak = max(low_peak, matmul_peak(args.peak_size, dtype=jnp.bfloat16))
        for row in rows:
            if row["compute_dtype"] == "bfloat16":
                row["fraction_of_bfloat16_matmul_peak"] = row["gflop_per_s"] / low_peak
                print(f"  {row['B']},{row['N']},{row['r']} {row['solver']} bfloat16 {row['mode']} "
                      f"{row['adjoint'] or ''}: {100 * row['fraction_of_bfloat16_matmul_peak']:5.1f}% of the bfloat16 "
                      f"peak ({low_peak:.1f} GFLOP/s)")
    if end_peak > peak:
        print(f"matmul peak at the end: {end_peak:.1f} GFLOP/s (higher); fractions against it:")
        for row in rows:
            row["fraction_of_matmul_peak"] = row["gflop_per_s"] / end_peak
            print(f"  {row['B']},{row['N']},{row['r']} {row['solver']} {row['compute_dtype']} {row['mode']} "
                  f"{row['adjoint'] or ''}: {100 * row['fraction_of_matmul_peak']:5.1f}% of peak")
    label = {**label, "matmul_peak_gflop_per_s": max(peak, end_peak), "matmul_peak_start_end": [peak, end_peak],
             "bfloat16_matmul_peak_gflop_per_s": low_peak,
             "defaults": dataclasses.asdict(SolverConfig())}
    path = write_result("solver_throughput", label, rows, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
