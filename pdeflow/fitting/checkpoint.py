"""Checkpoints of a running fit, with orbax-checkpoint: everything needed to continue it exactly.

A checkpoint holds the parameters, the optimiser state and the best parameters so far (arrays), and the
step, the early-stopping state, the loss history, the data order (the shuffler's generator state and the
rest of its current permutation) and the configs it was made with (JSON). Orbax writes each checkpoint into
a temporary folder and renames it when complete, so a fit killed while saving leaves the previous checkpoint
intact and no half-written one that a resume would read.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import re
import shutil
import threading
import time
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from pdeflow.store import json_ready


class CheckpointSettingsError(ValueError):
    """A checkpoint was made with other settings than the fit that would resume from it."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a vanished folder); the newest intact one is named."""


@dataclasses.dataclass
class FitState:
    """A fit between two steps: ``step`` optimiser steps are done.

    Attributes:
        step: completed optimiser steps.
        params, opt_state, best_params: pytrees of arrays.
        best, best_step, since_best: early-stopping state (lowest validation loss, its step, evaluations since).
        history: validation records so far.
        running: training losses since the last validation point.
        data_order: the batch iterator's ``state()`` (`pdeflow.data.batches.ShuffledBatches` or ``BucketedBatches``).
    """

    step: int
    params: dict
    opt_state: object
    best_params: dict
    best: float
    best_step: int
    since_best: int
    history: list
    running: list
    data_order: dict


class FitCheckpointer:
    """Saves and restores `FitState` under ``directory`` (one sub-folder per step, the newest ``keep``)."""

    def __init__(self, directory: str | Path, keep: int = 2):
        self.directory = Path(directory).resolve()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """The steps that have a (complete) checkpoint, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, state: FitState, configs: dict) -> None:
        """Write ``state`` (and the ``configs`` it was made with) as the checkpoint of ``state.step``."""
        arrays = {"params": state.params, "opt_state": state.opt_state, "best_params": state.best_params}
        meta = {"step": state.step, "best": state.best, "best_step": state.best_step,
                "since_best": state.since_best, "history": state.history, "running": state.running,
                "data_order": state.data_order, "configs": configs}
        running = set(threading.enumerate())
        try:
            self.manager.save(state.step, args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays),
                                                                  meta=ocp.args.JsonSave(json_ready(meta))), force=True)
            self.manager.wait_until_finished()
        except Exception as error:  # noqa: BLE001 - orbax wraps the OS's error in several kinds
            _remove_partial(self.directory, state.step, running)
            full = "No space left" in str(error) or getattr(error, "errno", None) == errno.ENOSPC
            intact = [step for step in self.all_steps() if step != state.step]
            raise CheckpointWriteError(
                errno.ENOSPC if full else errno.EIO,
                f"{'no space left on the device of' if full else 'could not write a checkpoint into'} "
                f"{self.directory} at step {state.step} ({_summary(error)}); the newest intact checkpoint is "
                f"{f'step {intact[-1]}' if intact else 'none'}. Free space there (or pass --checkpoints on another "
                "disk) and continue with the same command and --resume.") from error

    def restore(self, like: FitState, configs: dict, step: int | None = None) -> FitState:
        """The checkpoint of ``step`` (default: the newest), its arrays shaped and placed like ``like``'s.

        Raises `CheckpointSettingsError` if it was made with other configs (naming the fields that differ) and
        ``FileNotFoundError`` if there is no checkpoint; a damaged checkpoint raises whatever orbax raises
        (`restore_newest_intact` falls back past it)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        template = {"params": like.params, "opt_state": like.opt_state, "best_params": like.best_params}
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        restored = self.manager.restore(step, args=ocp.args.Composite(arrays=ocp.args.StandardRestore(abstract),
                                                                      meta=ocp.args.JsonRestore()))
        meta = restored["meta"]
        differing = _differences(meta["configs"], json_ready(configs))
        if differing:
            raise CheckpointSettingsError(f"the checkpoint in {self.directory} was made with other settings "
                             f"({', '.join(differing)}); resume with the settings it was made with, or start "
                             "afresh without resume.")
        arrays = restored["arrays"]
        best = math.inf if meta["best"] is None else meta["best"]  # JSON holds no inf: json_ready made it None
        return FitState(step=meta["step"], params=arrays["params"], opt_state=arrays["opt_state"],
                        best_params=arrays["best_params"], best=best, best_step=meta["best_step"],
                        since_best=meta["since_best"], history=meta["history"], running=meta["running"],
                        data_order=meta["data_order"])


def _remove_partial(directory: Path, step: int, running: set) -> None:
    """Frees what a failed save of ``step`` took. Orbax raises the first error of its writer threads while the
    others go on writing into the temporary folder, so this first waits for the threads it started (those
    not in ``running``), then removes the folder (again, up to 5 s, while any is left)."""
    for thread in set(threading.enumerate()) - running:
        if type(thread).__module__.startswith("orbax"):
            try:
                thread.join(timeout=60)
            except Exception:  # noqa: BLE001, S110 - orbax's threads raise their error again on join; it is known
                pass
    for _ in range(50):
        partial = list(directory.glob(f"{step}.orbax-checkpoint-tmp*"))
        if not partial:
            return
        for folder in partial:
            shutil.rmtree(folder, ignore_errors=True)
        time.sleep(0.1)


def _summary(error: BaseException) -> str:
    """``"Kind: first line"`` of an error (orbax's messages run to many lines)."""
    lines = str(error).splitlines()
    return f"{type(error).__name__}: {lines[0][:200] if lines else ''}"


