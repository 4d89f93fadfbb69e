"""Fitting the attention-PDE surrogate to a transformer's trace with optax.

The loss is the mean over blocks, heads and real query rows of ``KL(transformer ‖ PDE)``, plus
``hidden_weight`` times the relative error of the read-out PDE states against the hidden states, plus
``cosine_weight`` times ``1 − cosine`` of the maps (the held-out figure's own measure).
One jit-compiled step, vmapped over the batch; early stopping on a validation split.

A fit may open with a multiple-shooting phase (``shooting_steps``): every unit interval is solved from the
transformer's own state entering it (`pdeflow.fitting.losses.shooting_losses`), so the dynamics learn each block
from where it starts instead of through one long solve; the rest of the fit is on the free-running solve.
With ``coarse_steps`` the first steps solve with a fixed step ``coarse_factor`` times the solver's (cheaper
steps) and the rest with the solver as given, so the fit ends on the solve it is measured with. The
validation figures (and the choice of the best parameters) are always those of the free-running solve with
the solver as given.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from pdeflow.data.batches import (
    BucketedBatches,
    ShuffledBatches,
    batches_from_state,
    bucket_lengths,
    fixed_size_batches,
    next_batch,
    token_lengths,
)
from pdeflow.fitting.checkpoint import FitCheckpointer, FitState, prepare_checkpoint_dir, restore_newest_intact
from pdeflow.fitting.losses import depth_weights, per_input_cosine_gap, shooting_losses, surrogate_losses
from pdeflow.fitting.optim import OptimizerConfig
from pdeflow.fitting.parallel import batch_sharded, check_divisible, data_mesh, replicated, shard_trace, to_host
from pdeflow.fitting.train_loop import make_train_step, train_loop
from pdeflow.models.trace import Trace, check_trace
from pdeflow.pde.attention_pde import SurrogateConfig, init_surrogate
from pdeflow.pde.solve import SolverConfig, SolverError
from pdeflow.surrogate import raise_if_failed, token_laplacians
from pdeflow.validation import check_finite_numbers

INITS = ("random", "transformer")
# the parameter groups that shape the attention maps on a given state (the kernel and the basis it reads): the
# group `kernel_lr_scale` applies to; every other group ("dynamics") moves the state
KERNEL_GROUPS = ("kernel", "projection", "readout")


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
        devices: how many devices the batch is split over (data parallel, `pdeflow.fitting.parallel`); 0 uses every
            device JAX sees. ``batch_size`` must be a multiple of it.
        checkpoint_every: steps between checkpoints when the fit is given a checkpoint folder (0: only at the
            end and on interruption).
        init: how the parameters start when none are given: ``"random"`` (`init_surrogate`) or
            ``"transformer"`` (`pdeflow.pde.teacher_init.init_from_transformer`, from the blocks' own weights;
            the pipeline passes them, `fit_surrogate` itself needs ``params``).
        shooting_steps: the first this many of the ``steps`` fit every unit interval from the transformer's own
            state entering it (multiple shooting), weighted with ``continuity_weight``; the rest fit the
            free-running solve. 0: no shooting phase.
        shooting_learning_rate: peak learning rate of the shooting phase (its own warm-up and cosine decay).
        continuity_weight: weight of the shooting phase's continuity error (each interval's end against the
            transformer's state where the next one starts).
        kernel_lr_scale: the learning rate of the kernel (query/key maps, position bias), the projection and the
            read-out, as a fraction of the others' in the free-running phase (0 holds them).
        shooting_kernel_lr_scale: the same fraction in the shooting phase (the default 0 holds the kernel while
            the dynamics learn each interval: with ``init="transformer"`` its maps start as the blocks' own).
        depth_weighting: weight the blocks' attention KL in the training loss by ``1 + depth_weighting · l/(L−1)``
            (scaled to mean 1; `pdeflow.fitting.losses.depth_weights`), so deeper blocks, where the free-running
            solve drifts most, count more; 0 weighs every block alike. Validation and the reported figures
            stay unweighted.
        decay_kernel: whether ``weight_decay`` also applies to the kernel group (query/key maps, position bias,
            projection, read-out: `KERNEL_GROUPS`), which the transformer's own weights start; False decays only the
            dynamics (value corrections, residual MLP, coefficients), the parameters a fit's generalisation gap
            lies in (`experiments.generalisation_gap`).
        cosine_weight: weight of ``1 − cosine`` of the free-running maps (each head's map over the real tokens,
            as the held-out figure measures it; `pdeflow.fitting.losses.per_input_cosine_gap`) in the free-running
            phase's loss and in the validation loss that picks the best parameters. KL weighs every query row's
            distribution alike in log space; the cosine weighs the maps' large entries most, so the two can
            disagree at the margin. 0 (default): the KL and the hidden-state term alone.
        length_buckets: group training batches by length into this many buckets (quantiles of the training
            inputs' lengths) and trim each batch's padding to its bucket's length, so short inputs stop paying
            for the longest; the step compiles once per bucket, all before the first step. 1: every batch keeps
            the full padded length (one compiled shape). Token chains only; validation keeps the full length.
        coarse_steps: the first this many of the ``steps`` (shooting steps included) train on solves with a step
            ``coarse_factor`` times the solver's fixed step (a ``coarse_factor``-th of the field evaluations; the
            faithful preset's step on twice its step takes 0.55 of the time); the rest, and every validation, use the
            solver as given, so the fit ends on the solve it is measured with. Fixed-step solvers only. 0: every
            step uses the solver as given.
        coarse_factor: how many times the solver's step a coarse step is (an integer ≥ 2).
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
    devices: int = 0
    checkpoint_every: int = 50
    length_buckets: int = 1
    init: str = "random"
    shooting_steps: int = 0
    shooting_learning_rate: float = 1e-2
    continuity_weight: float = 1.0
    kernel_lr_scale: float = 1.0
    shooting_kernel_lr_scale: float = 0.0
    depth_weighting: float = 0.0
    decay_kernel: bool = True
    cosine_weight: float = 0.0
    coarse_steps: int = 0
    coarse_factor: int = 2

    def __post_init__(self):
        check_finite_numbers(self)
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; choose from {INITS}.")
        if not 0 <= self.shooting_steps < self.steps:
            raise ValueError(f"shooting_steps must be in [0, steps={self.steps}) (the fit ends on the free-running "
                             f"solve); got {self.shooting_steps}.")
        if not 0 <= self.coarse_steps < self.steps:
            raise ValueError(f"coarse_steps must be in [0, steps={self.steps}) (the fit ends on the solver as "
                             f"given); got {self.coarse_steps}.")
        if not (isinstance(self.coarse_factor, int) and self.coarse_factor >= 2):
            raise ValueError(f"coarse_factor must be an integer >= 2 (a coarse step is that many fine ones); got "
                             f"{self.coarse_factor!r}.")
        if min(self.kernel_lr_scale, self.shooting_kernel_lr_scale, self.continuity_weight,
               self.depth_weighting, self.cosine_weight) < 0 or not self.shooting_learning_rate > 0:
            raise ValueError("need kernel_lr_scale, shooting_kernel_lr_scale, continuity_weight, depth_weighting, "
                             "cosine_weight >= 0 and shooting_learning_rate > 0.")
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError("steps, batch_size and eval_every must be positive.")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0; got {self.checkpoint_every}.")
        if self.length_buckets < 1:
            raise ValueError(f"length_buckets must be >= 1 (1: no bucketing); got {self.length_buckets}.")
        if self.devices < 0:
            raise ValueError(f"devices must be 0 (all) or a positive count; got {self.devices}.")
        if not self.learning_rate > 0 or self.hidden_weight < 0 or self.patience < 0:
            raise ValueError("need learning_rate > 0, hidden_weight >= 0 and patience >= 0.")

    def optimizer(self, shooting: bool = False) -> OptimizerConfig:
        """The optimiser of the free-running phase (steps ``shooting_steps + 1 … steps``: ``learning_rate``,
        ``kernel_lr_scale``), or of the shooting phase (steps ``1 … shooting_steps``: ``shooting_learning_rate``,
        ``shooting_kernel_lr_scale``); each warms up over ``warmup_steps`` and decays to 1 % of its peak."""
        if shooting and not self.shooting_steps:
            raise ValueError("this fit has no shooting phase (shooting_steps=0), so no shooting optimiser.")
        learning_rate, steps, scale = (self.shooting_learning_rate, self.shooting_steps,
                                       self.shooting_kernel_lr_scale) if shooting else \
            (self.learning_rate, self.steps - self.shooting_steps, self.kernel_lr_scale)
        return OptimizerConfig(learning_rate, steps, self.warmup_steps, self.weight_decay, self.clip_norm,
                               end_fraction=0.01, group_lr_scales=(("kernel", scale), ("dynamics", 1.0)),
                               group_labels=parameter_groups,
                               decayed_groups=None if self.decay_kernel else ("dynamics",))


def coarse_needs_fixed_steps(coarse_steps: int) -> str:
    """The error for ``coarse_steps`` with an adaptive solver."""
    return (f"coarse_steps={coarse_steps} multiplies a fixed step, but the solver is adaptive; use a fixed-step "
            "solver (adaptive=False, --no-adaptive) or coarse_steps=0 (--coarse-steps 0).")


@dataclasses.dataclass(frozen=True)
class FitResult:
    """The best parameters (lowest validation loss) and the loss curves."""

    params: dict
    history: list[dict]
    best_step: int
    stopped_early: bool


def make_optimizer(config: FitConfig, shooting: bool = False) -> optax.GradientTransformation:
    """The optimiser of the free-running phase (steps ``shooting_steps + 1 …``), or of the shooting phase
    (``config.optimizer(shooting).make()``)."""
    return config.optimizer(shooting).make()


def parameter_group(name: str) -> str:
    """``"kernel"`` for the top-level parameter groups in `KERNEL_GROUPS`, ``"dynamics"`` for the others."""
    return "kernel" if name in KERNEL_GROUPS else "dynamics"


def parameter_groups(params: dict) -> dict:
    """``{name: parameter_group(name)}`` for the top-level groups of ``params`` (the optimiser's labels)."""
    return {name: parameter_group(name) for name in params}


@dataclasses.dataclass(frozen=True)
class FitLoss:
    """The fit's training loss on one batch, ``(params, trace, laplacians) -> (loss, aux)``: the mean attention
    KL (blocks weighted by ``block_weights`` if given) plus ``hidden_weight`` times the relative hidden error of
    the free-running solve and ``cosine_weight`` times its maps' mean ``1 − cosine`` (the same block weights),
    or, with ``shooting``, plus ``continuity_weight`` times the continuity error of the multiple-shooting solve.
    ``aux``: the mean ``kl`` and ``hidden_error`` (the continuity error when shooting), the solves' ``ok``
    ``(B,)``, ``finite_times`` and ``num_steps``. A frozen dataclass, so equal losses compile one step
    (`pdeflow.fitting.train_loop.make_train_step`)."""

    surrogate: SurrogateConfig
    solver: SolverConfig
    hidden_weight: float = 0.0
    continuity_weight: float = 1.0
    block_weights: tuple[float, ...] | None = None
    shooting: bool = False
    cosine_weight: float = 0.0

    @classmethod
    def from_config(cls, surrogate: SurrogateConfig, solver: SolverConfig, config: FitConfig,
                    shooting: bool = False) -> FitLoss:
        """The loss ``config`` trains with in its free-running (or its shooting) phase."""
        block_weights = None if config.depth_weighting == 0 else \
            tuple(depth_weights(surrogate.num_layers, config.depth_weighting).tolist())  # static: hashable
        return cls(surrogate, solver, float(config.hidden_weight), float(config.continuity_weight), block_weights,
                   shooting, float(config.cosine_weight))

    def __call__(self, params, trace: Trace, laplacians):
        block_weights = None if self.block_weights is None else jnp.asarray(self.block_weights,
                                                                            trace.attention.dtype)
        if self.shooting:  # the "hidden error" of this phase is the continuity error
            kl, hidden_error, ok, steps = shooting_losses(params, self.surrogate, self.solver, trace, laplacians,
                                                          block_weights)
            loss = kl.mean() + self.continuity_weight * hidden_error.mean()
            finite = jnp.asarray(True)
        else:
            kl, hidden_error, out = surrogate_losses(params, self.surrogate, self.solver, trace, laplacians,
                                                     block_weights)
            if not self.hidden_weight:  # static: reported, not differentiated (its gradient would be times 0)
                hidden_error = jax.lax.stop_gradient(hidden_error)
            loss = kl.mean() + self.hidden_weight * hidden_error.mean()
            if self.cosine_weight:  # static: a fit without the term compiles the step it always did
                loss = loss + self.cosine_weight * per_input_cosine_gap(trace.attention, out.log_attention,
                                                                        trace.mask, block_weights).mean()
            ok, finite, steps = out.ok, out.finite_times, out.num_steps
        return loss, {"kl": kl.mean(), "hidden_error": hidden_error.mean(), "ok": ok, "finite_times": finite,
                      "num_steps": steps}


def make_fit_step(surrogate: SurrogateConfig, solver: SolverConfig, config: FitConfig, shooting: bool = False):
    """The fit's jit-compiled step in its free-running (or shooting) phase:
    ``(params, opt_state, trace, laplacians) -> (params, opt_state, info)``
    (`pdeflow.fitting.train_loop.make_train_step` on `FitLoss` and `make_optimizer`). It donates ``params`` and
    ``opt_state``, and keeps them unchanged when a solve fails or the loss or a gradient is not finite
    (``info["good"]`` is then false). Equal settings give the same function, compiled once."""
    return make_train_step(FitLoss.from_config(surrogate, solver, config, shooting), make_optimizer(config, shooting),
                           has_aux=True, keep_last_good=True, donate=True)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _eval_losses(surrogate, solver, params, trace, laplacians):
    kl, hidden_error, out = surrogate_losses(params, surrogate, solver, trace, laplacians)
    gap = per_input_cosine_gap(trace.attention, out.log_attention, trace.mask)
    return kl, hidden_error, gap, out.ok, out.finite_times


def sharded_batch(trace: Trace, index, mesh: Mesh | None, surrogate: SurrogateConfig,
                  num_tokens: int | None = None) -> tuple[Trace, jax.Array]:
    """The sub-batch ``index`` of ``trace`` (trimmed to ``num_tokens`` tokens if given) and its token
    Laplacians ``(B, N, N)``: the step's ``(trace, laplacians)``, split over ``mesh`` if given."""
    batch = trace.take(index)
    if num_tokens is not None:
        batch = batch.truncate(num_tokens)
    laplacians = token_laplacians(batch.mask, surrogate)
    if mesh is None:
        return batch, laplacians
    return shard_trace(batch, mesh), batch_sharded(laplacians, mesh)


def evaluate_losses(params, surrogate: SurrogateConfig, solver: SolverConfig, trace: Trace,
                    batch_size: int, mesh: Mesh | None = None) -> tuple[float, float, float]:
    """Mean attention KL, relative hidden error and ``1 − cosine`` of the maps (`per_input_cosine_gap`) over
    every input of ``trace`` (fixed-size batches, split over ``mesh`` if given)."""
    kls, errors, gaps = [], [], []
    for index, keep in fixed_size_batches(trace.mask.shape[0], batch_size):
        batch, laplacians = sharded_batch(trace, index, mesh, surrogate)
        kl, error, gap, ok, finite = _eval_losses(surrogate, solver, params, batch, laplacians)
        raise_if_failed(ok, finite, surrogate.num_layers, solver, "validation")
        kls.append(to_host(kl)[:keep])
        errors.append(to_host(error)[:keep])
        gaps.append(to_host(gap)[:keep])
    return tuple(float(np.concatenate(x).mean()) for x in (kls, errors, gaps))


def fit_surrogate(train: Trace, validation: Trace, surrogate: SurrogateConfig, solver: SolverConfig = SolverConfig(),
                  config: FitConfig = FitConfig(), params: dict | None = None, progress: bool = True,
                  on_eval: Callable[[dict], None] | None = None, checkpoint_dir: str | Path | None = None,
                  resume: bool = False, on_eval_params: Callable[[dict, dict], None] | None = None) -> FitResult:
    """Fit the surrogate's parameters so its attention maps match ``train``'s, stopping on ``validation``.

    Args:
        train, validation: traces of disjoint inputs, padded to one token count ``N``.
        surrogate, solver, config: what to fit, how to solve, how to optimise.
        params: starting parameters (default: `init_surrogate` seeded by ``config.seed``, with the projection
            at the principal directions of the training embeddings).
        progress: show a progress bar.
        on_eval: called with each validation record ``{"step", "train_loss", "validation_kl", ...}``.
        checkpoint_dir: where to keep checkpoints (`pdeflow.fitting.checkpoint`): every ``config.checkpoint_every``
            steps, at the end, and when the fit is interrupted (SIGINT/Ctrl-C: the step under way finishes,
            is saved, then ``KeyboardInterrupt`` is raised). None keeps none.
        resume: continue from the newest checkpoint in ``checkpoint_dir`` (if there is one) instead of
            starting afresh; the result equals that of an uninterrupted fit.
        on_eval_params: called after ``on_eval`` with each validation record and the parameters of that step
            (on the device, valid during the call only: the next step reuses their buffers), e.g. to measure
            them on other data.

    Raises:
        ValueError for malformed traces, a surrogate whose shape does not match them, or a checkpoint made
        with other settings; `SolverError` when a solve fails or the loss or gradient is not finite (the
        parameters of the last good step are kept, and saved when checkpointing).
    """
    for name, trace in (("train", train), ("validation", validation)):
        check_trace(trace)
        if trace.hidden.shape[-1] != surrogate.model_dim or trace.num_layers != surrogate.num_layers \
                or trace.num_heads != surrogate.num_heads:
            raise ValueError(f"{name} trace has L={trace.num_layers}, H={trace.num_heads}, d={trace.hidden.shape[-1]} "
                             f"but the surrogate expects L={surrogate.num_layers}, H={surrogate.num_heads}, "
                             f"d={surrogate.model_dim}; build SurrogateConfig from the traced model.")
        surrogate.check_token_count(trace.mask.shape[1], f"{name} inputs")
    if resume and checkpoint_dir is None:
        raise ValueError("resume needs the checkpoint_dir to resume from.")
    if checkpoint_dir is not None and jax.process_index() == 0:
        prepare_checkpoint_dir(checkpoint_dir, resume=resume)  # refuses what pdeflow did not write, or unasked resumes
    if config.length_buckets > 1 and surrogate.grid:
        raise ValueError(f"length_buckets={config.length_buckets} trims padding off token chains, but a patch grid "
                         "has a fixed token count; use length_buckets=1.")
    train = jax.tree_util.tree_map(np.asarray, train)
    # a 0/1 mask of integers would index instead of masking (check_trace accepted it as 0/1)
    train = Trace(train.hidden, train.attention, train.mask.astype(bool))
    validation = Trace(validation.hidden, validation.attention, np.asarray(validation.mask).astype(bool))
    count = train.mask.shape[0]
    batch_size = min(config.batch_size, count)
    if params is None and config.init == "transformer":
        raise ValueError("init='transformer' starts from the transformer's blocks, which fit_surrogate does not "
                         "see: pass params=pdeflow.pde.teacher_init.init_from_transformer(...) (the pipeline does).")
    if params is None:
        params = init_surrogate(jax.random.PRNGKey(config.seed), surrogate, train.hidden[0][train.mask])
    if config.coarse_steps and solver.adaptive:
        raise ValueError(coarse_needs_fixed_steps(config.coarse_steps))
    coarse_solver = dataclasses.replace(solver, dt0=solver.dt0 * config.coarse_factor)
    mesh = data_mesh(config.devices)
    check_divisible(batch_size, mesh)
    def shooting_at(step: int) -> bool:  # whether step number `step` (1-based) is a shooting step
        return step <= config.shooting_steps

    def solver_at(step: int) -> SolverConfig:  # what step number `step` (1-based) trains on: coarse, then as given
        return coarse_solver if step <= config.coarse_steps else solver

    def fresh_opt_state(shooting: bool, params) -> optax.OptState:
        return replicated(make_optimizer(config, shooting).init(params), mesh)

    params = replicated(jax.tree_util.tree_map(jnp.array, params), mesh)  # own buffers: the step donates them
    opt_state = fresh_opt_state(shooting_at(1), params)
    batches = training_batches(train, batch_size, config)
    # best_params is a host copy: the step donates (frees) the device buffers of params, and copying to the
    # host compiles nothing
    state = FitState(step=0, params=params, opt_state=opt_state, best_params=jax.tree_util.tree_map(to_host, params),
                     best=math.inf, best_step=0, since_best=0, history=[], running=[], data_order=batches.state())
    checkpointer = FitCheckpointer(checkpoint_dir) if checkpoint_dir is not None else None
    # what a checkpoint must agree with to be resumed: the step budget may grow, and the fit may move to another
    # number of devices (the result then agrees to float tolerance instead of bit for bit)
    movable = ("steps", "checkpoint_every", "devices")
    # the field's backward (hand-written or autodiff) changes gradients at round-off only, so it may change too
    settings = {"surrogate": {k: v for k, v in dataclasses.asdict(surrogate).items() if k != "field_backward"},
                "solver": dataclasses.asdict(solver),
                "fit": {k: v for k, v in dataclasses.asdict(config).items() if k not in movable},
                "train": list(train.hidden.shape), "validation": list(np.shape(validation.hidden))}
    if resume and checkpointer.latest_step() is not None:
        def like(step: int) -> FitState:  # a step saved in the free-running phase holds that optimiser's state
            return dataclasses.replace(state, opt_state=state.opt_state if shooting_at(step) else
                                       fresh_opt_state(False, params))

        state, skipped = restore_newest_intact(checkpointer, like, settings)
        for line in skipped:
            warnings.warn(f"{line}; resuming from the newest intact one, step {state.step}.", stacklevel=2)
        state.params, state.opt_state = (replicated(x, mesh) for x in (state.params, state.opt_state))
        state.best_params = jax.tree_util.tree_map(to_host, state.best_params)
        batches = batches_from_state(state.data_order)
    stopped_early = bool(config.patience) and state.since_best >= config.patience and not shooting_at(state.step)

    def save() -> None:  # the state after `state.step` steps (a no-op if it was just saved)
        if checkpointer is not None and checkpointer.latest_step() != state.step:
            state.data_order = batches.state()
            checkpointer.save(state, settings)

    def fit_step(step: int):
        return make_fit_step(surrogate, solver_at(step), config, shooting_at(step))

    if isinstance(batches, BucketedBatches):  # compile every bucket's step now, none during the fit
        from tqdm.auto import tqdm

        # one step of each phase still to come: (shooting, coarse) change only after these steps
        firsts = {step for step in (state.step + 1, config.shooting_steps + 1, config.coarse_steps + 1)
                  if state.step < step <= config.steps}
        for length in tqdm(batches.buckets, desc="compile buckets", disable=not progress, unit="bucket"):
            shapes = sharded_batch(train, np.arange(batch_size), mesh, surrogate, length)  # only shapes count
            for step in sorted(firsts):
                shooting = shooting_at(step)
                like = state.opt_state if shooting == shooting_at(state.step + 1) else \
                    fresh_opt_state(shooting, state.params)  # as the switch of phase makes it
                fit_step(step).lower(state.params, like, *shapes).compile()

    def train_step(step: int) -> dict:
        if config.shooting_steps and step == config.shooting_steps + 1:  # free-running from here: fresh moments
            state.opt_state = fresh_opt_state(False, state.params)
        index, num_tokens = next_batch(batches)
        batch, laplacians = sharded_batch(train, index, mesh, surrogate, num_tokens)
        new_params, new_opt_state, info = fit_step(step)(state.params, state.opt_state, batch, laplacians)
        state.params, state.opt_state = new_params, new_opt_state  # the old buffers were donated
        if not bool(info["good"]):  # the step kept the last good parameters: save them, then stop
            save()
            raise_if_failed(info["ok"], info["finite_times"], surrogate.num_layers, solver_at(step),
                            f"fit step {step}")
            raise SolverError(f"fit step {step}: the loss or its gradient is NaN/Inf (loss={float(info['loss'])})."
                              " The parameters of the last good step are kept. Remedy: lower the learning rate "
                              f"or the gradient clip (clip_norm, now {config.clip_norm}).")
        state.running.append(float(info["loss"]))
        state.step = step
        return info

    def evaluate(step: int, info: dict) -> dict:
        nonlocal stopped_early
        shooting = shooting_at(step)
        val_kl, val_hidden, val_gap = evaluate_losses(state.params, surrogate, solver, validation, batch_size, mesh)
        val_loss = val_kl + config.hidden_weight * val_hidden + config.cosine_weight * val_gap
        record = {"step": step, "train_loss": float(np.mean(state.running)), "validation_kl": val_kl,
                  "validation_hidden_error": val_hidden, "validation_cosine": 1.0 - val_gap,
                  "validation_loss": val_loss,
                  "solver_steps": int(info["num_steps"]), "phase": "shooting" if shooting else "free"}
        state.running = []
        state.history.append(record)
        if val_loss < state.best:
            state.best, state.best_step, state.since_best = val_loss, step, 0
            state.best_params = jax.tree_util.tree_map(to_host, state.params)
        elif not shooting:  # patience counts in the free-running phase only
            state.since_best += 1
            stopped_early = bool(config.patience) and state.since_best >= config.patience
        return record

    def report(record: dict) -> None:
        if on_eval is not None:
            on_eval(record)
        if on_eval_params is not None:
            on_eval_params(record, state.params)

    train_loop(train_step, config.steps, start=state.step, eval_every=config.eval_every, evaluate=evaluate,
               report=report, checkpoint_every=config.checkpoint_every, checkpoint=lambda step: save(),
               should_stop=lambda: stopped_early, progress=progress, name="fit",
               postfix=lambda record: {"train": f"{record['train_loss']:.4f}", "val": f"{record['validation_kl']:.4f}"},
               interrupt_hint=f"; resume from the checkpoint in {checkpoint_dir}" if checkpointer else "")
    return FitResult(jax.tree_util.tree_map(to_host, state.best_params), state.history, state.best_step,
                     stopped_early)


def training_batches(train: Trace, batch_size: int, config: FitConfig) -> ShuffledBatches | BucketedBatches:
    """The fit's batch order (seeded by ``config.seed``): shuffled full-length batches, or, with
    ``config.length_buckets > 1``, batches grouped into length buckets. Draw from it with
    `pdeflow.data.batches.next_batch` -> ``(index, num_tokens)`` and cut the batch with `sharded_batch`."""
    rng = np.random.default_rng(config.seed)
    if config.length_buckets == 1:
        return ShuffledBatches(train.mask.shape[0], batch_size, rng)
    lengths = token_lengths(train.mask)
    return BucketedBatches(lengths, bucket_lengths(lengths, config.length_buckets), batch_size, rng)
