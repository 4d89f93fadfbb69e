"""How the cost of the attention-PDE solve grows with tokens N, batch B, depth L and the number of devices.

Fixed-step solves (Kutta's rk4, dt = 0.5), so every size takes the same number of steps and the growth is
the vector field's own; forward and forward+backward (recursive-checkpoint adjoint). The device sweep runs
one subprocess per device count with ``XLA_FLAGS=--xla_force_host_platform_device_count=D`` on the CPU (or
uses the real devices of an accelerator), shards the batch over a 1-D ``jax.sharding.Mesh`` and replicates
the parameters. On a CPU the forced devices share the same cores, so that sweep shows the overhead of
sharding rather than a speed-up; on several real devices it shows the speed-up.

    python -m benchmarks.scaling                      # JSON + figure in benchmarks/results/
    python -m benchmarks.scaling --quick              # smaller sweeps
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.reporting import machine_label, write_result
from pdeflow.pde import SolverConfig, SurrogateConfig, attention_pde, init_surrogate
from pdeflow.surrogate import token_laplacians

BASE = {"B": 16, "N": 48, "r": 64, "H": 12, "L": 6}
SOLVER = SolverConfig("rk4", adaptive=False, dt0=0.5)


def build(batch: int, n: int, width: int, heads: int, layers: int, mesh=None):
    """Jitted forward and gradient of the solve at one size (batch sharded over ``mesh`` if given)."""
    config = SurrogateConfig(num_layers=layers, num_heads=heads, model_dim=width, width=width,
                             key_dim=16, num_knots=min(6, layers))
    params = init_surrogate(jax.random.PRNGKey(0), config)
    rng = np.random.default_rng(0)
    hidden0 = jnp.asarray(rng.normal(size=(batch, n, width)), jnp.float32)
    mask = jnp.ones((batch, n), bool)
    laplacians = token_laplacians(mask)
    if mesh is not None:
        from jax.sharding import NamedSharding, PartitionSpec

        data = NamedSharding(mesh, PartitionSpec("data"))
        hidden0, mask, laplacians = (jax.device_put(x, data) for x in (hidden0, mask, laplacians))
        params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))

    def loss(p, h, lap, m):
        states, ok, _ = attention_pde.trajectory(p, config, SOLVER, h, lap, m)
        return jnp.sum(states[1:] ** 2) / batch

    forward = jax.jit(lambda p, h, lap, m: attention_pde.trajectory(p, config, SOLVER, h, lap, m)[0])
    gradient = jax.jit(jax.grad(loss))
    return forward, gradient, (params, hidden0, laplacians, mask)


def best_time(fn, args, repeats: int) -> tuple[float, float]:
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - start)
    return first, best


def measure(size: dict, repeats: int, mesh=None) -> dict:
    forward, gradient, args = build(size["B"], size["N"], size["r"], size["H"], size["L"], mesh)
    compile_fwd, fwd = best_time(forward, args, repeats)
    compile_grad, grad = best_time(gradient, args, repeats)
    return {**size, "forward_s": fwd, "forward_backward_s": grad, "forward_first_s": compile_fwd,
            "forward_backward_first_s": compile_grad}


def sweep(name: str, values: list[int], repeats: int) -> list[dict]:
    rows = []
    for value in values:
        row = {**measure({**BASE, name: value}, repeats), "sweep": name}
        rows.append(row)
        print(f"  {name}={value:4d}: forward {row['forward_s'] * 1e3:8.1f} ms   forward+backward "
              f"{row['forward_backward_s'] * 1e3:8.1f} ms", flush=True)
    return rows


def device_worker(devices: int, repeats: int) -> dict:
    """Runs in a subprocess whose XLA_FLAGS force ``devices`` host devices."""
    mesh = jax.make_mesh((devices,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    return {**measure({**BASE, "B": 32}, repeats, mesh), "sweep": "devices", "devices": devices,
            "platform": jax.devices()[0].platform}


def device_sweep(counts: list[int], repeats: int) -> list[dict]:
    rows = []
    for count in counts:
        env = dict(os.environ)
        if jax.devices()[0].platform == "cpu":
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
        elif count > jax.device_count():
            continue
        out = subprocess.run([sys.executable, "-m", "benchmarks.scaling", "--device-worker", str(count),
                              "--repeats", str(repeats)], env=env, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"device worker ({count} devices) failed:\n{out.stderr[-3000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"  devices={count}: forward {row['forward_s'] * 1e3:8.1f} ms   forward+backward "
              f"{row['forward_backward_s'] * 1e3:8.1f} ms", flush=True)
    return rows


def slope(rows: list[dict], key: str, value: str) -> float:
    x = np.log([row[key] for row in rows])
    y = np.log([row[value] for row in rows])
    return float(np.polyfit(x, y, 1)[0])


def figure(rows: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("N", "tokens N"), ("B", "batch B"), ("L", "depth L"), ("devices", "devices (batch 32)")]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    for ax, (key, title) in zip(axes, panels):
        part = [row for row in rows if row["sweep"] == key]
        if not part:
            ax.set_visible(False)
            continue
        x = [row[key] for row in part]
        for value, style in (("forward_s", "o-"), ("forward_backward_s", "s--")):
            ax.plot(x, [row[value] * 1e3 for row in part], style, label=value.replace("_s", "").replace("_", "+"))
        if key == "N" and len(part) > 1:  # reference slopes 1 and 2 through the first point
            x0, y0 = x[0], part[0]["forward_s"] * 1e3
            for power in (1, 2):
                ax.plot(x, [y0 * (xi / x0) ** power for xi in x], ":", color="grey", lw=1)
                ax.text(x[-1], y0 * (x[-1] / x0) ** power, f"N^{power}", color="grey", fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(title)
        ax.set_ylabel("ms per solve")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"attention-PDE solve cost (rk4, dt=0.5; base B={BASE['B']}, N={BASE['N']}, r={BASE['r']}, "
                 f"H={BASE['H']}, L={BASE['L']})")
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".partial.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.rename(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", nargs="*", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--device-worker", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.device_worker:
        print(json.dumps(device_worker(args.device_worker, args.repeats)))
        return
    label = machine_label()
    print(f"{label['device']} ({label['cpu']}, {label['cpu_count']} cores)  jax {label['jax']}", flush=True)
    sizes = {"N": [16, 32, 64, 128] if args.quick else [16, 32, 64, 128, 256],
             "B": [1, 4, 16] if args.quick else [1, 4, 16, 64],
             "L": [2, 6] if args.quick else [2, 4, 6, 12]}
    rows = []
    for name, values in sizes.items():
        print(f"sweep {name}:", flush=True)
        rows += sweep(name, values, args.repeats)
    print("sweep devices:", flush=True)
    rows += device_sweep(args.devices, args.repeats)
    n_rows = [row for row in rows if row["sweep"] == "N"]
    large = [row for row in n_rows if row["N"] >= 64]
    slopes = {"forward_vs_N": slope(n_rows, "N", "forward_s"),
              "forward_vs_N_at_N>=64": slope(large, "N", "forward_s") if len(large) > 1 else None,
              "forward_backward_vs_N": slope(n_rows, "N", "forward_backward_s"),
              "forward_vs_B": slope([r for r in rows if r["sweep"] == "B"], "B", "forward_s"),
              "forward_vs_L": slope([r for r in rows if r["sweep"] == "L"], "L", "forward_s")}
    print("log-log slopes: " + ", ".join(f"{k} {v:.2f}" for k, v in slopes.items() if v is not None))
    path = write_result("scaling", label, rows, args.out, base=BASE, solver="rk4 dt=0.5", slopes=slopes)
    figure(rows, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
