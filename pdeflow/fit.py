"""Fitting the attention-PDE surrogate to a transformer's trace with optax.

The loss is the mean over blocks, heads and real query rows of ``KL(transformer ‖ PDE)``, plus
``hidden_weight`` times the relative error of the read-out PDE states against the hidden states.
One jit-compiled step, vmapped over the batch; early stopping on a validation split.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pdeflow.data.batches import fixed_size_batches, shuffled_batches
from pdeflow.models.trace import Trace, check_trace
from pdeflow.pde.attention_pde import SurrogateConfig, init_surrogate
from pdeflow.pde.solve import SolverConfig, SolverError
from pdeflow.surrogate import raise_if_failed, surrogate_losses, token_laplacians


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Optimisation settings.

    Attributes:
        steps: maximum number of optimiser steps.
        batch_size: inputs per step (sampled without replacement, reshuffled every epoch).
        learning_rate: peak learning rate of AdamW (linear warm-up, then cosine decay to 1 %).
        warmup_steps: length of the warm-up.
        weight_decay: AdamW weight decay.
        clip_norm: global gradient-norm clip.
        hidden_weight: weight of the hidden-state term (0 fits the attention maps alone).
        eval_every: steps between validation evaluations.
        patience: evaluations without improvement before stopping early (0 never stops early).
        seed: seeds initialisation and data order.
    """

    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 1e-2
    warmup_steps: int = 20
    weight_decay: float = 1e-4
    clip_norm: float = 1.0
    hidden_weight: float = 0.0
    eval_every: int = 25
    patience: int = 4
    seed: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError("steps, batch_size and eval_every must be positive.")
        if not self.learning_rate > 0 or self.hidden_weight < 0 or self.patience < 0:
            raise ValueError("need learning_rate > 0, hidden_weight >= 0 and patience >= 0.")


@dataclasses.dataclass(frozen=True)
class FitResult:
    """The best parameters (lowest validation loss) and the loss curves."""

    params: dict
    history: list[dict]
    best_step: int
    stopped_early: bool


def make_optimizer(config: FitConfig) -> optax.GradientTransformation:
    schedule = optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, min(config.warmup_steps, config.steps - 1),
                                                  config.steps, end_value=0.01 * config.learning_rate)
    return optax.chain(optax.clip_by_global_norm(config.clip_norm),
                       optax.adamw(schedule, weight_decay=config.weight_decay))


def _loss(params, surrogate, solver, hidden_weight, trace, laplacians):
    kl, hidden_error, out = surrogate_losses(params, surrogate, solver, trace, laplacians)
    loss = kl.mean() + hidden_weight * hidden_error.mean()
    return loss, (kl, hidden_error, out.ok, out.finite_times, out.num_steps)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3), donate_argnums=(4, 5))
def _train_step(surrogate, solver, optimizer, hidden_weight, params, opt_state, trace, laplacians):
    (loss, (kl, hidden_error, ok, finite, steps)), grads = jax.value_and_grad(_loss, has_aux=True)(
        params, surrogate, solver, hidden_weight, trace, laplacians)
    updates, new_opt_state = optimizer.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    finite_grads = jnp.all(jnp.array([jnp.all(jnp.isfinite(g)) for g in jax.tree_util.tree_leaves(grads)]))
    good = jnp.all(ok) & jnp.isfinite(loss) & finite_grads
    keep = lambda new, old: jax.tree_util.tree_map(lambda a, b: jnp.where(good, a, b), new, old)  # noqa: E731
    return (keep(new_params, params), keep(new_opt_state, opt_state),
            {"loss": loss, "kl": kl.mean(), "hidden_error": hidden_error.mean(), "good": good, "ok": ok,
             "finite_times": finite, "num_steps": steps})


@functools.partial(jax.jit, static_argnums=(0, 1))
def _eval_losses(surrogate, solver, params, trace, laplacians):
    kl, hidden_error, out = surrogate_losses(params, surrogate, solver, trace, laplacians)
    return kl, hidden_error, out.ok, out.finite_times


def evaluate_losses(params, surrogate: SurrogateConfig, solver: SolverConfig, trace: Trace,
                    batch_size: int) -> tuple[float, float]:
    """Mean attention KL and relative hidden error over every input of ``trace`` (fixed-size batches)."""
    kls, errors = [], []
    for index, keep in fixed_size_batches(trace.mask.shape[0], batch_size):
        batch = trace.take(index)
        kl, error, ok, finite = _eval_losses(surrogate, solver, params, batch, token_laplacians(batch.mask))
        raise_if_failed(ok, finite, surrogate.num_layers, solver, "validation")
        kls.append(np.asarray(kl)[:keep])
        errors.append(np.asarray(error)[:keep])
    return float(np.concatenate(kls).mean()), float(np.concatenate(errors).mean())


