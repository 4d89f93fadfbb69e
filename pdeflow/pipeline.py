"""The main job as one Python call: trace a transformer, fit the surrogate, measure it honestly on held-out
inputs beside the baselines.

`fit_and_measure(source, config)` does it for any model source (`pdeflow.sources`: the transformer, its inputs,
its token grid); `fit_transformer(config)` for the registered model ``config.model`` (what ``pdeflow fit``
runs); `fit_minilm` and `fit_vit` for the two built-in ones. `pdeflow.report.write_report` writes the outputs.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from pdeflow import machine, metrics
from pdeflow.fitting.fit import FitConfig, FitResult, coarse_needs_fixed_steps, fit_surrogate
from pdeflow.information.depth import attention_entropy_along_depth
from pdeflow.information.entropy import attention_entropy
from pdeflow.models.block_weights import BlockWeights
from pdeflow.models.minilm import PretrainedEncoder
from pdeflow.models.parameters import parameter_count, transformer_parameters  # noqa: F401 (re-exported)
from pdeflow.models.trace import Trace
from pdeflow.models.vit import ViTConfig
from pdeflow.pde import attention_pde, terms
from pdeflow.pde.attention_pde import SurrogateConfig, parameter_shapes
from pdeflow.pde.solve import SolverConfig
from pdeflow.pde.teacher_init import init_from_transformer
from pdeflow.results import AttentionEntropy, FitMetrics, FitSummary, ParameterCounts, SplitSizes, Timings
from pdeflow.sources import (  # noqa: F401 (DataConfig, Splits and the tracing functions are re-exported)
    SOURCES,
    DataConfig,
    MiniLMSource,
    ModelShape,
    ModelSource,
    Splits,
    ViTDigitsSource,
    model_source,
    model_source_for,
    source_names,
    trace_digit_splits,
    trace_sentence_splits,
)
from pdeflow.sources.checkpoint import check_model_name
from pdeflow.surrogate import predict_attention
from pdeflow.train.vit import TrainedViT


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything ``pdeflow fit`` takes. The surrogate's L, H, d (and, for images, its grid) are set from the
    traced model.

    Attributes:
        model: the transformer to fit, a registered model source (`pdeflow.sources`): ``minilm``
            (all-MiniLM-L6-v2 on pydoc sentences, token chain) or ``vit-digits`` (the ViT trained here on
            scikit-learn's digits, 2-D patch grid; trained on first use and cached, see `pdeflow.train.vit`);
            or a checkpoint folder of your own (bert, roberta, distilbert, vit, gpt2), traced on --texts FILE or
            --images FOLDER (`pdeflow.sources.CheckpointSource`).
        top_k: k of the top-k agreement metric.
        preset: the named preset these settings started from (`preset_config`; "" for none), for the report.
    """

    model: str = "minilm"
    data: DataConfig = DataConfig()
    surrogate: SurrogateConfig = SurrogateConfig()
    solver: SolverConfig = SolverConfig()
    fit: FitConfig = FitConfig()
    top_k: int = 3
    preset: str = ""

    def __post_init__(self):
        check_model_name(self.model)  # a registered name or a checkpoint folder (nothing is downloaded)
        if self.preset not in ("",) + PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {list(PRESETS)}.")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"top_k must be a positive integer; got {self.top_k!r}.")
        if self.fit.coarse_steps and self.solver.adaptive:  # before any tracing (fit_surrogate checks it too)
            raise ValueError(coarse_needs_fixed_steps(self.fit.coarse_steps))


def check_memory(surrogate: SurrogateConfig, available: int | None = None) -> int:
    """Refuse, before any work, a surrogate whose parameters and optimiser state alone (4 float32 copies:
    parameters, gradients, AdamW's two moments) would not fit in the machine's memory (``available`` bytes;
    default: the physical memory). Returns the parameter count."""
    import os

    count = parameter_count(parameter_shapes(surrogate))
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if available is None else available
    if 16 * count > available:
        raise ValueError(f"the surrogate would have {count:,} parameters ({16 * count / 2**30:,.1f} GiB with its "
                         f"gradients and optimiser state), more than this machine's {available / 2**30:,.1f} GiB; "
                         "lower --width, --mlp-width, --key-dim or --value-rank.")
    return count


