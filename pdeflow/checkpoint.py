"""Checkpoints of a running fit, with orbax-checkpoint: everything needed to continue it exactly.

A checkpoint holds the parameters, the optimiser state and the best parameters so far (arrays), and the
step, the early-stopping state, the loss history, the data order (the shuffler's generator state and the
rest of its current permutation) and the configs it was made with (JSON). Orbax writes each checkpoint into
a temporary folder and renames it when complete, so a fit killed while saving leaves the previous checkpoint
intact and no half-written one that a resume would read.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from pdeflow.store import json_ready


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

    def save(self, state: FitState, configs: dict) -> None:
        """Write ``state`` (and the ``configs`` it was made with) as the checkpoint of ``state.step``."""
        arrays = {"params": state.params, "opt_state": state.opt_state, "best_params": state.best_params}
        meta = {"step": state.step, "best": state.best, "best_step": state.best_step,
                "since_best": state.since_best, "history": state.history, "running": state.running,
                "data_order": state.data_order, "configs": configs}
        self.manager.save(state.step, args=ocp.args.Composite(arrays=ocp.args.StandardSave(arrays),
                                                              meta=ocp.args.JsonSave(json_ready(meta))), force=True)
        self.manager.wait_until_finished()

    def restore(self, like: FitState, configs: dict, step: int | None = None) -> FitState:
        """The checkpoint of ``step`` (default: the newest), its arrays shaped and placed like ``like``'s.

        Raises ``ValueError`` if it was made with other configs (naming the fields that differ) and
        ``FileNotFoundError`` if there is no checkpoint."""
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
            raise ValueError(f"the checkpoint in {self.directory} was made with other settings "
                             f"({', '.join(differing)}); resume with the settings it was made with, or start "
                             "afresh without resume.")
        arrays = restored["arrays"]
        best = math.inf if meta["best"] is None else meta["best"]  # JSON holds no inf: json_ready made it None
        return FitState(step=meta["step"], params=arrays["params"], opt_state=arrays["opt_state"],
                        best_params=arrays["best_params"], best=best, best_step=meta["best_step"],
                        since_best=meta["since_best"], history=meta["history"], running=meta["running"],
                        data_order=meta["data_order"])


def _differences(saved, current, prefix: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current)):
            out += _differences(saved.get(key), current.get(key), f"{prefix}{key}.")
        return out
    return [] if saved == current else [f"{prefix[:-1]}: {saved!r} then, {current!r} now"]
