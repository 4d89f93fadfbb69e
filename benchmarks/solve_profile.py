"""Where a compiled solve spends its time, operation by operation: ``jax.profiler`` over the solve that
`benchmarks.solver_throughput` times, each XLA operation's time summed over the run, beside the matrix-product
FLOPs its compiled HLO holds, as GFLOP/s and as a fraction of the matmul peak measured in the same run.

    python -m benchmarks.solve_profile                          # B, N, r, H, L = 32, 128, 384, 12, 6; rk4, dt 0.5
    python -m benchmarks.solve_profile --mode forward+backward  # with the stored adjoint
    python -m benchmarks.solve_profile --size 32,48,64,12,6 --top 20

The solver benchmark gives one number for the whole solve (its fraction of the peak); this one says which
operations hold the rest: a product far below the peak, a softmax or a copy with no product at all. Each
operation is named by XLA (``ynn_fusion.7``, ``dot.111``, ``transpose_copy_fusion.2``) and described by the
JAX operations it was compiled from (``nr,rc->nc`` for an einsum, ``exp``, ``transpose``). Operations run
concurrently on several cores, so their times can add up to more than the solve's wall time; shares are of
that sum. A product that XLA hands to its thread pool without waiting (seen in the backward pass: an Eigen dot
whose operand is transposed) shows only part of its time, so it appears far faster than the peak (over 1.5
times); such rows are marked, and the operations running beside it are slowed by it instead.

Not every operation can run at the matmul peak: one that moves many bytes for few products (a softmax, a copy,
maps × a few values) is bound by memory traffic. Each row therefore also gives the bytes its operands and output
hold (read and written once each) as GB/s, against the rate of an element-wise pass that moves as many bytes,
measured in the same run (from the caches for the sizes a field's operations move, from memory for larger ones:
the run prints the curve), and its **bound**: the longer of its products at the peak and its bytes at that rate.
"of bound" near 100 % says the operation runs as fast as its arithmetic or its memory traffic allows; the solve's
bound, the sum of them, says what fraction of the peak the solve could reach with the same operations.
Writes a labelled JSON to ``benchmarks/results/`` and one row of its history.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import math
import re
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.reporting import bandwidth_at, bandwidth_curve, machine_label, matmul_peak, write_result
from benchmarks.solver_throughput import FLOP_FACTORS, field_flops, readout_flops, solve_inputs
from pdeflow.pde import SolverConfig
from pdeflow.pde.solve import ADJOINTS, STAGES
from pdeflow.surrogate import surrogate_forward

MODES = ("forward", "forward+backward")

_COMPUTATION = re.compile(r"^(?:ENTRY )?%([\w.\-]+) \(")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\w+)\[([\d,]*)\]\S* ([\w\-]+)\((.*)$")
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2, "f32": 4, "s32": 4, "u32": 4,
                "f64": 8, "s64": 8, "u64": 8}


def _dims(text: str) -> list[int]:
    return [int(d) for d in text.split(",") if d]


def _dims_attribute(rest: str, name: str) -> list[int]:
    found = re.search(name + r"=\{([\d,]*)\}", rest)
    return _dims(found.group(1)) if found else []


def _short_name(op_name: str) -> str:
    """The last part of a JAX ``op_name`` that says what the operation computes: ``vmap(nr,rc->nc)/dot_general``
    -> ``nr,rc->nc``; ``…/vmap()/exp`` -> ``exp``."""
    parts = [p for p in op_name.split("/") if p]
    if not parts:
        return ""
    spec = re.search(r"([a-z]+,[a-z]+->[a-z]+)", parts[-2] if len(parts) > 1 else "")
    return spec.group(1) if spec and parts[-1] == "dot_general" else parts[-1]


def hlo_operations(hlo_text: str) -> dict[str, dict]:
    """``{instruction: {"flops": matrix-product FLOPs of one execution, "bytes": bytes it reads and writes at
    least, "what": sorted short op names}}`` for every instruction of a compiled module's text
    (``compiled.as_text()``): a dot counts ``2 · |output| · |contracted|``, a fusion the dots of the computation it
    calls (nested fusions included); the bytes are its operands' and its output's sizes (each read or written once;
    for a dynamic update in place, its update's, read and written); ``what`` names the JAX operations it was made
    from (`_short_name`)."""
    shapes, sizes, operands_of, computation_of, calls, dots, names = {}, {}, {}, {}, {}, {}, {}
    computation = None
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            computation = header.group(1)
            continue
        found = _INSTRUCTION.match(line)
        if not found or computation is None:
            continue
        name, dtype, dims, op, rest = found.groups()
        shapes[name] = _dims(dims)
        sizes[name] = math.prod(shapes[name]) * _DTYPE_BYTES.get(dtype, 4)
        operands_of[name] = re.findall(r"%([\w.\-]+)", rest.split(")")[0])
        computation_of[name] = computation
        op_name = _OP_NAME.search(rest)
        names[name] = _short_name(op_name.group(1)) if op_name else ""
        called = re.search(r"calls=%([\w.\-]+)", rest)
        if called and op == "fusion":
            calls[name] = called.group(1)
        if op == "dot":
            operands = re.findall(r"%([\w.\-]+)", rest.split(")")[0])
            dots[name] = (operands[0] if operands else None, _dims_attribute(rest, "lhs_contracting_dims"))

    members = collections.defaultdict(list)
    for name, computation in computation_of.items():
        members[computation].append(name)

    def flops(name: str, depth: int = 0) -> int:
        if name in dots:
            lhs, contracting = dots[name]
            lhs_shape = shapes.get(lhs, [])
            contracted = math.prod(lhs_shape[d] for d in contracting if d < len(lhs_shape))
            return 2 * math.prod(shapes[name]) * contracted
        if name in calls and depth < 8:
            return sum(flops(member, depth + 1) for member in members[calls[name]])
        return 0

    def what(name: str, depth: int = 0) -> set[str]:
        if name in calls and depth < 8:
            inner = set()
            for member in members[calls[name]]:
                if member in dots or member in calls:
                    inner |= what(member, depth + 1)
            if inner:
                return inner
        return {names[name]} if names.get(name) else set()

    def traffic(name: str) -> int:
        if "dynamic-update-slice" in name:  # in place: the update read and written, the buffer untouched
            return 2 * sum(sizes.get(operand, 0) for operand in operands_of[name]
                           if shapes.get(operand) != shapes[name])
        return sizes[name] + sum(sizes.get(operand, 0) for operand in operands_of[name])

    return {name: {"flops": flops(name), "bytes": traffic(name), "what": sorted(what(name))} for name in shapes}


def trace_durations(trace_folder: str | Path, names) -> tuple[dict[str, float], dict[str, int]]:
    """Seconds and executions of each XLA operation in ``names`` summed over a ``jax.profiler`` trace written with
    ``create_perfetto_trace=True``."""
    found = sorted(Path(trace_folder).rglob("*.trace.json.gz"))
    if not found:
        raise FileNotFoundError(f"no perfetto trace under {trace_folder}; was the profiler run with "
                                "create_perfetto_trace=True?")
    events = json.loads(gzip.decompress(found[-1].read_bytes()))["traceEvents"]
    seconds, counts = collections.defaultdict(float), collections.Counter()
    for event in events:
        name = event.get("name")
        if event.get("ph") == "X" and name in names and "dur" in event:
            seconds[name] += event["dur"] * 1e-6
            counts[name] += 1
    return dict(seconds), dict(counts)


def profile_solve(batch: int, n: int, width: int, heads: int, layers: int, solver: SolverConfig, mode: str,
                  repeats: int, peak: float, bandwidth: dict[int, float] | None = None) -> tuple[list[dict], dict]:
    """Profile ``repeats`` runs of the solve (after a compiling one); rows per XLA operation, most time first,
    and the run's totals. With ``bandwidth`` (`benchmarks.reporting.bandwidth_curve`: GB/s of an element-wise
    pass by bytes moved) each row also gets its memory traffic's rate, the rate of a pass moving as many bytes
    a run, and its bound: the longer of its products at ``peak`` (GFLOP/s) and its bytes at that rate; the
    totals the sum of those bounds and the fraction of the peak a solve running every operation at its bound
    would reach."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    config, params, hidden0, laplacians, mask = solve_inputs(batch, n, width, heads, layers)

    def forward(p, hidden0, laplacians, mask):
        out = surrogate_forward(p, config, solver, hidden0, laplacians, mask)
        return jnp.sum(out.log_attention[..., 0]), out.num_steps

    fn = jax.jit(forward if mode == "forward" else jax.grad(forward, has_aux=True))
    args = (params, hidden0, laplacians, mask)
    operations = hlo_operations(fn.lower(*args).compile().as_text())
    steps = int(jax.block_until_ready(fn(*args))[1])  # the solve's own count
    with tempfile.TemporaryDirectory() as folder:
        with jax.profiler.trace(folder, create_perfetto_trace=True):
            walls = []
            for _ in range(repeats):
                start = time.perf_counter()
                jax.block_until_ready(fn(*args))
                walls.append(time.perf_counter() - start)
        seconds, counts = trace_durations(folder, operations)
    total = sum(seconds.values())
    rows = []
    for name, spent in sorted(seconds.items(), key=lambda item: -item[1]):
        flops = operations[name]["flops"] * counts[name] / repeats
        per_solve = spent / repeats
        rate = flops / per_solve / 1e9 if per_solve else 0.0
        row = {"B": batch, "N": n, "r": width, "H": heads, "L": layers, "mode": mode, "op": name,
               "what": operations[name]["what"], "executions_per_solve": counts[name] / repeats,
               "seconds_per_solve": per_solve, "share_of_op_time": spent / total,
               "gflop_per_solve": flops / 1e9, "gflop_per_s": rate, "of_matmul_peak": rate / peak,
               # far faster than the peak (a square product's rate, which a well-shaped product can pass by
               # a little): not all of its time is in the trace
               "partly_traced": rate / peak > 1.5}
        if bandwidth:
            rate_of_pass = bandwidth_at(bandwidth, operations[name]["bytes"])  # at one run's bytes
            traffic = operations[name]["bytes"] * counts[name] / repeats
            bound = max(flops / 1e9 / peak, traffic / 1e9 / rate_of_pass)
            row.update({"gb_per_solve": traffic / 1e9, "gb_per_s": traffic / per_solve / 1e9 if per_solve else 0.0,
                        "pass_gb_per_s": rate_of_pass,
                        "of_bandwidth": traffic / per_solve / 1e9 / rate_of_pass if per_solve else 0.0,
                        "bound_seconds_per_solve": bound, "of_bound": bound / per_solve if per_solve else 0.0})
        rows.append(row)
    factor = 1 if mode == "forward" else FLOP_FACTORS[solver.adjoint]
    counted = batch * (factor * steps * STAGES[solver.solver] * field_flops(config, n)
                       + (1 if mode == "forward" else 3) * readout_flops(config, n))
    wall = float(np.median(walls))
    totals = {"wall_s": wall, "op_seconds": total / repeats, "counted_gflop": counted / 1e9,
              "hlo_product_gflop": sum(row["gflop_per_solve"] for row in rows),
              "fraction_of_matmul_peak": counted / wall / 1e9 / peak}
    if bandwidth:
        bound = sum(row["bound_seconds_per_solve"] for row in rows)
        totals.update({"bound_s": bound, "bound_fraction_of_matmul_peak": counted / bound / 1e9 / peak})
    return rows, totals


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="32,128,384,12,6", help="B,N,r,H,L")
    parser.add_argument("--solver", default="rk4:0.5", help="SOLVER:DT (fixed steps of DT)")
    parser.add_argument("--mode", default="forward", choices=MODES)
    parser.add_argument("--adjoint", default="stored", choices=list(ADJOINTS), help="the adjoint of forward+backward")
    parser.add_argument("--repeats", type=int, default=3, help="profiled solves (after a compiling one)")
    parser.add_argument("--top", type=int, default=15, help="operations printed (all are written)")
    parser.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    args = parser.parse_args(argv)
    try:
        batch, n, width, heads, layers = (int(x) for x in args.size.split(","))
    except ValueError:
        parser.error(f"--size takes five integers B,N,r,H,L (e.g. 32,128,384,12,6); got {args.size!r}")
    name, _, dt = args.solver.partition(":")
    try:
        solver = SolverConfig(solver=name, adaptive=False, dt0=float(dt), adjoint=args.adjoint)
    except ValueError as error:
        parser.error(f"--solver takes SOLVER:DT with fixed steps (e.g. rk4:0.5); got {args.solver!r}: {error}")
    peak, bandwidth = matmul_peak(), bandwidth_curve()
    label = machine_label()
    print(f"{label['device']} ({label['cpu']}, {label['cpu_count']} cores)  matmul peak (float32, same run): "
          f"{peak:.1f} GFLOP/s; an element-wise pass moving "
          + ", ".join(f"{size / 2**20:g} MB: {rate:.0f}" for size, rate in bandwidth.items()) + " GB/s", flush=True)
    rows, totals = profile_solve(batch, n, width, heads, layers, solver, args.mode, args.repeats, peak, bandwidth)
    print(f"B={batch} N={n} r={width} H={heads} L={layers} {args.solver} {args.mode}: {1e3 * totals['wall_s']:.1f} ms "
          f"a solve, {100 * totals['fraction_of_matmul_peak']:.1f}% of the peak (the solver benchmark's FLOP count); "
          f"operations' times summed {1e3 * totals['op_seconds']:.1f} ms; every operation at its bound (products at "
          f"the peak, bytes at a pass's rate): {1e3 * totals['bound_s']:.1f} ms, "
          f"{100 * totals['bound_fraction_of_matmul_peak']:.1f}% of the peak", flush=True)
    print(f"  {'operation':34s} {'ms/solve':>9s} {'share':>6s} {'runs':>5s} {'GFLOP':>7s} {'GFLOP/s':>8s} "
          f"{'of peak':>7s} {'GB/s':>6s} {'of pass':>7s} {'of bound':>8s}  made from")
    for row in rows[:args.top]:
        print(f"  {row['op'][:34]:34s} {1e3 * row['seconds_per_solve']:9.2f} {100 * row['share_of_op_time']:5.1f}% "
              f"{row['executions_per_solve']:5.0f} {row['gflop_per_solve']:7.2f} {row['gflop_per_s']:8.1f} "
              f"{100 * row['of_matmul_peak']:6.1f}% {row['gb_per_s']:6.1f} {100 * row['of_bandwidth']:6.0f}% "
              f"{100 * row['of_bound']:7.0f}%  {', '.join(row['what'])[:60]}"
              + ("  [partly traced: runs on the pool]" if row["partly_traced"] else ""))
    rest = rows[args.top:]
    if rest:
        print(f"  {len(rest)} more operations: {1e3 * sum(r['seconds_per_solve'] for r in rest):.2f} ms "
              f"({100 * sum(r['share_of_op_time'] for r in rest):.1f}%)")
    path = write_result("solve_profile", {**label, "matmul_peak_gflop_per_s": peak,
                                          "pass_gb_per_s_by_bytes_moved": bandwidth}, rows, args.out,
                        solve=totals)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
