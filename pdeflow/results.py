"""Typed records of what a fit's report holds (``metrics.json``): held-out fidelity per method, parameter counts,
timings, the fit's history, coefficient curves and attention entropy.

``FitMetrics.from_json(json.loads(text))`` reads a ``metrics.json``; ``to_json()`` gives back exactly the dict it
was read from (same keys, same order, ``None`` where a number is missing), so the files written before these
records existed read and write unchanged. `FitMetrics.measured` builds the record from a fit's measurements.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pdeflow.store import json_ready

__all__ = ["AttentionEntropy", "FitMetrics", "FitSummary", "ParameterCounts", "SplitSizes", "Timings",
           "as_fit_metrics", "per_layer"]

Fidelity = Mapping[str, Mapping[str, tuple[float, ...]]]
"""``{method: {metric: per-layer values}}`` (NaN where a method has no prediction for a block)."""


def _floats(values) -> tuple[float, ...]:
    return tuple(np.nan if v is None else float(v) for v in values)


def per_layer(held_out: Mapping) -> Fidelity:
    """``{method: {metric: tuple of floats}}`` from the JSON form (``None`` -> NaN)."""
    return {method: {name: _floats(values) for name, values in by_metric.items()}
            for method, by_metric in held_out.items()}


def _check_keys(cls, data: Mapping) -> None:
    names = [field.name for field in dataclasses.fields(cls)]
    if set(data) != set(names):
        raise ValueError(f"{cls.__name__} needs the keys {names}; got {list(data)}.")


def _fields_from(cls, data: Mapping):
    _check_keys(cls, data)
    return cls(**data)


@dataclasses.dataclass(frozen=True)
class SplitSizes:
    """How many inputs each split holds."""

    train: int
    validation: int
    test: int

    @classmethod
    def from_json(cls, data: Mapping) -> SplitSizes:
        return _fields_from(cls, data)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ParameterCounts:
    """Parameter counts of the surrogate (all of them, and those the attention fit trains) and of the transformer
    (all, and those of its blocks)."""

    surrogate: int
    surrogate_used_by_attention_fit: int
    transformer: int
    transformer_blocks: int

    @classmethod
    def from_json(cls, data: Mapping) -> ParameterCounts:
        return _fields_from(cls, data)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Timings:
    """Wall time of each stage of a run, in seconds, and the machine it ran on (`pdeflow.machine.label`; ``""``:
    not recorded, as in reports written before 2026-12-06)."""

    trace: float
    fit: float
    evaluate: float
    total: float
    machine: str = ""

    @classmethod
    def from_json(cls, data: Mapping) -> Timings:
        return _fields_from(cls, {"machine": ""} | dict(data))

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        if not self.machine:
            del out["machine"]
        return out


@dataclasses.dataclass(frozen=True)
class FitSummary:
    """How the fit went: the step whose parameters were kept, whether it stopped early, the last step run, and
    the history of evaluations (one dict per evaluation, as `pdeflow.fitting.fit.FitResult.history` holds them)."""

    best_step: int
    stopped_early: bool
    steps_run: int
    history: tuple[Mapping[str, Any], ...]

    @classmethod
    def from_result(cls, result) -> FitSummary:
        """From a `pdeflow.fitting.fit.FitResult`."""
        history = tuple(result.history)
        return cls(result.best_step, result.stopped_early, history[-1]["step"] if history else 0, history)

    @classmethod
    def from_json(cls, data: Mapping) -> FitSummary:
        _check_keys(cls, data)
        return cls(data["best_step"], data["stopped_early"], data["steps_run"], tuple(data["history"]))

    def to_json(self) -> dict:
        return {"best_step": self.best_step, "stopped_early": self.stopped_early, "steps_run": self.steps_run,
                "history": json_ready(list(self.history))}


@dataclasses.dataclass(frozen=True)
class AttentionEntropy:
    """Held-out attention entropy along depth: the transformer's per block and head ``(L, H)``, the PDE kernel's
    at the times ``pde_t`` per head ``(T, H)``."""

    units: str
    transformer: np.ndarray
    pde_t: tuple[float, ...]
    pde: np.ndarray

    @classmethod
    def from_json(cls, data: Mapping) -> AttentionEntropy:
        _check_keys(cls, data)
        return cls(data["units"], np.asarray(data["transformer"], float), _floats(data["pde_t"]),
                   np.asarray(data["pde"], float))

    def to_json(self) -> dict:
        return {"units": self.units, **json_ready({"transformer": self.transformer, "pde_t": self.pde_t,
                                                   "pde": self.pde})}


@dataclasses.dataclass(frozen=True, eq=False)
class FitMetrics:
    """Everything a fit's ``metrics.json`` holds.

    Attributes:
        model: the transformer, in words; text: its inputs, in words.
        splits: the split sizes; parameters: the parameter counts.
        held_out: held-out fidelity, ``{method: {metric: per-layer values}}`` (methods: the surrogate, its
            ablations and the baselines; metrics: those of `pdeflow.metrics.METRICS`).
        held_out_per_head: ``{method: {metric: (L, H) array}}``, for the surrogate only.
        fit: how the fit went; preset: the preset the settings started from (``""`` for none).
        coefficients: the coefficient curves, ``{"t": times, name: values}``.
        notes: what the numbers mean, one sentence each.
        source_details: what the model source records beyond its name, inputs and parameter counts, by key
            (`pdeflow.sources.ModelSource.describe`; e.g. ``"vit"``: the ViT's config and test accuracy);
            seconds: the timings;
        attention_entropy: held-out attention entropy along depth (``None``: not measured).
    """

    model: str
    text: str
    splits: SplitSizes
    parameters: ParameterCounts
    held_out: Fidelity
    held_out_per_head: Mapping[str, Mapping[str, np.ndarray]]
    fit: FitSummary
    preset: str | None
    coefficients: Mapping[str, tuple[float, ...]]
    notes: tuple[str, ...]
    source_details: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seconds: Timings | None = None
    attention_entropy: AttentionEntropy | None = None

    @property
    def vit(self) -> Mapping[str, Any] | None:
        """The ViT's config and test accuracy (ViT runs only)."""
        return self.source_details.get("vit")

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods measured, in the order of the tables."""
        return tuple(self.held_out)

    @property
    def num_layers(self) -> int:
        first = next(iter(self.held_out.values()))
        return len(next(iter(first.values())))

    @classmethod
    def measured(cls, *, model: str, text: str, splits: SplitSizes, parameters: ParameterCounts,
                 fidelity: Mapping[str, Mapping[str, np.ndarray]], fit: FitSummary, preset: str | None,
                 coefficients: Mapping[str, Sequence[float]], notes: Sequence[str],
                 source_details: Mapping[str, Any] | None = None, vit: Mapping[str, Any] | None = None,
                 seconds: Timings | None = None, attention_entropy: AttentionEntropy | None = None,
                 per_head: Sequence[str] = ("pde",)) -> FitMetrics:
        """The record of a run, from ``fidelity``, `pdeflow.metrics.attention_fidelity` of each method
        (``{method: {metric: (L, B, H)}}``): ``held_out`` its per-layer means (`pdeflow.metrics.summarise`),
        ``held_out_per_head`` the per-head means of the ``per_head`` methods. ``vit`` is short for
        ``source_details={"vit": vit}``."""
        from pdeflow.metrics import summarise

        held_out = {method: {name: tuple(values) for name, values in summarise(by_metric).items()}
                    for method, by_metric in fidelity.items()}
        per_head_means = {method: {name: np.asarray(values).mean(axis=1) for name, values in by_metric.items()}
                          for method, by_metric in fidelity.items() if method in per_head}
        details = dict(source_details or {}) | ({"vit": vit} if vit is not None else {})
        return cls(model, text, splits, parameters, held_out, per_head_means, fit, preset,
                   {name: _floats(values) for name, values in coefficients.items()}, tuple(notes), details, seconds,
                   attention_entropy)

    @classmethod
    def from_json(cls, data: Mapping) -> FitMetrics:
        """The record of a parsed ``metrics.json``; ``ValueError`` naming what is missing if it is not one."""
        required = ("model", "text", "splits", "parameters", "held_out", "held_out_per_head", "fit", "preset",
                    "coefficients", "notes")
        missing = [key for key in required if key not in data]
        if missing:
            raise ValueError(f"not the metrics of a fit (missing: {', '.join(missing)}).")
        # every other key but the optional timings and entropies is the model source's own record
        details = {key: value for key, value in data.items()
                   if key not in required + ("seconds", "attention_entropy")}
        return cls(
            model=data["model"], text=data["text"], splits=SplitSizes.from_json(data["splits"]),
            parameters=ParameterCounts.from_json(data["parameters"]), held_out=per_layer(data["held_out"]),
            held_out_per_head={method: {name: np.asarray(values, float) for name, values in by_metric.items()}
                               for method, by_metric in data["held_out_per_head"].items()},
            fit=FitSummary.from_json(data["fit"]), preset=data["preset"],
            coefficients={name: _floats(values) for name, values in data["coefficients"].items()},
            notes=tuple(data["notes"]), source_details=details,
            seconds=Timings.from_json(data["seconds"]) if "seconds" in data else None,
            attention_entropy=(AttentionEntropy.from_json(data["attention_entropy"])
                               if "attention_entropy" in data else None))

    def to_json(self) -> dict:
        """The JSON-ready dict of ``metrics.json`` (what `from_json` reads)."""
        out = {"model": self.model, "text": self.text, "splits": self.splits.to_json(),
               "parameters": self.parameters.to_json()}
        out |= {key: json_ready(value) for key, value in self.source_details.items()}
        out |= {"held_out": json_ready(self.held_out), "held_out_per_head": json_ready(self.held_out_per_head),
                "fit": self.fit.to_json(), "preset": self.preset}
        if self.seconds is not None:
            out["seconds"] = self.seconds.to_json()
        out["coefficients"] = json_ready(self.coefficients)
        if self.attention_entropy is not None:
            out["attention_entropy"] = self.attention_entropy.to_json()
        out["notes"] = list(self.notes)
        return out


def as_fit_metrics(metrics: FitMetrics | Mapping) -> FitMetrics:
    """``metrics`` as a `FitMetrics`: itself, or read from its JSON form (a dict as ``metrics.json`` holds, numpy
    values allowed)."""
    return metrics if isinstance(metrics, FitMetrics) else FitMetrics.from_json(json_ready(metrics))
