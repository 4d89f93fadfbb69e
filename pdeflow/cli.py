"""``pdeflow``: the command line, a thin layer over `pdeflow.pipeline` and `pdeflow.report`.

Every option of ``pdeflow fit`` is a field of one of the config dataclasses (same name, dashes for
underscores, same default, help from the dataclass docstring), so the CLI and the Python API agree.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import shutil
import sys
import typing
from pathlib import Path

from pdeflow.fit import FitConfig
from pdeflow.pde.attention_pde import TERMS, SurrogateConfig
from pdeflow.pde.solve import ADJOINTS, SOLVERS, SolverConfig, SolverError
from pdeflow.pipeline import DataConfig, RunConfig

# config section -> (dataclass, fields set from the traced model rather than by the user)
SECTIONS = {
    "data": (DataConfig, ()),
    "surrogate": (SurrogateConfig, ("num_layers", "num_heads", "model_dim")),
    "solver": (SolverConfig, ()),
    "fit": (FitConfig, ()),
}
CHOICES = {"solver": sorted(SOLVERS), "adjoint": list(ADJOINTS), "terms": list(TERMS)}


def field_help(cls) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a dataclass docstring."""
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    helps, names = {}, []
    for line in section.splitlines():
        match = re.match(r"\s{4}([\w, ]+):\s*(.*)", line)
        if match:
            names = [n.strip() for n in match.group(1).split(",")]
            for name in names:
                helps[name] = match.group(2)
        elif line.strip() and names:
            for name in names:
                helps[name] += " " + line.strip()
    return helps


def _add_section(group, cls, skip):
    helps = field_help(cls)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        flag = "--" + field.name.replace("_", "-")
        kind = hints[field.name]
        text = helps.get(field.name, "").replace("%", "%%")
        if kind is bool:
            group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=field.default,
                               help=text)
        elif typing.get_origin(kind) is tuple:
            group.add_argument(flag, dest=field.name, nargs="*", default=list(field.default),
                               choices=CHOICES.get(field.name), help=text)
        else:
            group.add_argument(flag, dest=field.name, type=kind, default=field.default,
                               choices=CHOICES.get(field.name), help=text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdeflow", description="Fit attention-PDE surrogates to transformers and measure information flow.")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser(
        "fit", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="fit the attention-PDE surrogate to all-MiniLM-L6-v2 on pydoc sentences and write the report",
        description="Trace all-MiniLM-L6-v2 on sentences of CPython's pydoc topics, fit the attention-PDE "
                    "du/dt = D(t)Δu + α(t)(Attn(t,u)uW_v − u) + β(t)R(u) so that its kernel at t = l matches "
                    "block l's attention maps, and write held-out fidelity against baselines (metrics.json, "
                    "summary.md), the fitted parameters (params.safetensors, config.json) and figures into --out.")
    fit.add_argument("--out", default="results/minilm", help="output folder (written atomically)")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    fit.add_argument("--top-k", dest="top_k", type=int, default=RunConfig.top_k, help="k of the top-k agreement")
    fit.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                     help="show a progress bar (default: when stderr is a terminal)")
    fit.add_argument("--checkpoints", default=None,
                     help="checkpoint folder (default: OUT.checkpoints); removed once the report is written")
    fit.add_argument("--resume", action="store_true",
                     help="continue an interrupted fit from its newest checkpoint (same settings)")
    fit.add_argument("--coordinator", default=None,
                     help="multi-host: host:port of process 0 (or JAX_COORDINATOR_ADDRESS); every process runs "
                          "the same command and process 0 writes the outputs")
    fit.add_argument("--num-processes", dest="num_processes", type=int, default=None,
                     help="multi-host: number of processes (or JAX_NUM_PROCESSES)")
    fit.add_argument("--process-id", dest="process_id", type=int, default=None,
                     help="multi-host: this process's rank in [0, num_processes) (or JAX_PROCESS_ID)")
    fit.add_argument("--host-devices", dest="host_devices", type=int, default=0,
                     help="on a CPU, split the machine into this many JAX devices for data-parallel fitting "
                          "(sets XLA_FLAGS=--xla_force_host_platform_device_count; 0 leaves it alone)")
    for section, (cls, skip) in SECTIONS.items():
        _add_section(fit.add_argument_group(f"{section} ({cls.__name__})"), cls, skip)
    return parser


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    sections = {}
    for section, (cls, skip) in SECTIONS.items():
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name not in skip}
        sections[section] = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
    return RunConfig(top_k=args.top_k, **sections)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    checkpoints = Path(args.checkpoints or f"{Path(args.out)}.checkpoints")
    try:
        if args.host_devices:
            from pdeflow.parallel import use_host_devices

            try:
                use_host_devices(args.host_devices)
            except RuntimeError as error:  # JAX started too early to split the CPU: a usage error
                raise ValueError(str(error)) from error
        from pdeflow import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        config = run_config_from_args(args)
        from pdeflow.pipeline import fit_minilm
        from pdeflow.report import check_output_dir, summary_markdown, write_report

        primary = distributed.is_primary()
        if primary:
            check_output_dir(args.out, args.overwrite)
        report = fit_minilm(config, progress=args.progress and primary, checkpoint_dir=checkpoints,
                            resume=args.resume)
        if not primary:
            return 0
        out = write_report(report, args.out, overwrite=args.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, SolverError) as error:
        print(f"pdeflow: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"pdeflow: {interrupt or 'interrupted'}; continue with the same command and --resume",
              file=sys.stderr)
        return 130
    shutil.rmtree(checkpoints, ignore_errors=True)  # the report is complete: the checkpoints are not needed
    print(summary_markdown(report.metrics))
    print(f"wrote {out}/ (metrics.json, summary.md, params.safetensors, config.json, figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
