"""The one optimiser pdeflow trains and fits with: AdamW under a linear warm-up and a cosine decay."""

from __future__ import annotations

import optax


def warmup_cosine_adamw(learning_rate: float, warmup_steps: int, total_steps: int, weight_decay: float,
                        clip_norm: float | None = None, end_fraction: float = 0.0) -> optax.GradientTransformation:
    """AdamW whose rate rises linearly from 0 to ``learning_rate`` over ``min(warmup_steps, total_steps − 1)``
    steps, then decays along a cosine to ``end_fraction · learning_rate`` at ``total_steps``; gradients are
    first clipped to global norm ``clip_norm`` (None: no clipping)."""
    schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(warmup_steps, total_steps - 1), total_steps,
                                                  end_value=end_fraction * learning_rate)
    adamw = optax.adamw(schedule, weight_decay=weight_decay)
    return adamw if clip_norm is None else optax.chain(optax.clip_by_global_norm(clip_norm), adamw)