MODELS = source_names()  # the built-in model sources; `pdeflow.sources.register_source` adds more
PRESETS = ("default", "faithful")
# how each built-in model's blocks read their stream (`ModelSource.block_input_norm`), kept for older callers
BLOCK_INPUT_NORM = {name: SOURCES[name].block_input_norm for name in MODELS}


def preset_config(name: str, model: str | ModelSource = "minilm") -> RunConfig:
    """The settings of a named preset for ``model`` (a registered name or a source, e.g. a
    `pdeflow.sources.CheckpointSource`).

    ``"default"`` (what ``pdeflow fit`` and ``fit_transformer()`` run): a fast fit (minutes on 2 cores) of a
    small surrogate (width 64, `SurrogateConfig`'s shape) on the source's default data (`ModelSource.default_data`:
    `DataConfig`'s defaults, or split sizes that fit a user's inputs), started from the transformer's own weights
    through the projection (`pdeflow.pde.teacher_init`, the state read as the model's blocks read their stream,
    `ModelSource.block_input_norm`), differentiated through the field's hand-written backward
    (``field_backward="custom"``: the same values, a faster backward pass), solved by adaptive Tsit5 differentiated
    by its discrete adjoint (``adjoint="discrete"``: diffrax's values, no step re-solved in the backward pass) and
    fitted with the hidden-state term (``hidden_weight=1``) for 800 steps, text in four length buckets
    (``length_buckets=4``: a batch's padding trimmed to its bucket's length); everything else is `RunConfig`'s
    defaults (which start from random parameters and fit the attention maps alone, 300 steps, no buckets).
    ``"faithful"``: the surrogate at the transformer's full width (``r = d``, key rank = the heads' width, value
    rank = the heads' width, one knot per block, value corrections and residual MLP varying in t, every
    depth-varying parameter held at block ``l``'s value over the interval ``[l, l+1]``: ``depth_time="blockwise"``,
    and the attention maps of the interval held at those of ``u(l)``, ``held_maps``, as block ``l``'s attention
    reads its input once; for text each interval split, ``splitting="lie"``: its token mixing, then its residual
    MLP, as block ``l``'s attention comes before its feed-forward network),
    started from the transformer's own weights (`pdeflow.pde.teacher_init`), fitted first by multiple shooting (each
    interval from the transformer's state entering it, the kernel held), then on the free-running solve with
    the hidden-state term, fixed-step RK4 differentiated by its discrete adjoint (`pdeflow.pde.fixed_step`; for
    text the first 1,640 of 1,790 steps on
    twice the step, ``coarse_steps``, the rest on the step it is measured with), a residual MLP twice the width,
    on every input that is not held out (`ModelSource.all_training_data`: for MiniLM every pydoc sentence,
    ``extra_training_sentences``), for text with weight decay on the dynamics alone (``weight_decay=0.1``,
    ``decay_kernel=False``), and for text the field's matrix products in bfloat16 where this machine multiplies
    bfloat16 faster than float32 (`pdeflow.machine.fast_bfloat16`: a CPU with AVX-512 BF16 or AMX, a GPU; elsewhere
    float32; ``compute_dtype``: float32 accumulation, the backward's products too; the state and the solver in
    float32); images take a finer step and more steps. On 2 cores 20 minutes for MiniLM (measured on an AMD EPYC
    host with AVX-512 BF16; 25–26 on an Intel Xeon host with AMX before the backward's products were bfloat16, 37
    there in float32, ``compute_dtype="float32"``) and about 38 for the ViT (once trained; 8,000 steps, on the Intel
    host).
    The shape comes from the source (`ModelSource.shape`, read without loading weights).
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {list(PRESETS)}.")
    source = model_source_for(model)
    model = source.name
    text = source.modality == "text"
    buckets = 4 if text else 1  # a token chain's batches in length buckets; a patch grid has one length
    if name == "default":
        # 800 steps (300 before: MiniLM's worst block 0.910 -> 0.919, the ViT's 0.741 -> 0.783); text in four length
        # buckets, which pay for part of the extra steps (a patch grid's token count is fixed)
        # the field's hand-written backward (`pdeflow.pde.field_backward`): the fit 337 s -> 297 s on an AMD EPYC
        # host (2026-12-06), the same held-out cosine and JS rows to three decimals; the ablations', fitted by Adam
        # from gradients that differ in round-off, move by up to 0.003 (the README's "Latest results")
        # the adaptive solve's discrete adjoint (`pdeflow.pde.adaptive_step`): diffrax's values, no step re-solved
        # in the backward pass; the fit 557 s -> 477 s on an AMD EPYC host with AVX2 (2026-12-07), the PDE's held-out
        # cosine row the same to three decimals, its JS and the ablations within 0.001 (Adam amplifying round-off)
        return RunConfig(model=model, data=source.default_data(),
                         surrogate=SurrogateConfig(state_norm=source.block_input_norm, field_backward="custom"),
                         solver=SolverConfig(adjoint="discrete"),
                         fit=FitConfig(steps=800, hidden_weight=1.0, init="transformer",
                                       length_buckets=buckets), preset=name)
    shape = source.shape()
    width = shape.model_dim
    surrogate = SurrogateConfig(width=width, key_dim=shape.head_dim, value_rank=shape.head_dim,
                                mlp_width=2 * width, state_norm=source.block_input_norm,
                                residual_norm="rms", varying=("value", "residual"), depth_time="blockwise",
                                held_maps=True, splitting="lie" if text else "none",
                                compute_dtype="bfloat16" if text and machine.fast_bfloat16() else "float32")
    # text, where bfloat16 products are fast (`machine.fast_bfloat16`: a CPU with AVX-512 BF16 or AMX, a GPU): on an
    # AMD EPYC with AVX2 alone the coarse step took 3.77 s in bfloat16 against 2.43 s in float32 (2026-12-07), so there
    # the products stay float32 (block 5 in float32: 0.98070 and 0.98037 on an Intel host)
    # text: the field's products in bfloat16, the backward's too since 2026-12-06 (MiniLM's block 5 0.98056 and 0.98018
    # in 1,193 s and 1,180 s wall on an AMD EPYC host, the coarse step x0.82 there). Before that, the forward's alone
    # (float32 accumulation, state, softmax and solver): MiniLM's block 5
    # 0.98070 -> 0.98054 (seed 0) and 0.98037 -> 0.98021 (seed 1), every block >= 0.98 and JS <= 0.02 with both, in
    # 1,561 s and 1,508 s wall on an Intel Xeon host with AMX instead of 2,217 s and 2,495 s (the coarse step x0.80).
    # Not measured on images (the ViT has no wall-time target; its products are a quarter of MiniLM's width)
    # text: each interval split, its token mixing first, then its residual MLP (as block l's attention comes before
    # its feed-forward network): MiniLM's worst block 0.9786 -> 0.9798 at the same 1,500 steps and cost a step, every
    # block up by 0.0001-0.0012, validation KL 0.0324 -> 0.0299. Not images: the ViT's worst block 0.976 -> 0.964
    # the maps held over each interval: MiniLM's worst block 0.977 -> 0.978 at 1,150 steps in 88 % of the time (no
    # softmax at every stage, and a fit on the coarse step that carries over to the fine solve), the ViT's 0.965 ->
    # 0.976 in 79 % of it (JS 0.024 -> 0.017)
    # images are small enough for a finer step (the ViT's fit leaned on the coarse one: 0.896 -> 0.863 re-solved
    # tightly at dt0 = 0.5), every training input, six times the steps and a residual MLP twice as wide (the ViT's
    # worst block 0.939 at 2,000 steps and width 96, 0.961 at 4,000 and 192)
    # text: the discrete adjoint (`pdeflow.pde.fixed_step`: one reverse scan, each step's stages recomputed from its
    # start; the stored adjoint's gradient to round-off, one state kept a step): MiniLM's fit 1,135 s -> 993 s (1,193 s
    # -> 1,053 s wall) on an AMD EPYC host with AVX-512 BF16, every held-out PDE row the same to three decimals (block
    # 5 0.98056 -> 0.98063), the ablations within 0.004 (Adam amplifying round-off); the fine step 0.776 -> 0.688 s in
    # alternating rounds (2026-12-07). Images too since 2026-12-08: the ViT's fit on one trained ViT gave every
    # held-out PDE row the same to five decimals (block 5 0.98144 with both), the ablations within 0.00002, and its
    # step (the fine one) 0.431 -> 0.363 s in 21 alternating rounds on an Intel Xeon host (x1.19 on the medians)
    solver = SolverConfig("rk4", adaptive=False, dt0=0.5 if text else 0.25, adjoint="discrete")
    # text: a residual MLP twice the width (the ViT's since its 0.939 -> 0.961; MiniLM's worst block 0.975 -> 0.977,
    # x1.30 a step) and, with the time the held maps and each interval's parameters read once save, 1,790 steps
    # (1,650 before `interval_params`, 1,500 before the splitting), the first 1,640 (the 300 of shooting among
    # them) on twice the step, the last 150 on the step it is measured with
    # (coarse then fine: 0.973 -> 0.975 in the time 800 steps took on the fine step alone; the fine steps' gain is
    # in within 100 steps): 0.979 and JS <= 0.020 on every block in 25 minutes unsplit, 0.980 (0.97998) and 0.018
    # split in 1,778 s (1,650 steps), 0.98008 and 0.018 with 1,790 in the same step budget
    # (seed 0; seed 1: 0.97946, below 0.98 without the decay below). Not images: 4,200 of
    # 5,000 steps on the step 0.5 gave the ViT 0.966 for 0.965 but moved 0.004 re-solved (0.001)
    # text: weight decay 0.1 on the dynamics alone (value corrections, residual MLP, coefficients; not the kernel,
    # started from the transformer's): block 5 0.98008 -> 0.98039 (0.05) -> 0.98070 (0.1) with seed 0 and
    # 0.97946 -> 0.97983 -> 0.98037 with seed 1, every block >= 0.98 with both at 0.1. Not images (worst block 0.977 ->
    # 0.976 on one ViT): no decay
    # images: 8,000 steps, twice 4,000 (the cosine schedule stretched; the validation KL had levelled off at 4,000):
    # the ViT's worst block 0.97735 -> 0.98144 on one trained ViT, every block >= 0.98, JS 0.0165 -> 0.0135, in 2,264 s
    # (seed 1: 0.98014, 0.97920 re-solved with a quarter of the step)
    fit = FitConfig(steps=1790 if text else 8000, shooting_steps=300, shooting_learning_rate=1e-2,
                    learning_rate=5e-3, kernel_lr_scale=0.2, shooting_kernel_lr_scale=0.0, hidden_weight=1.0,
                    weight_decay=0.1 if text else 0.0, decay_kernel=False, init="transformer",
                    length_buckets=buckets, patience=0, coarse_steps=1640 if text else 0)
    return RunConfig(model=model, data=source.all_training_data(), surrogate=surrogate, solver=solver, fit=fit,
                     preset=name)


def surrogate_config_for(shape: ModelShape, surrogate: SurrogateConfig) -> SurrogateConfig:
    """The surrogate config with L, H, d and the token geometry (grid, prefix tokens, causal mask) taken from the
    model's shape (knots capped at L unless a multiple of it)."""
    return dataclasses.replace(surrogate, num_layers=shape.num_layers, num_heads=shape.num_heads,
                               model_dim=shape.model_dim, num_knots=_knots_for(surrogate.num_knots, shape.num_layers),
                               grid=shape.grid, prefix_tokens=shape.prefix_tokens, causal=shape.causal)


