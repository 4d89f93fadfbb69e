"""What the experiment scripts share: the options of the surrogate-fit sweeps, the parser and loading of a script
that reads a finished fit's folder, and the way a script runs and writes its result folder."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from pdeflow.store import check_output_dir, result_folder


def fit_sweep_parser(doc: str, out: str, models: list[str]) -> argparse.ArgumentParser:
    """The parser of a script that fits surrogates to several models (`cross_modality`, `fidelity_vs_size`):
    described by the first paragraph of ``doc``, defaults shown, with ``--out`` (default ``out``), ``--overwrite``
    and ``--models`` (any of ``models``, default all)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", default=out, help="output folder (written atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--models", nargs="+", default=list(models), choices=list(models))
    return parser


def fit_folder_parser(doc: str, out: str) -> argparse.ArgumentParser:
    """The parser of a script that reads a finished fit (a folder written by ``pdeflow fit``): described by the
    first paragraph of ``doc``, defaults shown, with the positional ``folder``, ``--out`` (default ``out``) and
    ``--overwrite``. Check the folder with `check_fit_folder` after parsing."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("folder", type=Path, help="a folder written by `pdeflow fit` (with params.safetensors)")
    parser.add_argument("--out", default=out, help="output folder (written atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return parser


def check_fit_folder(parser: argparse.ArgumentParser, folder: Path) -> None:
    """Exit through ``parser.error`` (before any long work) unless ``folder`` holds a fit's parameters."""
    if not (folder / "params.safetensors").is_file():
        parser.error(f"{folder} holds no params.safetensors: pass a folder written by `pdeflow fit`.")


def load_fit(folder: Path):
    """A finished fit: ``(config, params, surrogate, solver, splits)``, its ``config.json`` as a dict, the fitted
    parameters and settings (`pdeflow.report.load_surrogate`) and its model's traced splits (the same seeded
    split, so the same held-out inputs)."""
    import json

    from pdeflow.report import load_surrogate
    from pdeflow.sources import DataConfig, model_source_for

    config = json.loads((Path(folder) / "config.json").read_text())
    params, surrogate, solver = load_surrogate(folder)
    splits = model_source_for(config["model"]).trace_splits(DataConfig(**config["data"]))
    return config, params, surrogate, solver, splits


def run_and_write(out: str, overwrite: bool, run: Callable[[], dict], summary: Callable[[dict], str],
                  write_figures: Callable[[dict, Path], None],
                  parts: Callable[[dict], dict] = lambda result: {}) -> int:
    """Check that ``out`` can be written (before any long work), ``result = run()``, write it into ``out`` (all or
    nothing): ``NAME.json`` for each item of ``parts(result)``, ``results.json``, ``summary.md`` and the figures;
    print the summary. Returns 0, the script's exit status."""
    check_output_dir(out, overwrite)
    result = run()
    with result_folder(out, overwrite) as folder:
        for name, part in parts(result).items():
            folder.write_json(f"{name}.json", part)
        folder.write_json("results.json", result)
        folder.write_text("summary.md", summary(result))
        write_figures(result, folder.path)
    print(summary(result))
    return 0