def fit_surrogate(train: Trace, validation: Trace, surrogate: SurrogateConfig, solver: SolverConfig = SolverConfig(),
                  config: FitConfig = FitConfig(), params: dict | None = None, progress: bool = True,
                  on_eval: Callable[[dict], None] | None = None) -> FitResult:
    """Fit the surrogate's parameters so its attention maps match ``train``'s, stopping on ``validation``.

    Args:
        train, validation: traces of disjoint inputs, padded to one token count ``N``.
        surrogate, solver, config: what to fit, how to solve, how to optimise.
        params: starting parameters (default: `init_surrogate` seeded by ``config.seed``, with the projection
            at the principal directions of the training embeddings).
        progress: show a progress bar.
        on_eval: called with each validation record ``{"step", "train_loss", "validation_kl", ...}``.

    Raises:
        ValueError for malformed traces or a surrogate whose shape does not match them; `SolverError` when a
        solve fails or the loss or gradient is not finite (the parameters of the last good step are kept).
    """
    for name, trace in (("train", train), ("validation", validation)):
        check_trace(trace)
        if trace.hidden.shape[-1] != surrogate.model_dim or trace.num_layers != surrogate.num_layers \
                or trace.num_heads != surrogate.num_heads:
            raise ValueError(f"{name} trace has L={trace.num_layers}, H={trace.num_heads}, d={trace.hidden.shape[-1]} "
                             f"but the surrogate expects L={surrogate.num_layers}, H={surrogate.num_heads}, "
                             f"d={surrogate.model_dim}; build SurrogateConfig from the traced model.")
    train = jax.tree_util.tree_map(np.asarray, train)
    count = train.mask.shape[0]
    batch_size = min(config.batch_size, count)
    if params is None:
        params = init_surrogate(jax.random.PRNGKey(config.seed), surrogate, train.hidden[0][train.mask])
    optimizer = make_optimizer(config)
    opt_state = optimizer.init(params)
    params = jax.tree_util.tree_map(jnp.array, params)  # own buffers: the step donates them
    rng = np.random.default_rng(config.seed)
    batches = shuffled_batches(count, batch_size, rng)
    history, best, best_step, since_best = [], math.inf, 0, 0
    best_params = params
    stopped_early = False
    from tqdm.auto import tqdm

    bar = tqdm(range(1, config.steps + 1), desc="fit", disable=not progress, unit="step")
    running = []
    for step in bar:
        batch = train.take(next(batches))
        params, opt_state, info = _train_step(surrogate, solver, optimizer, float(config.hidden_weight), params,
                                              opt_state, batch, token_laplacians(batch.mask))
        if not bool(info["good"]):
            raise_if_failed(info["ok"], info["finite_times"], surrogate.num_layers, solver, f"fit step {step}")
            raise SolverError(f"fit step {step}: the loss or its gradient is NaN/Inf (loss={float(info['loss'])}). "
                              "The parameters of the last good step are kept. Remedy: lower the learning rate or "
                              f"the gradient clip (clip_norm, now {config.clip_norm}).")
        running.append(float(info["loss"]))
        if step % config.eval_every == 0 or step == config.steps:
            val_kl, val_hidden = evaluate_losses(params, surrogate, solver, validation, batch_size)
            val_loss = val_kl + config.hidden_weight * val_hidden
            record = {"step": step, "train_loss": float(np.mean(running)), "validation_kl": val_kl,
                      "validation_hidden_error": val_hidden, "validation_loss": val_loss,
                      "solver_steps": int(info["num_steps"])}
            running = []
            history.append(record)
            if on_eval is not None:
                on_eval(record)
            bar.set_postfix(train=f"{record['train_loss']:.4f}", val=f"{val_kl:.4f}")
            if val_loss < best:
                best, best_step, since_best = val_loss, step, 0
                best_params = jax.tree_util.tree_map(jnp.copy, params)
            else:
                since_best += 1
                if config.patience and since_best >= config.patience:
                    stopped_early = True
                    break
    bar.close()
    return FitResult(jax.tree_util.tree_map(np.asarray, best_params), history, best_step, stopped_early)