def surrogate_for(encoder: PretrainedEncoder, surrogate: SurrogateConfig) -> SurrogateConfig:
    """`surrogate_config_for` a text encoder (a token chain)."""
    return surrogate_config_for(MiniLMSource(encoder).shape(), surrogate)


def vit_surrogate_for(vit: ViTConfig, surrogate: SurrogateConfig) -> SurrogateConfig:
    """`surrogate_config_for` a ViT: L, H, d from it, the ``g × g`` patch grid after its class token."""
    return surrogate_config_for(ModelShape(vit.num_layers, vit.num_heads, vit.hidden_size, vit.head_dim,
                                           (vit.grid_size, vit.grid_size), 1), surrogate)


def _knots_for(num_knots: int, num_layers: int) -> int:
    """``num_knots`` where the model's depth allows it (at most L, or a multiple of L), else L."""
    return num_knots if num_knots <= num_layers or num_knots % num_layers == 0 else num_layers


def held_out_fidelity(params, surrogate: SurrogateConfig, solver: SolverConfig, train: Trace, test: Trace,
                      top_k: int = 3, batch_size: int = 32) -> tuple[dict, np.ndarray]:
    """Fidelity on ``test`` of the surrogate, the surrogate with each term switched off (same fitted
    parameters, no refit), the same surrogate solved with tighter tolerances, and the baselines.

    Returns:
        ``(fidelity, pde_maps)``: ``{method: {"cosine", "js", "top_k": (L, B, H) arrays}}`` and the
        surrogate's maps ``(L, B, H, N, N)``.
    """
    L, H = test.num_layers, test.num_heads
    predictions = {"pde": predict_attention(params, surrogate, solver, test, batch_size)}
    # the same surrogate solved far more accurately: is the fidelity a solver artefact?
    if solver.adaptive:
        tight = dataclasses.replace(solver, rtol=solver.rtol / 100, atol=solver.atol / 100,
                                    max_steps=16 * solver.max_steps)
    else:
        tight = dataclasses.replace(solver, dt0=solver.dt0 / 4, max_steps=4 * solver.max_steps)
    predictions["pde_tight_solve"] = predict_attention(params, surrogate, tight, test, batch_size)
    for term in surrogate.ablations():  # each term of the surrogate switched off (`pdeflow.pde.terms`)
        predictions[terms.ablation_key(term)] = predict_attention(params, surrogate.without(term), solver, test,
                                                                  batch_size)
    predictions["uniform"] = metrics.uniform_maps(test.mask, L, H, causal=surrogate.causal)
    predictions["previous_layer"] = metrics.previous_layer_maps(test.attention)
    predictions["mean_training_map"] = metrics.mean_attention_maps(
        metrics.mean_attention(train.attention, train.mask), test.mask)
    return {name: metrics.attention_fidelity(test.attention, maps, test.mask, top_k)
            for name, maps in predictions.items()}, predictions["pde"]


