"""``pdeflow``: the command line, a thin layer over `pdeflow.pipeline` and `pdeflow.report`.

Every option of ``pdeflow fit`` and ``pdeflow train vit-digits`` is a field of one of the config dataclasses
(same name, dashes for underscores, same default, help from the dataclass docstring), so the CLI and the
Python API agree.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import logging
import re
import sys
import typing
from pathlib import Path

from pdeflow.fitting.fit import INITS, FitConfig
from pdeflow.models.vit import ViTConfig
from pdeflow.pde.attention_pde import (
    COMPUTE_DTYPES,
    DEPTH_TIMES,
    FIELD_BACKWARDS,
    POSITION_FAMILIES,
    SPLITTINGS,
    STATE_NORMS,
    TERMS,
    VARYING,
    SurrogateConfig,
)
from pdeflow.pde.solve import ADJOINTS, SOLVERS, SolverConfig, SolverError
from pdeflow.pipeline import MODELS, PRESETS, DataConfig, RunConfig, preset_config
from pdeflow.sources import model_source_for, source_names
from pdeflow.studies.information_plane import InfoPlaneConfig
from pdeflow.studies.lens import PROTOCOLS, LensConfig
from pdeflow.train.lm import LM_FAMILIES, LMTrainConfig
from pdeflow.train.vit import ViTTrainConfig

# config section -> (dataclass, fields set from the traced model rather than by the user)
SECTIONS = {
    "data": (DataConfig, ()),
    "surrogate": (SurrogateConfig, ("num_layers", "num_heads", "model_dim", "grid", "prefix_tokens", "causal")),
    "solver": (SolverConfig, ()),
    "fit": (FitConfig, ()),
}
VIT_SECTIONS = {"model": (ViTConfig, ()), "train": (ViTTrainConfig, ("model",))}
CACHE_OUT = "the cache, $PDEFLOW_CACHE or ~/.cache/pdeflow, keyed by the settings"
INFO_SECTIONS = {"information plane": (InfoPlaneConfig, ("train",)), **VIT_SECTIONS}
CHOICES = {"solver": sorted(SOLVERS), "adjoint": list(ADJOINTS), "terms": list(TERMS), "model": list(MODELS),
           "family": sorted(LM_FAMILIES), "families": sorted(LM_FAMILIES), "compute_dtype": list(COMPUTE_DTYPES),
           "field_backward": list(FIELD_BACKWARDS), "depth_time": list(DEPTH_TIMES),
           "splitting": list(SPLITTINGS),
           "position_family": list(POSITION_FAMILIES), "state_norm": list(STATE_NORMS),
           "residual_norm": list(STATE_NORMS), "varying": list(VARYING), "init": list(INITS),
           "protocol": list(PROTOCOLS)}


def field_help(cls) -> dict[str, str]:
    """``{field: text}`` from the ``Attributes:`` section of a dataclass docstring."""
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    helps, names = {}, []
    for line in section.splitlines():
        match = re.match(r" {4}(\w[\w, ]*):\s*(.*)", line)  # an attribute's first line (not a continuation)
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
                               type=typing.get_args(kind)[0], choices=CHOICES.get(field.name), help=text)
        else:
            group.add_argument(flag, dest=field.name, type=kind, default=field.default,
                               choices=CHOICES.get(field.name), help=text)


def build_parser(fit_defaults: dict | None = None) -> argparse.ArgumentParser:
    """The ``pdeflow`` parser; ``fit_defaults`` (``{dest: value}``) replaces defaults of ``pdeflow fit``'s
    options (what ``--preset`` does: flags given explicitly still win)."""
    parser = argparse.ArgumentParser(
        prog="pdeflow", description="Fit attention-PDE surrogates to transformers and measure information flow.")
    commands = parser.add_subparsers(dest="command", required=True)
    fit = commands.add_parser(
        "fit", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        help="fit the attention-PDE surrogate to a transformer (default all-MiniLM-L6-v2) and write the report",
        description="Trace a transformer (all-MiniLM-L6-v2 on sentences of CPython's pydoc topics, or with "
                    "--model vit-digits the ViT on scikit-learn's digits), fit the attention-PDE "
                    "du/dt = D(t)Δu + α(t)(Attn(t,u)uW_v − u) + β(t)R(u) so that its kernel at t = l matches "
                    "block l's attention maps, and write held-out fidelity against baselines (metrics.json, "
                    "summary.md), the fitted parameters (params.safetensors, config.json) and figures into --out.")
    fit.add_argument("--model", default=RunConfig.model, help=field_help(RunConfig)["model"])
    fit.add_argument("--texts", default=None,
                     help="with --model FOLDER of a text checkpoint: the texts to trace it on, one per line or JSON "
                          "lines with a \"text\" field (split into train / validation / held-out by --split-seed)")
    fit.add_argument("--images", default=None,
                     help="with --model FOLDER of an image checkpoint (vit): a folder of PNG / JPEG images, any sizes "
                          "(the checkpoint's preprocessor resizes them)")
    fit.add_argument("--out", default=None,
                     help="output folder (written atomically; default results/MODEL, or results/NAME for a checkpoint "
                          "folder NAME)")
    fit.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    fit.add_argument("--top-k", dest="top_k", type=int, default=RunConfig.top_k, help="k of the top-k agreement")
    fit.add_argument("--preset", default="default", choices=list(PRESETS),
                     help="start from a named preset's settings for --model (pdeflow.pipeline.preset_config; "
                          "'default': width 64 started from the transformer's weights, with the hidden-state term, "
                          "800 steps, text in 4 length buckets, ~6 min for MiniLM; 'faithful': the full-width "
                          "surrogate fitted by multiple shooting then free-running, ~20-26 min on 2 cores for "
                          "MiniLM, ~38 for the ViT); options given explicitly override it (the defaults shown "
                          "below are the plain RunConfig's, before the preset)")
    fit.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                     help="show a progress bar (default: when stderr is a terminal); without one, a line on "
                          "stderr at every validation (step, training loss, validation KL), for logs")
    fit.add_argument("--checkpoints", default=None,
                     help="checkpoint folder (default: OUT.checkpoints): new, empty or an earlier run's; what the "
                          "fit wrote there is removed once the report is written")
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
    if fit_defaults:
        fit.set_defaults(**fit_defaults)

    train = commands.add_parser("train", help="train a transformer here on data that ships with the machine")
    models = train.add_subparsers(dest="model", required=True)
    _command(models, "vit-digits", "train the ViT on scikit-learn's 8x8 digits and save it",
             "Train the ViT (pre-LayerNorm, class token) on a fixed stratified train split of scikit-learn's bundled "
             "digits, report its accuracy on the held-out test split, and save params.safetensors + config.json "
             "into --out (default: the cache folder that `pdeflow fit --model vit-digits` loads from).", CACHE_OUT,
             VIT_SECTIONS)
    _command(models, "lm", "train a character-level causal language model on the pydoc topics and save it",
             "Train one GPT-style character model of a family (architecture) and depth on the training paragraphs "
             "of CPython's pydoc topics, report its loss on the held-out paragraphs, and save params.safetensors + "
             "config.json into --out (default: the cache folder that `pdeflow lens` loads from).", CACHE_OUT,
             {"train": (LMTrainConfig, ())})
    lens = _command(commands, "lens",
                    "entropy profiles (logit lens) of language-model families and what they tell apart",
             "Train (or load from the cache) character-level LM families on the pydoc topics, compute the "
             "logit-lens entropy profile (Shannon and Rényi) of every layer on held-out prompts, and measure with a "
             "cross-validated k-NN classifier, beside chance and the final-layer entropy alone: family "
             "identification (also at depths unseen in training), text kind, and whether the next character is "
             "predicted correctly (ROC AUC). Also MiniLM's profile, with its tied word embeddings as the "
             "unembedding. Writes results.json, summary.md and figures into --out. With --model FOLDER --texts FILE: "
             "instead, the profile of your own GPT-2-format checkpoint on your texts, read through its own final "
             "LayerNorm and LM head (only --alphas of the options below applies); adding --protocol entropy-lens, "
             "Entropy-Lens's task identification on task-labelled prompts (--alphas, --generate-tokens, --windows, "
             "--temperature and --seed apply).", "results/lens",
             {"lens": (LensConfig, ())})
    lens.add_argument("--model", default=None,
                      help="a GPT-2-format checkpoint folder (config.json, model.safetensors, tokenizer.json) to read "
                           "the entropy profile of, on --texts (default out: results/lens-NAME)")
    lens.add_argument("--texts", default=None,
                      help="with --model: the texts, one per line or JSON lines with a \"text\" field; with "
                           "--protocol entropy-lens, JSON lines with \"text\" and \"task\" (and optionally "
                           "\"context\"), at least 10 prompts of each of two tasks or more")
    lens.add_argument("--max-tokens", dest="max_tokens", type=int, default=128,
                      help="with --model: each text is cut to this many tokens (or the model's positions; with "
                           "--protocol entropy-lens its last tokens are kept, and the generated tokens must fit too)")
    _command(commands, "info", "the information plane I(X;T_l), I(T_l;Y) of the ViT on digits, over layers and epochs",
             "Train the ViT on the digits with snapshots, and at every snapshot estimate I(X;T_l) and I(T_l;Y) for "
             "every layer on the held-out test digits with a binning and a k-NN (KSG / Ross) estimator. Writes "
             "results.json, summary.md and information_plane.png into --out.", "results/info", INFO_SECTIONS)
    return parser


def _command(subparsers, name: str, help: str, description: str, default_out: str, sections: dict):
    """A subcommand with --out/--overwrite/--progress and one option group per config section."""
    parser = subparsers.add_parser(name, formatter_class=argparse.ArgumentDefaultsHelpFormatter, help=help,
                                   description=description)
    _add_output_options(parser, default_out)
    for section, (cls, skip) in sections.items():
        _add_section(parser.add_argument_group(f"{section} ({cls.__name__})"), cls, skip)
    return parser


def _add_output_options(parser, default_out: str) -> None:
    parser.add_argument("--out", default=None, help=f"output folder (written atomically; default {default_out})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=sys.stderr.isatty(),
                        help="show progress bars (default: when stderr is a terminal); without them, a line on "
                             "stderr at every evaluation, for logs")


def _section(cls, skip, args):
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.name not in skip}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def vit_train_config_from_args(args: argparse.Namespace) -> ViTTrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ViTTrainConfig) if f.name != "model"}
    return ViTTrainConfig(model=_section(ViTConfig, (), args), **values)


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    sections = {section: _section(cls, skip, args) for section, (cls, skip) in SECTIONS.items()}
    return RunConfig(model=args.model, top_k=args.top_k, preset=args.preset, **sections)


def preset_defaults(config: RunConfig) -> dict:
    """``pdeflow fit``'s option values (``{dest: value}``) that reproduce ``config``."""
    values = {"top_k": config.top_k}
    for section, (cls, skip) in SECTIONS.items():
        part = getattr(config, section)
        values.update({f.name: list(v) if isinstance(v := getattr(part, f.name), tuple) else v
                       for f in dataclasses.fields(cls) if f.name not in skip})
    return values


