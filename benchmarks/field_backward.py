"""The vector field's hand-written backward (``SurrogateConfig(field_backward="custom")``) against autodiff's VJP:
one field evaluation, one field + VJP, the maps read off the states at the L layer times + their VJP
(`pdeflow.pde.maps_backward`, once a fit step), and a fixed-step solve's forward+backward, each timed in
interleaved rounds (min and median over the repeats of every round), at the benchmark sizes.

    python -m benchmarks.field_backward                         # B,N,r = 32,48,64 and 32,128,384
    python -m benchmarks.field_backward --sizes 32,48,64,12,6 --rounds 5 --solve-repeats 5
    python -m benchmarks.field_backward --parts                 # also the VJP of each term alone

The solve is rk4 with dt 0.25 over L = 6 (24 steps, 96 field evaluations) with the stored adjoint, the loss
``Σ w ⊙ states`` over the saved states; its gradient w.r.t. every parameter and the initial state.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.reporting import machine_label, write_result
from benchmarks.solver_throughput import DEFAULT_SIZES, benchmark_config
from pdeflow.pde import SolverConfig, attention_pde, init_surrogate
from pdeflow.pde.attention_pde import FIELD_BACKWARDS
from pdeflow.pde.solve import solve
from pdeflow.surrogate import token_laplacians


def _times(fn, args, repeats: int) -> list[float]:
    jax.block_until_ready(fn(*args))
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out.append(time.perf_counter() - start)
    return out


def _functions(config, solver: SolverConfig, laplacians, mask):
    t = jnp.float32(0.5)

    def field(params, u):
        return attention_pde.batch_vector_field(config, t, u, (params, laplacians, mask))

    def field_vjp(params, u, cotangent):
        return jax.vjp(field, params, u)[1](cotangent)

    def solve_loss(params, u0, weights):
        states, _, _ = solve(lambda s, x, a: attention_pde.batch_vector_field(config, s, x, a), u0,
                                           (params, laplacians, mask), float(config.num_layers),
                                           np.arange(config.num_layers + 1, dtype=np.float32), solver)
        return jnp.sum(weights * states)

    def maps_vjp(params, states, cotangent):  # (L + 1, B, N, r) -> the maps at t = 0 … L − 1, and their VJP
        return jax.vjp(lambda p, s: attention_pde.batch_attention_log_maps(p, config, s, mask), params,
                       states)[1](cotangent)

    return {"field": jax.jit(field), "field_vjp": jax.jit(field_vjp), "maps_vjp": jax.jit(maps_vjp),
            "solve_fwd_bwd": jax.jit(jax.grad(solve_loss, argnums=(0, 1)))}


def run_size(batch, n, width, heads, layers, rounds: int, repeats: int, solve_repeats: int, compute_dtype: str,
             parts: bool) -> list[dict]:
    base = benchmark_config(width, heads, layers, compute_dtype)
    solver = SolverConfig("rk4", adaptive=False, dt0=0.25, adjoint="stored")
    params = init_surrogate(jax.random.PRNGKey(0), base)
    rng = np.random.default_rng(0)
    params["value"]["up"] = jnp.asarray(0.1 * rng.normal(size=params["value"]["up"].shape), jnp.float32)
    u = jnp.asarray(rng.normal(size=(batch, n, width)), jnp.float32)
    mask = jnp.ones((batch, n), bool)
    laplacians = token_laplacians(mask)
    cotangent = jnp.asarray(rng.normal(size=u.shape), jnp.float32)
    weights = jnp.asarray(rng.normal(size=(layers + 1,) + u.shape), jnp.float32) * 1e-3
    states = jnp.asarray(rng.normal(size=(layers + 1,) + u.shape), jnp.float32)
    maps_cotangent = jnp.asarray(rng.normal(size=(layers, batch, heads, n, n)), jnp.float32)
    term_sets = [("all", base.terms)] + ([(name, (name,)) for name in base.terms] if parts else [])
    rows = []
    for label, on in term_sets:
        functions = {fb: _functions(dataclasses.replace(base, terms=on, field_backward=fb), solver, laplacians, mask)
                     for fb in FIELD_BACKWARDS}
        inputs = {"field": (params, u), "field_vjp": (params, u, cotangent), "solve_fwd_bwd": (params, u, weights),
                  "maps_vjp": (params, states, maps_cotangent)}
        kinds = ["field", "field_vjp"] + (["maps_vjp"] if label == "all" else [])
        kinds += ["solve_fwd_bwd"] if label == "all" and solve_repeats else []
        samples = {(fb, kind): [] for fb in FIELD_BACKWARDS for kind in kinds}
        for _ in range(rounds):  # interleaved, so both backwards see the same load of the shared host
            for kind in kinds:
                for fb in FIELD_BACKWARDS:
                    count = solve_repeats if kind == "solve_fwd_bwd" else repeats
                    samples[fb, kind] += _times(functions[fb][kind], inputs[kind], count)
        for kind in kinds:
            row = {"B": batch, "N": n, "r": width, "H": heads, "L": layers, "compute_dtype": compute_dtype,
                   "terms": label, "mode": kind}
            for fb in FIELD_BACKWARDS:
                row[f"{fb}_min_s"] = min(samples[fb, kind])
                row[f"{fb}_median_s"] = float(np.median(samples[fb, kind]))
            row["speedup"] = row["autodiff_median_s"] / row["custom_median_s"]
            rows.append(row)
            print(f"  {batch},{n},{width} {compute_dtype} {label:9s} {kind:13s} autodiff "
                  f"{row['autodiff_min_s'] * 1e3:9.2f} / {row['autodiff_median_s'] * 1e3:9.2f} ms   custom "
                  f"{row['custom_min_s'] * 1e3:9.2f} / {row['custom_median_s'] * 1e3:9.2f} ms (min / median)  "
                  f"x{row['speedup']:.2f}", flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="*", default=DEFAULT_SIZES[1:], help="B,N,r,H,L per case")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every measurement")
    parser.add_argument("--repeats", type=int, default=10, help="field timings per round")
    parser.add_argument("--solve-repeats", type=int, default=2, help="solve timings per round (0: no solve)")
    parser.add_argument("--compute-dtype", default="float32", choices=list(attention_pde.COMPUTE_DTYPES))
    parser.add_argument("--parts", action="store_true", help="also time each term alone (field and field + VJP)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    label = machine_label()
    print(f"{label['device']} ({label['cpu']}, {label['cpu_count']} cores)  jax {label['jax']}", flush=True)
    rows = []
    for size in args.sizes:
        batch, n, width, heads, layers = (int(x) for x in size.split(","))
        rows += run_size(batch, n, width, heads, layers, args.rounds, args.repeats, args.solve_repeats,
                         args.compute_dtype, args.parts)
    print(f"wrote {write_result('field_backward', label, rows, args.out)}")


if __name__ == "__main__":
    main()