@dataclasses.dataclass(frozen=True, eq=False)
class FitReport:
    """What a run produced: configs, fitted parameters, the fit's history, held-out metrics, and what the
    figures show (one held-out example and the coefficient curves)."""

    config: RunConfig
    params: dict
    fit: FitResult
    metrics: FitMetrics
    example: dict


def coefficient_curves(params, surrogate: SurrogateConfig, points: int = 121) -> dict:
    """``{"t": times, coefficient key: values}`` of every term's coefficient on ``points`` times from 0 to L."""
    return attention_pde.coefficient_curves(params, surrogate,
                                            np.linspace(0.0, surrogate.num_layers, points, dtype=np.float32))


def fit_and_measure(source: ModelSource | str, config: RunConfig | None = None, progress: bool = True,
                    checkpoint_dir=None, resume: bool = False) -> FitReport:
    """Trace ``source``'s transformer on its splits, fit the attention-PDE surrogate, and measure it on the
    held-out inputs beside the baselines and ablations.

    Args:
        source: a `pdeflow.sources.ModelSource`, the name of a registered one, or a checkpoint folder (which
            needs its inputs: build its `pdeflow.sources.CheckpointSource`, or call `fit_pretrained`).
        config: the run's settings (default: the source's ``preset_config("default", source)``); ``config.model``
            is set to the source's name, the surrogate's L, H, d and token grid to the source's shape.
        progress: show progress bars.
        checkpoint_dir, resume: passed to `pdeflow.fitting.fit.fit_surrogate` (checkpoints of the fit; the traces are
            recomputed, deterministically, on resume).
    """
    started = time.perf_counter()
    source = model_source_for(source)
    config = preset_config("default", source) if config is None else config
    source.check_data(config.data)
    config = dataclasses.replace(config, model=source.name,
                                 surrogate=surrogate_config_for(source.shape(), config.surrogate))
    check_memory(config.surrogate)  # before loading or tracing anything (`shape` reads no weights)
    splits = source.trace_splits(config.data, progress)
    blocks = source.block_weights() if config.fit.init == "transformer" else None
    return _fit_and_measure(config, splits, source.describe(), blocks, started, progress, checkpoint_dir, resume)