def info_config_from_args(args: argparse.Namespace) -> InfoPlaneConfig:
    return dataclasses.replace(_section(InfoPlaneConfig, ("train",), args), train=vit_train_config_from_args(args))


@contextlib.contextmanager
def progress_lines(enabled: bool):
    """While open (and ``enabled``), the ``pdeflow`` logger's INFO lines go to stderr, one per evaluation of a fit
    or training loop (`pdeflow.fitting.train_loop`), with the time: what a run without a progress bar (stderr not a
    terminal, or ``--no-progress``) shows of its progress in a log file."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("pdeflow")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s pdeflow: %(message)s", "%H:%M:%S"))
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # not twice where a library (orbax, through absl) has given the root logger a handler
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def _guarded(work) -> int:
    """Run ``work()`` (which returns the exit status), turning the errors a user can fix into one line and exit
    status 2, and Ctrl-C into 130 (outputs are written atomically, so nothing half-written is left)."""
    try:
        return work()
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, FloatingPointError) as error:
        print(f"pdeflow: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pdeflow: interrupted; nothing was saved", file=sys.stderr)
        return 130


def train_main(args: argparse.Namespace) -> int:
    from pdeflow.store import check_output_dir

    def work():
        if args.model == "lm":
            from pdeflow.train.lm import default_lm_folder, save_lm, train_lm

            config = _section(LMTrainConfig, (), args)
            out = Path(args.out) if args.out else default_lm_folder(config)
            check_output_dir(out, args.overwrite)
            model = train_lm(config, progress=args.progress)
            save_lm(model, out, overwrite=args.overwrite)
            print(f"{config.name}: held-out loss {model.held_out_bits_per_char:.3f} bits/char after {config.steps} "
                  f"steps; wrote {out}/")
            return 0
        from pdeflow.train.vit import default_vit_folder, save_vit, train_vit

        config = vit_train_config_from_args(args)
        out = Path(args.out) if args.out else default_vit_folder(config)
        check_output_dir(out, args.overwrite)
        model = train_vit(config, progress=args.progress)
        save_vit(model, out, overwrite=args.overwrite)
        print(f"vit-digits: test accuracy {model.test_accuracy:.4f} on {len(model.history)} epochs; wrote {out}/")
        return 0

    return _guarded(work)


def _study_main(args: argparse.Namespace, make_config, study, write, summary, default_out: str) -> int:
    """Build the config (``make_config()``), check --out, run ``study(config, progress)``, write its report with
    ``write`` and print ``summary``; errors a user can fix become one line and exit status 2."""
    from pdeflow.store import check_output_dir

    def work():
        config = make_config()
        out = args.out or default_out
        check_output_dir(out, args.overwrite)
        result = study(config, progress=args.progress)
        write(result, out, overwrite=args.overwrite)
        print(summary(result))
        print(f"wrote {out}/ (results.json, summary.md, figures)")
        return 0

    return _guarded(work)


def lens_main(args: argparse.Namespace) -> int:
    if args.model is not None or args.texts is not None:
        return checkpoint_lens_main(args)
    from pdeflow.studies.lens import lens_study
    from pdeflow.studies.reports import lens_summary, write_lens_report

    return _study_main(args, lambda: _section(LensConfig, (), args), lens_study, write_lens_report, lens_summary,
                       "results/lens")


def checkpoint_lens_main(args: argparse.Namespace) -> int:
    """``pdeflow lens --model FOLDER --texts FILE``: a GPT-2-format checkpoint's entropy profile; with
    ``--protocol entropy-lens``, Entropy-Lens's task identification on task-labelled prompts."""
    from pdeflow.studies.checkpoint_lens import checkpoint_lens, checkpoint_lens_summary, write_checkpoint_lens_report

    if args.protocol == "entropy-lens":
        return checkpoint_entropy_lens_main(args)

    def make_config():
        if args.model is None or args.texts is None:
            raise ValueError("the lens of your own checkpoint needs both --model FOLDER and --texts FILE.")
        return args.model, args.texts

    def study(config, progress):
        return checkpoint_lens(*config, max_tokens=args.max_tokens, alphas=args.alphas, progress=progress)

    default_out = f"results/lens-{Path(args.model or '.').resolve().name}"
    return _study_main(args, make_config, study, write_checkpoint_lens_report, checkpoint_lens_summary, default_out)


