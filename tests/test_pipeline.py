"""The main job on the image side: fit the surrogate to a (tiny) ViT on the digits, measured on held-out digits."""

import dataclasses
import json

import numpy as np
import pytest

from pdeflow.fitting.fit import FitConfig
from pdeflow.models.vit import ViTConfig
from pdeflow.pde import SolverConfig, SurrogateConfig
from pdeflow.pipeline import DataConfig, RunConfig, fit_vit, trace_digit_splits
from pdeflow.report import write_report
from pdeflow.train.vit import ViTTrainConfig, train_vit


@pytest.fixture(scope="module")
def tiny_vit():
    return train_vit(ViTTrainConfig(model=ViTConfig(hidden_size=16, num_layers=2, num_heads=2, mlp_size=32), epochs=2,
                                    warmup_steps=5))


CONFIG = RunConfig(model="vit-digits", data=DataConfig(num_train=32, num_validation=16, num_test=16),
                   surrogate=SurrogateConfig(width=8, key_dim=4, mlp_width=8, num_knots=2),
                   solver=SolverConfig(solver="heun", adaptive=False, dt0=0.5, adjoint="stored"),  # quick to compile
                   fit=FitConfig(steps=6, batch_size=16, eval_every=3, patience=0))


def test_digit_splits_keep_test_images_held_out(tiny_vit):
    splits = trace_digit_splits(tiny_vit, CONFIG.data)
    assert splits.train.hidden.shape[1:3] == (32, 17) and splits.test.attention.shape[1] == 16
    assert len(splits.test_tokens[0]) == 17 and splits.test_tokens[0][0] == "[CLS]"
    assert all(s.startswith("digit ") for s in splits.test_sentences)


def test_fit_vit_reports_the_pde_beside_every_baseline_and_ablation(tiny_vit, tmp_path):
    report = fit_vit(CONFIG, progress=False, vit=tiny_vit)
    surrogate = report.config.surrogate
    assert surrogate.grid == (4, 4) and surrogate.prefix_tokens == 1 and surrogate.num_heads == 2
    held_out = report.metrics.held_out
    assert set(held_out) >= {"pde", "pde_without_attention", "pde_without_diffusion", "pde_without_residual",
                             "uniform", "previous_layer", "mean_training_map"}
    # block 0 reads u(0), which the dynamics do not touch: every ablation agrees there, and differs later
    for term in ("attention", "diffusion", "residual"):
        assert held_out[f"pde_without_{term}"]["cosine"][0] == pytest.approx(held_out["pde"]["cosine"][0])
    assert held_out["pde_without_attention"]["cosine"][1] != pytest.approx(held_out["pde"]["cosine"][1])
    assert report.metrics.vit["test_accuracy"] == tiny_vit.test_accuracy
    assert all(0.0 <= v <= 1.0 for v in held_out["pde"]["cosine"])
    entropy = report.metrics.attention_entropy  # the transformer's per block, the PDE's along depth-time
    assert np.shape(entropy.transformer) == (2, 2)  # (L, H)
    assert np.shape(entropy.pde) == (len(entropy.pde_t), 2) and entropy.pde_t[-1] == 2.0
    assert np.all(np.asarray(entropy.transformer) <= np.log2(17) + 1e-5)
    out = write_report(report, tmp_path / "vit")
    assert {"metrics.json", "summary.md", "params.safetensors", "config.json", "attention_maps.png",
            "attention_entropy.png"} <= {
        p.name for p in out.iterdir()}
    from pdeflow.report import load_surrogate

    params, loaded, _ = load_surrogate(out)
    assert loaded == surrogate  # grid and prefix tokens survive the JSON round trip
    # the wall time names the machine it was measured on, in metrics.json and in summary.md
    machine = json.loads((out / "metrics.json").read_text())["seconds"]["machine"]
    assert machine and f"s) on {machine}." in (out / "summary.md").read_text()
    assert np.asarray(params["kernel"]["position_bias"]).shape[-1] == surrogate.num_position_buckets


def test_run_config_names_the_model():
    with pytest.raises(ValueError, match="unknown model"):
        RunConfig(model="gpt")
    assert dataclasses.replace(CONFIG, model="minilm").model == "minilm"