def fit_minilm(config: RunConfig | None = None, progress: bool = True, encoder: PretrainedEncoder | None = None,
               sentences: list[str] | None = None, checkpoint_dir=None, resume: bool = False) -> FitReport:
    """`fit_and_measure` all-MiniLM-L6-v2 (or ``encoder``) on pydoc sentences (or ``sentences``)."""
    return fit_and_measure(MiniLMSource(encoder, sentences), config, progress, checkpoint_dir, resume)


def fit_vit(config: RunConfig | None = None, progress: bool = True, vit: TrainedViT | None = None,
            checkpoint_dir=None, resume: bool = False) -> FitReport:
    """`fit_and_measure` the ViT on scikit-learn's digits (2-D patch-grid diffusion), measured on held-out test
    digits. ``vit`` defaults to `pdeflow.train.load_or_train_vit()` (cached)."""
    return fit_and_measure(ViTDigitsSource(vit), config, progress, checkpoint_dir, resume)


def fit_pretrained(folder, texts=None, images=None, config: RunConfig | None = None, progress: bool = True,
                   checkpoint_dir=None, resume: bool = False) -> FitReport:
    """`fit_and_measure` a checkpoint folder of your own (bert, roberta, distilbert, vit, gpt2) on ``texts`` (a
    file of one text per line or JSON lines with a "text" field, or a list of strings) or ``images`` (a folder
    of PNG / JPEG files, or ``[(name, PIL.Image)]``): what ``pdeflow fit --model FOLDER --texts FILE`` runs.
    ``config`` defaults to the folder's ``preset_config("default", ...)`` (split sizes fitted to the inputs)."""
    from pdeflow.sources import CheckpointSource

    return fit_and_measure(CheckpointSource(folder, texts=texts, images=images), config, progress, checkpoint_dir,
                           resume)


