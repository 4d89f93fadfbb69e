"""The one optimiser pdeflow trains and fits with: AdamW under a linear warm-up and a cosine decay.

`OptimizerConfig` holds its settings and is the one place they become an optax transformation: every training
config (`pdeflow.fitting.fit.FitConfig`, the trainers' configs in `pdeflow.train`) builds one from its own fields with
its ``optimizer(...)`` method, and the step (`pdeflow.fitting.train_loop.make_train_step`) takes what ``make()`` gives.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import optax

from pdeflow.validation import check_finite_numbers


def warmup_cosine_adamw(learning_rate: float, warmup_steps: int, total_steps: int, weight_decay: float,
                        clip_norm: float | None = None, end_fraction: float = 0.0) -> optax.GradientTransformation:
    """AdamW whose rate rises linearly from 0 to ``learning_rate`` over ``min(warmup_steps, total_steps − 1)``
    steps, then decays along a cosine to ``end_fraction · learning_rate`` at ``total_steps``; gradients are
    first clipped to global norm ``clip_norm`` (None: no clipping)."""
    adamw = _adamw(learning_rate, warmup_steps, total_steps, weight_decay, end_fraction)
    return adamw if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), adamw)


def _adamw(learning_rate, warmup_steps, total_steps, weight_decay, end_fraction) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(warmup_steps, total_steps - 1), total_steps,
                                                  end_value=end_fraction * learning_rate)
    return optax.adamw(schedule, weight_decay=weight_decay)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW under a linear warm-up and a cosine decay (`warmup_cosine_adamw`), optionally after a global-norm
    clip, optionally at other rates for some groups of parameters.

    Attributes:
        learning_rate: peak learning rate.
        total_steps: steps of the schedule (the cosine ends here).
        warmup_steps: linear warm-up from 0 (at most ``total_steps − 1``).
        weight_decay: AdamW weight decay.
        clip_norm: global gradient-norm clip applied to all gradients first (None: no clip).
        end_fraction: the rate at ``total_steps``, as a fraction of the peak.
        group_lr_scales: ``((label, scale), ...)``: the learning rate of each group of parameters as a fraction
            of ``learning_rate`` (0 holds the group: `optax.set_to_zero`); the groups are labelled by
            ``group_labels``. Empty (or every scale 1): one AdamW over all parameters.
        group_labels: ``params -> labels`` (the pytree `optax.multi_transform` takes); needed with
            ``group_lr_scales``. A module-level function, so equal configs compare equal.
        decayed_groups: the labels of the groups that ``weight_decay`` applies to (None: every group). A group
            left out keeps its AdamW without decay. Needs ``group_lr_scales`` naming every label.
    """

    learning_rate: float
    total_steps: int
    warmup_steps: int = 0
    weight_decay: float = 0.0
    clip_norm: float | None = None
    end_fraction: float = 0.0
    group_lr_scales: tuple[tuple[str, float], ...] = ()
    group_labels: Callable | None = None
    decayed_groups: tuple[str, ...] | None = None

    def __post_init__(self):
        check_finite_numbers(self)
        if not self.learning_rate > 0 or self.total_steps < 1 or self.warmup_steps < 0 or self.weight_decay < 0:
            raise ValueError(f"need learning_rate > 0, total_steps >= 1, warmup_steps >= 0 and weight_decay >= 0; got "
                             f"{self.learning_rate}, {self.total_steps}, {self.warmup_steps}, {self.weight_decay}.")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be positive (None: no clip); got {self.clip_norm}.")
        if any(scale < 0 for _, scale in self.group_lr_scales):
            raise ValueError(f"group learning-rate scales must be >= 0; got {self.group_lr_scales}.")
        if self.group_lr_scales and self.group_labels is None:
            raise ValueError("group_lr_scales needs group_labels (params -> the label of each parameter).")
        if self.decayed_groups is not None:
            object.__setattr__(self, "decayed_groups", tuple(self.decayed_groups))
            labels = {label for label, _ in self.group_lr_scales}
            if not labels or set(self.decayed_groups) - labels:
                raise ValueError(f"decayed_groups {list(self.decayed_groups)} must name groups of group_lr_scales "
                                 f"({sorted(labels)}).")

    def make(self) -> optax.GradientTransformation:
        """The optax transformation. Equal configs give the same object, so a jit-compiled step that takes it as
        a static argument (or closes over it) is compiled once for them all."""
        return _make(self)


@functools.cache
def _make(config: OptimizerConfig) -> optax.GradientTransformation:
    def adamw(scale: float, label: str | None = None) -> optax.GradientTransformation:
        if scale == 0:
            return optax.set_to_zero()
        decays = config.decayed_groups is None or label in config.decayed_groups
        return _adamw(config.learning_rate * scale, config.warmup_steps, config.total_steps,
                      config.weight_decay if decays else 0.0, config.end_fraction)

    if all(scale == 1 for _, scale in config.group_lr_scales) and config.decayed_groups is None:
        groups = adamw(1.0)
    else:
        groups = optax.multi_transform({label: adamw(scale, label) for label, scale in config.group_lr_scales},
                                       config.group_labels)
    return groups if config.clip_norm is None else optax.chain(optax.clip_by_global_norm(config.clip_norm), groups)
