"""The vector field's matrix products one by one: XLA (``jnp.einsum``, jitted) against PyTorch (``torch.einsum``).

The peer comparison (`benchmarks.peer_torchdiffeq`) times whole fields and solves; this benchmark times each
product the field (and its VJP) is made of, alone, at the field's own shapes, in both frameworks on the same
machine in the same run, so that a gap between the two fields can be traced to the kernels that run its
products rather than to the field's formulation. Each product is timed in XLA and in PyTorch back to back
(best of the repeats), and the two results are checked equal (float32) before timing.

    pip install torch==2.13.0 torchdiffeq      # the benchmark-only peer (`pip install -e '.[bench]'`)
    python -m benchmarks.peer_matmuls                        # B, N, r, H, L = 32, 128, 384, 12, 6
    python -m benchmarks.peer_matmuls --size 32,128,384,12,6 --repeats 20
"""

from __future__ import annotations

import argparse
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.reporting import machine_label, write_result
from benchmarks.solver_throughput import benchmark_config
from pdeflow.pde import SurrogateConfig


def field_products(config: SurrogateConfig, batch: int, n: int, square: int = 2048) -> list[tuple]:
    """``(name, einsum spec, operand shapes)`` of every product of one batched field evaluation, the two
    products of the VJP that the weight gradients need most (transposed operands), and a ``square`` matmul
    (the size `benchmarks.reporting.matmul_peak` uses for the machine's peak)."""
    b, r, h, k = batch, config.width, config.num_heads, config.key_dim
    v, m = config.value_rank, config.mlp_width
    return [
        ("query/key", "bnr,rc->bnc", [(b, n, r), (r, 2 * h * k)]),
        ("logits (per head)", "bhik,bhjk->bhij", [(b, h, n, k), (b, h, n, k)]),
        ("value down", "bnr,hrv->bhnv", [(b, n, r), (h, r, v)]),
        ("maps x values (per head)", "bhij,bhjv->bhiv", [(b, h, n, n), (b, h, n, v)]),
        ("value up", "bhiv,hvr->bir", [(b, h, n, v), (h, v, r)]),
        ("mixing x state", "bij,bjr->bir", [(b, n, n), (b, n, r)]),
        ("mlp in", "bnr,rm->bnm", [(b, n, r), (r, m)]),
        ("mlp out", "bnm,mr->bnr", [(b, n, m), (m, r)]),
        ("VJP: query/key map gradient", "bnr,bnc->rc", [(b, n, r), (b, n, 2 * h * k)]),
        ("VJP: state gradient", "bnc,rc->bnr", [(b, n, 2 * h * k), (r, 2 * h * k)]),
        (f"square {square}", "ij,jk->ik", [(square, square), (square, square)]),
    ]


def einsum_flops(spec: str, shapes: list[tuple]) -> int:
    """Multiply-adds x 2 of ``einsum(spec)`` on operands of ``shapes``."""
    sizes = {}
    for letters, shape in zip(spec.split("->")[0].split(","), shapes):
        sizes.update(zip(letters, shape))
    return 2 * math.prod(sizes.values())


def compare_product(name: str, spec: str, shapes: list[tuple], repeats: int, seed: int = 0) -> dict:
    """Time one product in XLA and in PyTorch; raise ``SystemExit`` if the two results differ."""
    # the benchmark-only peer (its absence is said on import) and its timing rule, best of the repeats
    from benchmarks.peer_torchdiffeq import timed, torch

    rng = np.random.default_rng(seed)
    operands = [rng.normal(size=s).astype(np.float32) for s in shapes]
    xla = jax.jit(lambda *xs: jnp.einsum(spec, *xs))
    xs_jax = [jnp.asarray(x) for x in operands]
    xs_torch = [torch.from_numpy(x) for x in operands]
    out_jax = np.asarray(xla(*xs_jax))
    with torch.no_grad():
        out_torch = torch.einsum(spec, *xs_torch).numpy()
    scale = float(np.abs(out_torch).max()) or 1.0
    diff = float(np.abs(out_jax - out_torch).max())
    if diff > 1e-4 * scale:
        raise SystemExit(f"{name}: XLA and PyTorch disagree (max |Δ| = {diff:.2e}, scale {scale:.2e})")
    _, jax_s = timed(lambda: xla(*xs_jax), repeats, jax.block_until_ready)
    with torch.no_grad():
        _, torch_s = timed(lambda: torch.einsum(spec, *xs_torch), repeats)
    flops = einsum_flops(spec, shapes)
    return {"product": name, "spec": spec, "shapes": [list(s) for s in shapes], "flops": flops,
            "max_abs_diff": diff, "xla_s": jax_s, "torch_s": torch_s, "xla_gflop_per_s": flops / jax_s / 1e9,
            "torch_gflop_per_s": flops / torch_s / 1e9, "speedup_xla_over_torch": torch_s / jax_s}


def run(size: str, repeats: int, square: int = 2048) -> list[dict]:
    batch, n, width, heads, layers = (int(x) for x in size.split(","))
    config = benchmark_config(width, heads, layers)
    rows = []
    print(f"{'product':30s} {'shapes':34s} {'XLA GFLOP/s':>12s} {'torch GFLOP/s':>14s} {'XLA/torch':>10s}")
    for name, spec, shapes in field_products(config, batch, n, square):
        row = compare_product(name, spec, shapes, repeats)
        row.update(B=batch, N=n, r=width, H=heads, L=layers)
        rows.append(row)
        print(f"{name:30s} {' x '.join(str(tuple(s)) for s in shapes):34s} {row['xla_gflop_per_s']:12.1f} "
              f"{row['torch_gflop_per_s']:14.1f} {row['speedup_xla_over_torch']:9.2f}x", flush=True)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="32,128,384,12,6", help="B,N,r,H,L of the field")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--square", type=int, default=2048, help="side of the square reference matmul")
    parser.add_argument("--out", default=None, help="folder for the JSON (default benchmarks/results)")
    args = parser.parse_args(argv)
    from benchmarks.torch_peer import torch

    torch.set_num_threads(os.cpu_count() or 1)
    label = machine_label()
    label.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    print(f"{label['cpu']}  jax {label['jax']}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    rows = run(args.size, args.repeats, args.square)
    print(f"wrote {write_result('peer_matmuls', label, rows, args.out)}")


if __name__ == "__main__":
    main()