def fit_transformer(config: RunConfig | None = None, progress: bool = True, checkpoint_dir=None,
                    resume: bool = False, texts=None, images=None) -> FitReport:
    """`fit_and_measure` the model ``config.model``, registered or a checkpoint folder traced on ``texts`` or
    ``images`` (what ``pdeflow fit --model`` runs; ``config`` defaults to MiniLM's ``preset_config("default")``)."""
    config = preset_config("default") if config is None else config
    return fit_and_measure(model_source_for(config.model, texts=texts, images=images), config, progress,
                           checkpoint_dir, resume)


def starting_params(config: RunConfig, train: Trace, blocks: list[BlockWeights] | None) -> dict | None:
    """The fit's starting parameters: with ``config.fit.init == "transformer"`` the transformer's own weights
    through the projection onto the training embeddings' principal directions (`init_from_transformer`), else
    None (`fit_surrogate`'s seeded random start)."""
    if config.fit.init != "transformer":
        return None
    return init_from_transformer(jax.random.PRNGKey(config.fit.seed), config.surrogate, blocks,
                                 np.asarray(train.hidden[0])[np.asarray(train.mask)])


def _fit_and_measure(config: RunConfig, splits: Splits, describe: dict, blocks: list[BlockWeights] | None,
                     started: float, progress: bool, checkpoint_dir, resume: bool) -> FitReport:
    surrogate = config.surrogate
    traced = time.perf_counter()
    params = starting_params(config, splits.train, blocks)
    result = fit_surrogate(splits.train, splits.validation, surrogate, config.solver, config.fit, params=params,
                           progress=progress, checkpoint_dir=checkpoint_dir, resume=resume)
    fitted = time.perf_counter()
    fidelity, pde_maps = held_out_fidelity(result.params, surrogate, config.solver, splits.train, splits.test,
                                           config.top_k, min(config.fit.batch_size, config.data.num_test))
    times, pde_entropy = attention_entropy_along_depth(result.params, surrogate, config.solver, splits.test,
                                                       batch_size=min(config.fit.batch_size, config.data.num_test))
    test_mask = np.asarray(splits.test.mask)
    transformer_entropy = np.nansum(np.asarray(attention_entropy(splits.test.attention, test_mask)), axis=(1, 3)) \
        / test_mask.sum()  # (L, H): mean over every real query row of every held-out input
    example_index = int(np.argsort(np.asarray(splits.test.mask).sum(1), kind="stable")[len(splits.test_tokens) // 2])
    n = int(np.asarray(splits.test.mask)[example_index].sum())
    pde_cosine = fidelity["pde"]["cosine"]  # (L, B, H)
    report_metrics = FitMetrics.measured(
        model=describe["model"], text=describe["inputs"],
        splits=SplitSizes(int(splits.train.mask.shape[0]), config.data.num_validation, config.data.num_test),
        # the readout (r -> d) is trained only by the hidden-state term
        parameters=ParameterCounts(surrogate=parameter_count(result.params),
                                   surrogate_used_by_attention_fit=parameter_count(
                                       {k: v for k, v in result.params.items()
                                        if k != "readout" or config.fit.hidden_weight > 0}),
                                   **describe["parameters"]),
        source_details={k: v for k, v in describe.items() if k not in ("model", "inputs", "parameters")},
        fidelity=fidelity, fit=FitSummary.from_result(result), preset=config.preset,
        seconds=Timings(trace=traced - started, fit=fitted - traced, evaluate=time.perf_counter() - fitted,
                        total=time.perf_counter() - started, machine=machine.label()),
        coefficients=coefficient_curves(result.params, surrogate),
        attention_entropy=AttentionEntropy("bits, mean over real query rows of the held-out inputs, per head",
                                           transformer_entropy, times, pde_entropy),
        notes=["all fidelity figures are on held-out test inputs (never used to fit or to stop early)",
               "pde_without_<term>: the fitted surrogate with that term switched off, not refitted",
               "pde_tight_solve: the fitted surrogate solved with rtol and atol 100x smaller (adaptive solvers) "
               "or a 4x smaller step (fixed-step solvers)",
               "previous_layer has no prediction for block 0 (null)",
               "js is the mean row-wise Jensen-Shannon divergence in bits; cosine is over the real n x n block",
               "attention map of block l (0-based) is compared with the PDE kernel at t = l on u(l)"])
    example = {"sentence": splits.test_sentences[example_index], "tokens": list(splits.test_tokens[example_index]),
               "transformer": np.asarray(splits.test.attention)[:, example_index, :, :n, :n],
               "pde": pde_maps[:, example_index, :, :n, :n],
               "cosine": pde_cosine[:, example_index, :]}
    return FitReport(config, result.params, result, report_metrics, example)
