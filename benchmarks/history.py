"""Draw the benchmark history: every run's headline ratios (``benchmarks/results/history.jsonl``, one row per run,
appended by `benchmarks.reporting.write_result`) against the runs in the order they were made, so a slowdown
between commits is seen, not guessed.

    python -m benchmarks.history                       # benchmarks/results/history.jsonl -> history.png
    python -m benchmarks.history --folder DIR --metrics pdeflow_overhead speedup_median

One panel per (benchmark, metric), one line per case; each run is labelled by its commit and date, and the
marker says the machine (runs on different hosts are not comparable: compare ratios within a machine).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.reporting import RESULTS

DEFAULT_METRICS = ("speedup_median", "speedup_pdeflow_over_torch", "pdeflow_overhead", "overhead",
                   "fraction_of_matmul_peak", "speedup_pdeflow_over_peer")
MARKERS = "osD^v<>px*"


def read_history(path: str | Path) -> list[dict]:
    """The rows of a history file, oldest first (a missing file has none)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def series(rows: list[dict], metrics=DEFAULT_METRICS) -> dict:
    """``{(benchmark, metric): {case: [(run index, value), …]}}`` over the rows that hold the metric."""
    out = {}
    for index, row in enumerate(rows):
        for case, values in row.get("headline", {}).items():
            for metric in metrics:
                if metric in values:
                    out.setdefault((row["benchmark"], metric), {}).setdefault(case, []).append((index, values[metric]))
    return out


def machine_of(row: dict) -> str:
    machine = row.get("machine", {})
    return f"{machine.get('device', '?')} {machine.get('cpu', '')}".strip()


def draw(rows: list[dict], out: str | Path, metrics=DEFAULT_METRICS) -> Path:
    """Write the history figure to ``out`` (PNG) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = series(rows, metrics)
    machines = sorted({machine_of(row) for row in rows})
    marker = {m: MARKERS[i % len(MARKERS)] for i, m in enumerate(machines)}
    cases_seen = sorted({case for cases in panels.values() for case in cases})
    palette = plt.get_cmap("tab20")
    color = {case: palette(i % 20) for i, case in enumerate(cases_seen)}  # one colour per case in every panel
    fig, axes = plt.subplots(max(len(panels), 1), 1, figsize=(11, 2.8 * max(len(panels), 1)), squeeze=False)
    for ax, ((benchmark, metric), cases) in zip(axes[:, 0], sorted(panels.items())):
        for case, points in sorted(cases.items()):
            xs, ys = zip(*points)
            ax.plot(xs, ys, "-", lw=1, label=case, color=color[case])
            for x, y in points:
                ax.plot([x], [y], marker[machine_of(rows[x])], color=color[case], ms=4)
        ax.set_title(f"{benchmark}: {metric}", fontsize=9)
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels([f"{row.get('commit', '?')}\n{row.get('date', '')[:13]}" for row in rows], fontsize=6)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=5, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no runs with these metrics yet", ha="center")
    fig.suptitle("benchmark history (markers: " + "; ".join(f"{marker[m]} {m}" for m in machines) + ")", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=str(RESULTS), help="folder holding history.jsonl (default: results/)")
    parser.add_argument("--out", default=None, help="figure path (default: FOLDER/history.png)")
    parser.add_argument("--metrics", nargs="*", default=list(DEFAULT_METRICS))
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    rows = read_history(folder / "history.jsonl")
    if not rows:
        raise SystemExit(f"no history in {folder / 'history.jsonl'}: run a benchmark first (each run appends a row).")
    path = draw(rows, args.out or folder / "history.png", args.metrics)
    print(f"{len(rows)} runs -> {path}")


if __name__ == "__main__":
    main()
