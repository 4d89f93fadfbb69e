"""Model sources (`pdeflow.sources`): the registry, the built-in sources' shapes, and a new source added in one
place running through the whole pipeline and the CLI."""


import numpy as np
import pytest

from pdeflow import sources
from pdeflow.fitting.fit import FitConfig
from pdeflow.models.parameters import parameter_count
from pdeflow.pde import SolverConfig, SurrogateConfig
from pdeflow.pipeline import RunConfig, fit_and_measure, preset_config
from pdeflow.sources import DataConfig, ModelShape, ModelSource, Splits, model_source, register_source
from tests.tiny_teacher import TEACHER, tiny_traces


class TinyBertSource(ModelSource):
    """The tests' tiny random BERT on random token sequences: everything a new model needs, in one class."""

    name = "tiny-bert"
    modality = "text"
    block_input_norm = "none"

    def shape(self):
        return ModelShape(TEACHER.num_layers, TEACHER.num_heads, TEACHER.hidden_size, TEACHER.head_dim)

    def trace_splits(self, data, progress=False):
        train, validation, test = tiny_traces()
        tokens = tuple(tuple(f"t{i}" for i in range(int(m.sum()))) for m in test.mask)
        return Splits(train, validation, test, tokens, tuple(" ".join(t) for t in tokens))

    def block_weights(self):
        raise NotImplementedError("the tiny teacher's weights are not kept; fit it from a random start")

    def describe(self):
        return {"model": "tiny random BERT", "inputs": "random token sequences",
                "parameters": {"transformer": 1, "transformer_blocks": 1}, "vocabulary": TEACHER.vocab_size}


@pytest.fixture
def tiny_source():
    register_source(TinyBertSource.name, TinyBertSource)
    yield TinyBertSource.name
    sources.SOURCES.pop(TinyBertSource.name)


def test_unknown_models_and_double_registrations_are_refused():
    with pytest.raises(ValueError, match="unknown model 'gpt'.*minilm"):
        model_source("gpt")
    with pytest.raises(ValueError, match="unknown model"):
        RunConfig(model="gpt")
    with pytest.raises(ValueError, match="already registered"):
        register_source("minilm", sources.MiniLMSource)
    with pytest.raises(ValueError, match="non-empty name"):
        register_source("", sources.MiniLMSource)


def test_built_in_shapes_are_read_without_loading_weights():
    vit = model_source("vit-digits")
    assert vit.shape() == ModelShape(6, 4, 96, 24, grid=(4, 4), prefix_tokens=1)
    assert vit._vit is None  # nothing was loaded or trained
    assert vit.all_training_data().num_train + DataConfig().num_validation == 1347
    with pytest.raises(ValueError, match="extra_training_sentences"):
        vit.check_data(DataConfig(extra_training_sentences=True))
    text = model_source("minilm")
    assert text.shape() == ModelShape(6, 12, 384, 32) and text._encoder is None
    assert text.all_training_data().extra_training_sentences


def test_a_registered_source_runs_through_the_pipeline_presets_and_cli(tiny_source):
    config = RunConfig(model=tiny_source, data=DataConfig(num_train=48, num_validation=16, num_test=32),
                       surrogate=SurrogateConfig(width=8, key_dim=4, value_rank=2, mlp_width=8, num_knots=2),
                       solver=SolverConfig("heun", adaptive=False, dt0=0.5, adjoint="stored"),  # quick to compile
                       fit=FitConfig(steps=4, batch_size=16, eval_every=2, patience=0))
    report = fit_and_measure(tiny_source, config, progress=False)
    assert report.config.model == tiny_source and report.config.surrogate.num_layers == TEACHER.num_layers
    held_out = report.metrics.held_out
    assert set(held_out) >= {"pde", "pde_tight_solve", "pde_without_attention", "pde_without_diffusion",
                             "pde_without_residual", "uniform", "previous_layer", "mean_training_map"}
    assert all(np.isfinite(held_out["pde"]["cosine"]))
    assert report.metrics.model == "tiny random BERT"
    assert report.metrics.source_details == {"vocabulary": TEACHER.vocab_size}  # the source's own record
    assert report.metrics.to_json()["vocabulary"] == TEACHER.vocab_size
    assert report.metrics.parameters.surrogate == parameter_count(report.params)
    # the presets and the CLI know it from the registry alone
    faithful = preset_config("faithful", tiny_source)
    assert (faithful.surrogate.width, faithful.surrogate.key_dim) == (TEACHER.hidden_size, TEACHER.head_dim)
    from pdeflow.cli import parse_args, run_config_from_args

    args = parse_args(["fit", "--model", tiny_source, "--steps", "3"])
    assert run_config_from_args(args).model == tiny_source and run_config_from_args(args).fit.steps == 3


def test_the_python_api_and_the_source_agree_on_the_surrogates_shape():
    from pdeflow.pipeline import surrogate_config_for, vit_surrogate_for

    vit = model_source("vit-digits")
    shape = vit.shape()
    from pdeflow.train.vit import ViTTrainConfig

    assert surrogate_config_for(shape, SurrogateConfig()) == vit_surrogate_for(ViTTrainConfig().model,
                                                                               SurrogateConfig())
    assert surrogate_config_for(shape, SurrogateConfig(num_knots=12)).num_knots == 12  # a multiple of L
    assert surrogate_config_for(shape, SurrogateConfig(num_layers=12, num_knots=7)).num_knots == 6  # capped at L
