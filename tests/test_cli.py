import dataclasses
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pdeflow import cli, report
from pdeflow.pde import SolverConfig
from pdeflow.pipeline import RunConfig

TINY = ["--num-train", "8", "--num-validation", "4", "--num-test", "4", "--max-tokens", "16", "--steps", "2",
        "--eval-every", "1", "--batch-size", "4", "--width", "8", "--key-dim", "4", "--mlp-width", "8",
        "--value-rank", "2", "--solver", "heun", "--no-adaptive", "--dt0", "1.0", "--adjoint", "stored",
        "--no-progress"]  # the stored adjoint: the same gradients, and far quicker to compile than the recursive one


def test_cli_defaults_are_the_python_api_defaults():
    from pdeflow.pipeline import preset_config

    # the parser's own defaults are RunConfig's; `pdeflow fit` parses over the default preset of its --model
    assert cli.run_config_from_args(cli.build_parser().parse_args(["fit"])) == RunConfig(preset="default")
    for argv, model in ((["fit"], "minilm"), (["fit", "--model", "vit-digits"], "vit-digits")):
        assert cli.run_config_from_args(cli.parse_args(argv)) == preset_config("default", model)


def test_cli_options_reach_the_config():
    args = cli.build_parser().parse_args(
        ["fit", "--width", "32", "--no-adaptive", "--terms", "attention", "--seed", "3"])
    config = cli.run_config_from_args(args)
    assert config.surrogate.width == 32 and config.solver.adaptive is False
    assert config.surrogate.terms == ("attention",) and config.fit.seed == 3


def test_help_documents_every_option():
    out = subprocess.run([sys.executable, "-m", "pdeflow", "fit", "--help"], capture_output=True, text=True, check=True)
    for flag in ("--out", "--width", "--solver", "--rtol", "--hidden-weight", "--num-test", "--split-seed",
                 "--resume", "--checkpoints", "--checkpoint-every", "--devices", "--host-devices", "--model"):
        assert flag in out.stdout
    assert "attention-PDE" in out.stdout
    # the defaults shown are the default preset's, which `pdeflow fit` runs, not the bare config classes'
    steps = re.search(r"--steps STEPS\s+maximum\s+number\s+of\s+optimiser\s+steps\.\s+\(default:\s+(\d+)\)",
                      out.stdout)  # whitespace as the terminal's width wraps it
    assert steps and int(steps.group(1)) == cli.preset_config("default").fit.steps == 800
    backward = re.search(r"\n  --field-backward \{autodiff,custom\}\n.*?\(default:\s+(\w+)\)", out.stdout, re.S)
    assert backward and backward.group(1) == "custom"
    vit = subprocess.run([sys.executable, "-m", "pdeflow", "fit", "--model", "vit-digits", "--help"],
                         capture_output=True, text=True, check=True).stdout
    buckets = re.search(r"\n  --length-buckets LENGTH_BUCKETS\n.*?\(default:\s+(\d+)\)", vit, re.S)
    assert buckets and buckets.group(1) == "1"  # the ViT's preset: a patch grid has one length


def test_every_option_gets_its_whole_attribute_text():
    # an attribute's continuation line that contains "word:" must not start a new attribute (it once cut the
    # help of --adjoint off mid-sentence)
    assert cli.field_help(SolverConfig)["adjoint"].endswith("each recorded by solving again; the default preset's).")
    for cls, skip in cli.SECTIONS.values():
        helps = cli.field_help(cls)
        for field in dataclasses.fields(cls):
            if field.name not in skip:
                assert helps[field.name].endswith((".", ")")), (cls.__name__, field.name)


def test_tiny_fit_writes_every_output(tmp_path, capsys):
    out = tmp_path / "run"
    root = logging.StreamHandler(sys.stderr)  # as absl gives the root logger (orbax imports it): lines not twice
    logging.getLogger().addHandler(root)
    try:
        assert cli.main(["fit", "--out", str(out), *TINY]) == 0
    finally:
        logging.getLogger().removeHandler(root)
    names = {p.name for p in out.iterdir()}
    assert {"metrics.json", "config.json", "params.safetensors", "summary.md", "fidelity.png", "attention_maps.png",
            "coefficients.png", "loss.png"} <= names
    metrics = json.loads((out / "metrics.json").read_text())
    for method in ("pde", "pde_without_attention", "uniform", "previous_layer", "mean_training_map"):
        assert len(metrics["held_out"][method]["cosine"]) == 6
    assert metrics["held_out"]["previous_layer"]["cosine"][0] is None
    parameters = metrics["parameters"]
    assert parameters["transformer"] > 2e7
    # the default fits the hidden states too, so the readout (8*384 + 384 numbers) is part of the fit
    assert parameters["surrogate"] == parameters["surrogate_used_by_attention_fit"]
    assert json.loads((out / "config.json").read_text())["fit"]["init"] == "transformer"
    params, surrogate, solver = report.load_surrogate(out)
    assert surrogate.width == 8 and surrogate.num_layers == 6 and solver.solver == "heun"
    assert params["kernel"]["query"].shape == (6, 12, 8, 4)
    captured = capsys.readouterr()
    assert "| attention-PDE |" in captured.out
    # no progress bar: one line on stderr per validation (both steps here), for a log file
    assert [line.split(" pdeflow: ")[1].split(",")[0] for line in captured.err.splitlines()
            if " pdeflow: fit: step" in line] == ["fit: step 1 of 2", "fit: step 2 of 2"]
    assert captured.err.count("fit: step 1 of 2") == 1  # once, whatever handlers the root logger has
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders left behind
    assert not (tmp_path / "run.checkpoints").exists()  # the fit's checkpoints go once the report is complete