def restore_newest_intact(checkpointer: FitCheckpointer, like, configs: dict) -> tuple[FitState, list[str]]:
    """The newest checkpoint that reads back whole, and a line for each newer one that did not (damaged by a
    crash, a full disk or a flipped bit) and was passed over. ``like(step)`` is the `FitState` whose arrays
    shape and place that step's (the optimiser's state may differ between phases of a fit).

    Raises `CheckpointSettingsError` as soon as a checkpoint was made with other settings (that is not damage),
    and ``ValueError`` naming every damaged step if none is intact."""
    skipped, damaged = [], []
    for step in reversed(checkpointer.all_steps()):
        try:
            state = checkpointer.restore(like(step), configs, step)
        except CheckpointSettingsError:
            raise
        except Exception as error:  # noqa: BLE001 - orbax and tensorstore raise many kinds for a damaged file
            skipped.append(f"the checkpoint of step {step} in {checkpointer.directory} is damaged "
                           f"({_summary(error)})")
            damaged.append(step)
            continue
        for bad in damaged:  # the resumed fit saves these steps again, and orbax never overwrites a step
            shutil.rmtree(checkpointer.directory / str(bad), ignore_errors=True)
        checkpointer.manager.reload()
        return state, skipped
    raise ValueError("no intact checkpoint to resume from: " + "; ".join(skipped) + "; start afresh without "
                     "--resume after removing the folder.")


MARKER = "pdeflow-checkpoints.txt"  # in a checkpoint folder that pdeflow created (`prepare_checkpoint_dir`)
_ORBAX_ENTRY = re.compile(r"^\d+(\.orbax-checkpoint-tmp.*)?$")  # orbax's step folders and their temporary ones


def _written_by_pdeflow(entry: Path) -> bool:
    return entry.name == MARKER or (entry.is_dir() and bool(_ORBAX_ENTRY.match(entry.name)))


def prepare_checkpoint_dir(directory: str | Path, protected: tuple[str | Path, ...] = (), resume: bool = False) -> bool:
    """Check, before any work, that ``directory`` can hold a fit's checkpoints, and create it if it is missing.

    Accepted: a folder that does not exist yet (created here, with a marker file saying pdeflow made it), an empty
    folder, or a checkpoint folder of an earlier run (only orbax step folders and the marker in it). Refused with a
    ``ValueError`` that says what to do: a path that is not a folder, a folder holding anything pdeflow did not
    write, and a folder that is or contains one of ``protected`` (e.g. the output folder), the working directory
    or the home folder; without ``resume``, also a folder holding an earlier fit's checkpoints (a fresh fit would
    fail at its first save, and may not take them over unasked). Returns whether this call created the folder
    (see `remove_checkpoint_dir`)."""
    path = Path(directory).expanduser().resolve()
    hint = "give a new or empty folder of its own, or leave --checkpoints out (default: OUT.checkpoints)"
    for other in (*protected, Path.cwd(), Path.home()):
        other = Path(other).expanduser().resolve()
        if other == path or path in other.parents:
            raise ValueError(f"the checkpoint folder {path} is or contains {other}, and its checkpoints are removed "
                             f"at the end of the fit; {hint}.")
    if path.exists() and not path.is_dir():
        raise ValueError(f"the checkpoint folder {path} exists and is not a folder; {hint}.")
    if path.is_dir():
        foreign = sorted(entry.name for entry in path.iterdir() if not _written_by_pdeflow(entry))
        if foreign:
            raise ValueError(f"the checkpoint folder {path} already holds files pdeflow did not write "
                             f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); {hint}.")
        steps = sorted(int(entry.name) for entry in path.iterdir() if entry.is_dir() and entry.name.isdigit())
        if steps and not resume:
            raise ValueError(f"the checkpoint folder {path} holds checkpoints of an earlier fit (newest: step "
                             f"{steps[-1]}); continue that fit with --resume (resume=True), or remove the folder to "
                             "start afresh.")
        return False
    try:
        path.mkdir(parents=True)
        (path / MARKER).write_text("Checkpoints of a running pdeflow fit; removed when its report is written.\n")
    except OSError as error:
        raise ValueError(f"cannot create the checkpoint folder {path}: {error.strerror or error}; {hint}.") from error
    return True


def remove_unused_checkpoint_dir(directory: str | Path) -> None:
    """Remove ``directory`` if pdeflow created it and no checkpoint was written into it (a fit that failed
    before its first save leaves no folder behind); anything else stays, for ``--resume``."""
    path = Path(directory).expanduser().resolve()
    if path.is_dir() and [entry.name for entry in path.iterdir()] == [MARKER]:
        (path / MARKER).unlink()
        path.rmdir()


def remove_checkpoint_dir(directory: str | Path) -> None:
    """Remove what pdeflow wrote in ``directory`` (orbax's step folders, the marker), and the folder itself if
    pdeflow created it (`prepare_checkpoint_dir`) and nothing else is left in it. Anything else stays."""
    path = Path(directory).expanduser().resolve()
    if not path.is_dir():
        return
    for entry in path.iterdir():
        if entry.is_dir() and _ORBAX_ENTRY.match(entry.name):
            shutil.rmtree(entry, ignore_errors=True)
    remove_unused_checkpoint_dir(path)


def _differences(saved, current, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current)):
            out += _differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return out
    return [] if saved == current else [f"{prefix[:-1]}: {saved!r} then, {current!r} now"]