def test_a_fit_started_from_the_vit_keeps_block_0_exact_when_its_kernel_is_held(tiny_vit):
    # full width (r = d = 16), key and value rank = the heads' width (8): the kernel starts as the blocks' own;
    # block 0 reads u(0) = the embedding, so with the kernel held its maps stay the ViT's
    config = dataclasses.replace(
        CONFIG, surrogate=SurrogateConfig(width=16, key_dim=8, value_rank=8, mlp_width=8, num_knots=2,
                                          state_norm="layer", varying=("value", "residual")),
        solver=SolverConfig("rk4", adaptive=False, dt0=0.5, adjoint="stored"),
        fit=dataclasses.replace(CONFIG.fit, init="transformer", shooting_steps=3, kernel_lr_scale=0.0,
                                weight_decay=0.0))
    report = fit_vit(config, progress=False, vit=tiny_vit)
    held_out = report.metrics.held_out
    assert held_out["pde"]["cosine"][0] > 0.9999
    assert held_out["pde"]["cosine"][1] > held_out["mean_training_map"]["cosine"][1]
    assert "pde_tight_solve" in held_out  # a 4x finer fixed step
    assert [h["phase"] for h in report.fit.history] == ["shooting", "free"]


def test_presets_are_full_width_for_each_model(monkeypatch):
    from pdeflow import machine
    from pdeflow.pipeline import preset_config

    for model, norm in (("minilm", "none"), ("vit-digits", "layer")):  # the default: width 64, from the model
        default = preset_config("default", model)
        # the field's hand-written backward: the same values as autodiff's, a faster fit
        assert default.surrogate == dataclasses.replace(SurrogateConfig(), state_norm=norm, field_backward="custom")
        assert (default.fit.init, default.fit.hidden_weight, default.model, default.preset) == (
            "transformer", 1.0, model, "default")
        # 800 steps; length buckets where the tokens are a chain (a patch grid's count is fixed)
        assert (default.fit.steps, default.fit.length_buckets) == (800, 4 if model == "minilm" else 1)
        # adaptive tsit5 differentiated by its discrete adjoint (diffrax's values, the recursive adjoint's gradient)
        assert default.solver == SolverConfig(adjoint="discrete") and default.data == DataConfig()
    text, image = preset_config("faithful", "minilm"), preset_config("faithful", "vit-digits")
    assert (text.surrogate.width, text.surrogate.key_dim, text.surrogate.state_norm) == (384, 32, "none")
    assert (image.surrogate.width, image.surrogate.key_dim, image.surrogate.state_norm) == (96, 24, "layer")
    assert text.fit.init == image.fit.init == "transformer" and image.fit.length_buckets == 1
    # fixed RK4 steps differentiated by their discrete adjoint (the stored adjoint's gradient to round-off, faster)
    assert (text.solver.solver, text.solver.adaptive, text.solver.adjoint) == ("rk4", False, "discrete")
    assert text.solver.dt0 == 0.5 and image.solver == dataclasses.replace(text.solver, dt0=0.25)
    assert text.surrogate.depth_time == image.surrogate.depth_time == "blockwise"
    # text: most steps on twice the step, the last on the step it is measured with; images: all on their own step
    assert (text.fit.coarse_steps, text.fit.steps, image.fit.coarse_steps) == (1640, 1790, 0)
    assert image.fit.steps == 8000  # twice 4,000: the ViT's worst block 0.977 -> 0.981
    # text: each interval's token mixing, then its residual MLP; images: both at once
    assert (text.surrogate.splitting, image.surrogate.splitting) == ("lie", "none")
    # each interval's maps held at those of its starting state (with the field's autodiff backward, which they need)
    assert text.surrogate.held_maps and image.surrogate.held_maps
    assert text.surrogate.field_backward == image.surrogate.field_backward == "autodiff"
    assert (text.surrogate.mlp_width, image.surrogate.mlp_width) == (768, 192)  # twice the width
    # text: weight decay on the dynamics alone (the kernel, started from the transformer's, undecayed); images none
    assert (text.fit.weight_decay, image.fit.weight_decay) == (0.1, 0.0)
    assert not text.fit.decay_kernel and not image.fit.decay_kernel
    # text: the field's products in bfloat16 where the machine multiplies bfloat16 faster (MiniLM in 25 minutes
    # instead of 37 on an Intel host with AMX), float32 where it does not (the coarse step x0.64 on an AVX2 host);
    # images float32
    for fast, dtype in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(machine, "fast_bfloat16", lambda fast=fast: fast)
        assert (preset_config("faithful", "minilm").surrogate.compute_dtype,
                preset_config("faithful", "vit-digits").surrogate.compute_dtype) == (dtype, "float32")
    monkeypatch.undo()
    assert text.surrogate.compute_dtype == ("bfloat16" if machine.fast_bfloat16() else "float32")
    with pytest.raises(ValueError, match="--no-adaptive"):  # refused before anything is traced
        dataclasses.replace(text, solver=SolverConfig())
    assert text.data.extra_training_sentences and not image.data.extra_training_sentences
    assert image.data.num_train + image.data.num_validation == 1347  # every training digit of the ViT's split
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("exact")