def test_existing_output_is_not_overwritten_without_asking(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    assert cli.main(["fit", "--out", str(out), *TINY]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == "{}"


def test_unwritable_output_is_reported_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert cli.main(["fit", "--out", str(blocker / "run"), *TINY]) == 2
    assert "writable --out" in capsys.readouterr().err


def test_a_failing_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    class Stub:
        config = RunConfig()
        params = {"a": np.zeros(2)}
        metrics = {"x": 1}
        example = {}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "summary_markdown", broken)  # fails after metrics and params are staged
    with pytest.raises(RuntimeError, match="disk full"):
        report.write_report(Stub(), tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


def test_train_cli_defaults_are_the_python_api_defaults():
    from pdeflow.train.vit import ViTTrainConfig

    args = cli.build_parser().parse_args(["train", "vit-digits"])
    assert cli.vit_train_config_from_args(args) == ViTTrainConfig()
    args = cli.build_parser().parse_args(["train", "vit-digits", "--hidden-size", "32", "--epochs", "3"])
    config = cli.vit_train_config_from_args(args)
    assert config.model.hidden_size == 32 and config.epochs == 3


TINY_VIT = ["--epochs", "1", "--hidden-size", "8", "--num-layers", "2", "--num-heads", "2", "--mlp-size", "8",
            "--no-progress"]


def test_train_then_fit_a_vit_from_the_cli(tmp_path, capsys, monkeypatch):
    from pdeflow import pipeline
    from pdeflow.train.vit import load_vit

    folder = tmp_path / "vit"
    assert cli.main(["train", "vit-digits", "--out", str(folder), *TINY_VIT]) == 0
    assert "test accuracy" in capsys.readouterr().out
    vit = load_vit(folder)
    assert vit.config.model.hidden_size == 8 and len(vit.history) == 1
    assert cli.main(["train", "vit-digits", "--out", str(folder), *TINY_VIT]) == 2  # no silent overwrite
    assert "--overwrite" in capsys.readouterr().err

    # `fit --model vit-digits` reaches fit_and_measure with the ViT's source and the CLI's config (the fit itself
    # is tested in test_pipeline)
    from pdeflow.pipeline import preset_config

    calls = []

    def fake_fit_and_measure(source, config, progress, checkpoint_dir, resume):
        calls.append(config)
        assert source.name == "vit-digits"
        raise ValueError("stop here")

    monkeypatch.setattr(pipeline, "fit_and_measure", fake_fit_and_measure)
    out = tmp_path / "fit"
    assert cli.main(["fit", "--model", "vit-digits", "--out", str(out), "--width", "8", "--no-progress"]) == 2
    assert "stop here" in capsys.readouterr().err and not out.exists()
    default = preset_config("default", "vit-digits")
    assert calls == [dataclasses.replace(default, surrogate=dataclasses.replace(default.surrogate, width=8))]


def test_a_preset_sets_the_defaults_and_explicit_options_win():
    from pdeflow.pipeline import preset_config

    argv = ["fit", "--preset", "faithful", "--model", "vit-digits", "--steps", "500", "--width", "48"]
    args = cli.parse_args(argv)
    config = cli.run_config_from_args(args)
    preset = preset_config("faithful", "vit-digits")
    assert config == dataclasses.replace(preset, fit=dataclasses.replace(preset.fit, steps=500),
                                         surrogate=dataclasses.replace(preset.surrogate, width=48))
    assert config.preset == "faithful" and config.surrogate.varying == ("value", "residual")
    # a boolean the preset turns off (text: the kernel undecayed) is turned back on by its flag
    text = cli.run_config_from_args(cli.parse_args(["fit", "--preset", "faithful", "--decay-kernel"]))
    assert (text.fit.weight_decay, text.fit.decay_kernel) == (0.1, True)
    assert not cli.run_config_from_args(cli.parse_args(["fit", "--preset", "faithful"])).fit.decay_kernel


def test_a_checkpoint_folder_the_user_had_is_refused_before_any_work(tmp_path, capsys):
    precious = tmp_path / "precious"
    (precious / "sub").mkdir(parents=True)
    (precious / "thesis.txt").write_text("thesis")
    for folder in (precious, Path("/dev/null"), tmp_path / "run"):
        assert cli.main(["fit", "--out", str(tmp_path / "run"), "--checkpoints", str(folder), *TINY]) == 2
        assert "checkpoint folder" in capsys.readouterr().err
    assert (precious / "thesis.txt").read_text() == "thesis" and (precious / "sub").is_dir()
    assert not (tmp_path / "run").exists()


def test_a_failed_fit_leaves_no_folders_it_created(tmp_path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("thesis")
    out = tmp_path / "new" / "deeper" / "run"
    assert cli.main(["fit", "--out", str(out), "--checkpoints", str(precious), *TINY]) == 2
    assert "checkpoint folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]  # no new/, no lock files
