"""The GPU suite: the peer, solver and fit benchmarks at GPU-sized cases, and the faithful preset fitted for
longer (`experiments.longer_fit`), each in one call of about seven minutes on a machine lent through the ``device``
tool. A lease of 15 minutes holds the two calls, back to back (the machine stays warm 30 s after a call).

Each part runs in a process of its own under its own time limit (a part that fails or runs out of time does not
stop the next), with float32 matmuls at full precision on both sides (``JAX_DEFAULT_MATMUL_PRECISION=highest``;
PyTorch does not use TF32 for matmuls by default), and writes the usual labelled JSON and its ``history.jsonl``
row into ``OUT/results/``; everything printed goes to ``OUT/suite.log``. No part needs a GPU: on a CPU the same
command runs (slowly), and ``--smoke`` shrinks every part to seconds for the tests.

    # here, once: the MiniLM weights and this Python's pydoc topics, packed to travel (`benchmarks.gpu_carry`)
    echo /.device/ >> .git/info/exclude; python -m benchmarks.gpu_carry pack .device
    # the device calls, carry [".device"] (its python3 has jax with CUDA, torch, torchdiffeq, flax, optax, diffrax):
    PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_suite --carry .device --out $OUT --budget 360
    PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_suite --carry .device --out $OUT --only longer_fit --budget 440
    # (the longer fit: about 100 s to trace, compile and shoot, then 60 ms a step on an H200: 4,000 steps fit)
    # here, afterwards: the returned JSONs into benchmarks/results/ and their rows into its history.jsonl
    python -m benchmarks.gpu_suite --merge FOLDER_RETURNED
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
# B, N, r, H, L: the fit's size, the largest CPU size, and a batch eight times larger (GPU-sized). XLA compiles
# each case's solve in 2-25 s on the GPU (measured on an H200, 2026-12-04), most of a part's time
PEER_SIZES = ["32,48,64,12,6", "32,128,384,12,6", "256,128,384,12,6"]
SOLVER_SIZES = ["256,128,384,12,6"]
BENCHMARKS = ("peer", "solver", "fit")


@dataclasses.dataclass(frozen=True)
class Part:
    """One benchmark: ``python -m module *args`` with at most ``seconds`` of the suite's budget."""

    name: str
    module: str
    args: tuple[str, ...]
    seconds: float


def parts(out: Path, smoke: bool, longer_fit_steps: int) -> list[Part]:
    """The suite, in order: peer, solver, fit step, then the longer fit with whatever time is left."""
    results = str(out / "results")
    if smoke:
        return [Part("peer", "benchmarks.peer_torchdiffeq",
                     ("--sizes", "2,8,8,2,2", "--solvers", "rk4", "--repeats", "1", "--out", results), 120),
                Part("solver", "benchmarks.solver_throughput",
                     ("--sizes", "2,8,8,2,2", "--solvers", "rk4:0.5", "--adjoints", "stored", "--repeats", "1",
                      "--peak-size", "64", "--out", results), 120)]
    device = ("--torch-device", "cuda")
    return [Part("peer", "benchmarks.peer_torchdiffeq",
                 ("--sizes", *PEER_SIZES, "--solvers", "rk4", "--repeats", "5", *device, "--out", results), 160),
            Part("solver", "benchmarks.solver_throughput",
                 ("--sizes", *SOLVER_SIZES, "--solvers", "rk4:0.5", "--adjoints", "stored", "discrete",
                  "--repeats", "5", "--peak-size", "8192", "--out", results), 110),
            Part("fit", "benchmarks.fit_throughput",
                 ("--no-fit", "--length-buckets", "1", "--timed-steps", "20", *device, "--out", results), 90),
            Part("longer_fit", "experiments.longer_fit",
                 ("--steps", str(longer_fit_steps), "--eval-every", "250", "--length-buckets", "1",
                  "--out", str(out / "longer_fit")), 10_000)]