def checkpoint_entropy_lens_main(args: argparse.Namespace) -> int:
    """``pdeflow lens --model FOLDER --protocol entropy-lens --texts FILE``
    (`pdeflow.studies.checkpoint_entropy_lens`)."""
    from pdeflow.studies.checkpoint_entropy_lens import (
        EntropyLensCheckpointConfig,
        checkpoint_entropy_lens,
        checkpoint_entropy_lens_summary,
        write_checkpoint_entropy_lens_report,
    )

    def make_config():
        if args.model is None or args.texts is None:
            raise ValueError("Entropy-Lens's protocol on your own checkpoint needs both --model FOLDER and --texts "
                             'FILE (JSON lines {"text": ..., "task": ...}).')
        return EntropyLensCheckpointConfig(tuple(args.alphas), args.generate_tokens, args.windows, args.temperature,
                                           args.seed, args.max_tokens)

    def study(config, progress):
        return checkpoint_entropy_lens(args.model, args.texts, config, progress=progress)

    default_out = f"results/lens-{Path(args.model or '.').resolve().name}"
    return _study_main(args, make_config, study, write_checkpoint_entropy_lens_report,
                       checkpoint_entropy_lens_summary, default_out)


def info_main(args: argparse.Namespace) -> int:
    from pdeflow.studies.information_plane import information_plane
    from pdeflow.studies.reports import info_summary, write_info_report

    return _study_main(args, lambda: info_config_from_args(args), information_plane, write_info_report,
                       info_summary, "results/info")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``pdeflow``'s arguments; for ``fit``, parsed over the values of ``--preset`` (default ``"default"``) for
    ``--model``, so that options given explicitly win, and ``pdeflow fit --help`` shows those values as the
    defaults."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # a first pass finds the command, model and preset; for fit without --help, so that help shows the preset's values
    first = build_parser().parse_args([a for a in argv if a not in ("-h", "--help")] if "fit" in argv else argv)
    if first.command == "fit":  # a checkpoint folder's preset is read from its config and its inputs' count
        source = model_source_for(first.model, texts=first.texts, images=first.images)
        return build_parser(preset_defaults(preset_config(first.preset, source))).parse_args(argv)
    return build_parser().parse_args(argv) if "fit" in argv else first  # "fit" was an option's value


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except (ValueError, OSError) as error:  # a checkpoint folder or its inputs that cannot be read
        print(f"pdeflow: error: {error}", file=sys.stderr)
        return 2
    if args.command in ("train", "lens", "info"):
        with progress_lines(not args.progress):
            return {"train": train_main, "lens": lens_main, "info": info_main}[args.command](args)
    args.out = args.out or f"results/{args.model if args.model in source_names() else Path(args.model).resolve().name}"
    checkpoints = Path(args.checkpoints or f"{Path(args.out)}.checkpoints")
    try:
        if args.host_devices:
            from pdeflow.fitting.parallel import use_host_devices

            try:
                use_host_devices(args.host_devices)
            except RuntimeError as error:  # JAX started too early to split the CPU: a usage error
                raise ValueError(str(error)) from error
        from pdeflow.fitting import distributed

        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        config = run_config_from_args(args)
        from pdeflow.fitting.checkpoint import (
            prepare_checkpoint_dir,
            remove_checkpoint_dir,
            remove_unused_checkpoint_dir,
        )
        from pdeflow.lock import folder_lock
        from pdeflow.pipeline import fit_transformer
        from pdeflow.report import check_output_dir, summary_markdown, write_report
        from pdeflow.store import make_parents, remove_empty_folders

        primary = distributed.is_primary()
        with contextlib.ExitStack() as locks:
            if primary:  # the output and the checkpoints are this run's alone until it ends (pdeflow.lock)
                check_output_dir(args.out, args.overwrite)
                locks.callback(remove_empty_folders, make_parents(args.out))  # a failed run leaves no new folders
                locks.enter_context(folder_lock(args.out))
                locks.callback(remove_empty_folders, make_parents(checkpoints))
                locks.enter_context(folder_lock(checkpoints))
                if prepare_checkpoint_dir(checkpoints, protected=(args.out,), resume=args.resume):
                    locks.callback(remove_unused_checkpoint_dir, checkpoints)  # nothing saved: nothing left
            with progress_lines(primary and not args.progress):
                report = fit_transformer(config, progress=args.progress and primary, checkpoint_dir=checkpoints,
                                         resume=args.resume, texts=args.texts, images=args.images)
            if not primary:
                return 0
            out = write_report(report, args.out, overwrite=args.overwrite)
            remove_checkpoint_dir(checkpoints)  # the report is complete: the checkpoints are not needed
    except (ValueError, OSError, SolverError) as error:  # OSError: files, folders, locks, a full disk
        print(f"pdeflow: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"pdeflow: {interrupt or 'interrupted'}; continue with the same command and --resume",
              file=sys.stderr)
        return 130
    print(summary_markdown(report.metrics))
    print(f"wrote {out}/ (metrics.json, summary.md, params.safetensors, config.json, figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