def environment(carry: Path | None) -> dict:
    """The parts' environment: full-precision float32 matmuls, no preallocation of the GPU's memory (torch shares
    it), the carried packages first on the path, and the commit the pack was made at."""
    env = {**os.environ, "JAX_DEFAULT_MATMUL_PRECISION": "highest", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
           "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
    paths = [str(ROOT)]
    if carry is not None:
        from benchmarks.gpu_carry import unpack

        site = Path("/tmp/pdeflow_site")
        unpack(carry, site)
        paths.insert(0, str(site))
        manifest = json.loads((carry / "manifest.json").read_text())
        env.setdefault("BENCHMARK_COMMIT", manifest.get("commit", "unknown"))
    env["PYTHONPATH"] = os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return env


def run_suite(out: Path, budget: float, carry: Path | None, smoke: bool, only: list[str] | None,
              longer_fit_steps: int) -> list[dict]:
    """Run the parts within ``budget`` seconds in all; returns ``[{part, status, seconds}]``."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    env = environment(carry)
    log = (out / "suite.log").open("a")
    statuses = []
    for part in parts(out, smoke, longer_fit_steps):
        if only and part.name not in only:
            continue
        left = budget - (time.perf_counter() - started)
        if left < 20:
            statuses.append({"part": part.name, "status": "skipped: no time left", "seconds": 0.0})
            continue
        seconds = min(part.seconds, left)
        args = part.args
        if part.name == "longer_fit":  # stop at the first evaluation past its share, keeping 60 s to finish
            args = args + ("--max-seconds", str(max(seconds - 60, 10)))
        command = [sys.executable, "-m", part.module, *args]
        print(f"== {part.name} (at most {seconds:.0f} s): {' '.join(command)}", file=log, flush=True)
        began = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=seconds)
            status = "ok" if done.returncode == 0 else f"exit {done.returncode}"
        except subprocess.TimeoutExpired:
            status = "out of time (what it saved before is kept)"
        statuses.append({"part": part.name, "status": status, "seconds": round(time.perf_counter() - began, 1)})
        print(f"== {part.name}: {status} after {statuses[-1]['seconds']} s", file=log, flush=True)
    for partial in out.rglob("*.partial"):  # an interrupted atomic write
        partial.unlink()
    print(f"== suite: {json.dumps(statuses)}", file=log, flush=True)
    log.close()
    return statuses


def merge(folder: Path, results: Path = RESULTS) -> list[Path]:
    """Copy the JSON results returned from a GPU run into ``results`` and add their history rows to its
    ``history.jsonl`` (a row of the same benchmark and date replaces an older one)."""
    copied = []
    for path in sorted(folder.rglob("*.json")):
        if path.parent.name == "results" or path.parent == folder:
            if any(path.name.startswith(name) for name in ("peer_", "solver_", "fit_")):
                shutil.copy2(path, results / path.name)
                copied.append(results / path.name)
    from benchmarks.reporting import merge_history

    rows = [json.loads(line) for history in folder.rglob("history.jsonl")
            for line in history.read_text().splitlines() if line.strip()]
    merge_history(results / "history.jsonl", rows)
    return copied


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for results/, longer_fit/ and suite.log")
    parser.add_argument("--budget", type=float, default=480, help="seconds for the whole suite")
    parser.add_argument("--carry", type=Path, default=None,
                        help="a folder packed by `python -m benchmarks.gpu_carry pack` (MiniLM and pydoc topics)")
    parser.add_argument("--only", nargs="*", default=list(BENCHMARKS), choices=[*BENCHMARKS, "longer_fit"],
                        help="the parts to run (the longer fit needs a call of its own)")
    parser.add_argument("--longer-fit-steps", type=int, default=4000)
    parser.add_argument("--smoke", action="store_true", help="tiny cases only (seconds, on any machine)")
    parser.add_argument("--merge", type=Path, default=None,
                        help="instead of running: merge a returned folder into benchmarks/results/")
    args = parser.parse_args(argv)
    if args.merge is not None:
        for path in merge(args.merge):
            print(f"merged {path}")
        return
    if args.out is None:
        parser.error("--out is required (or --merge FOLDER)")
    statuses = run_suite(args.out, args.budget, args.carry, args.smoke, args.only, args.longer_fit_steps)
    print(json.dumps(statuses, indent=1))
    if not any(s["status"] == "ok" for s in statuses):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
