"""``pdeflow fit --model FOLDER --texts FILE | --images FOLDER`` and ``pdeflow lens --model FOLDER --texts FILE``
end to end, on tiny random checkpoints of every supported type that pdeflow has never seen (saved here with
``transformers``), and the bad inputs a user can give: each fails with one line and leaves nothing behind."""

import json

import numpy as np
import pytest

from pdeflow import cli
from tests.sources.tiny_checkpoints import TEXTS, write_images, write_texts

pytest.importorskip("transformers")

TYPES = ("bert", "roberta", "distilbert", "gpt2", "vit")
# the cheapest fit that still runs every stage; the three text encoders share one surrogate (and its compiled
# solves), gpt2 (causal chain) and vit (patch grid) one each
TINY = ["--num-train", "8", "--num-validation", "4", "--num-test", "4", "--max-tokens", "16", "--steps", "1",
        "--eval-every", "1", "--batch-size", "4", "--width", "8", "--key-dim", "4", "--mlp-width", "8",
        "--value-rank", "2", "--terms", "attention", "--solver", "euler", "--no-adaptive", "--dt0", "1.0",
        "--adjoint", "stored", "--hidden-weight", "0", "--init", "random", "--patience", "0", "--no-progress"]
BASELINES = ("pde", "pde_tight_solve", "pde_without_attention", "uniform", "previous_layer", "mean_training_map")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from tests.sources.tiny_checkpoints import save_tiny_checkpoint

    root = tmp_path_factory.mktemp("byo")
    folders = {t: save_tiny_checkpoint(t, root / t) for t in TYPES}
    return {"root": root, "texts": write_texts(root / "texts.txt"), "images": write_images(root / "images"),
            **folders}


def _nothing_left(where, out):
    assert not out.exists() and not out.with_name(out.name + ".checkpoints").exists()
    assert not [p for p in where.iterdir() if p.name.startswith(".")]  # no staging folders


@pytest.mark.slow
@pytest.mark.parametrize("model_type", TYPES)
def test_fit_on_a_checkpoint_of_each_type_writes_the_whole_report(inputs, model_type, tmp_path, capsys,
                                                                   monkeypatch):
    from pdeflow import metrics as metrics_module

    uniform, calls = metrics_module.uniform_maps, []
    monkeypatch.setattr(metrics_module, "uniform_maps", lambda *a, **k: calls.append(k) or uniform(*a, **k))
    out = tmp_path / "run"
    given = ["--images", str(inputs["images"])] if model_type == "vit" else ["--texts", str(inputs["texts"])]
    assert cli.main(["fit", "--model", str(inputs[model_type]), *given, "--out", str(out), *TINY]) == 0, \
        capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    for method in BASELINES:
        cosine = np.array(metrics["held_out"][method]["cosine"], float)
        assert cosine.shape == (2,) and np.isfinite(cosine[1:]).all() and (method == "previous_layer") \
            == np.isnan(cosine[0]), method
    record = metrics["checkpoint"]
    assert record["model_type"] == model_type and record["folder"] == str(inputs[model_type])
    assert record["input_count"] == 30 and record["split"]["seed"] == config["data"]["split_seed"] == 0
    assert [len(record["split"][k]) for k in ("train", "validation", "test")] == [8, 4, 4]
    assert config["model"] == str(inputs[model_type]) and config["surrogate"]["num_layers"] == 2
    assert config["surrogate"]["causal"] == (model_type == "gpt2") == calls[-1]["causal"]  # the uniform baseline
    assert (config["surrogate"]["grid"], config["surrogate"]["prefix_tokens"]) == \
        (([2, 2], 1) if model_type == "vit" else ([], 0))
    if model_type == "vit":
        assert all(name.startswith("image_") for name in record["split"]["test"])
    assert {"summary.md", "params.safetensors", "fidelity.png"} <= {p.name for p in out.iterdir()}
    assert not out.with_name("run.checkpoints").exists()  # removed once the report is complete
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folders


def test_bad_inputs_fail_with_one_line_and_leave_nothing(inputs, tmp_path, capsys):
    out = tmp_path / "run"
    bert, texts = str(inputs["bert"]), str(inputs["texts"])
    empty = write_texts(tmp_path / "empty.txt", [])
    not_a_checkpoint = tmp_path / "photos"
    not_a_checkpoint.mkdir()
    (not_a_checkpoint / "notes.txt").write_text("hello")
    cases = [
        (["--model", bert, "--texts", str(empty)], "empty.txt holds no text"),
        (["--model", bert], "pass the texts to trace it on with --texts FILE"),
        (["--model", bert, "--images", str(inputs["images"])], "reads texts, not images"),
        (["--model", str(inputs["vit"]), "--texts", texts], "reads images, not texts"),
        (["--model", str(inputs["vit"])], "pass a folder of PNG or JPEG images to trace it on with --images"),
        (["--model", "bert-base-uncased", "--texts", texts], "download the checkpoint with your own tools"),
        (["--model", "minilm", "--texts", texts], "brings its own inputs"),
        (["--model", str(not_a_checkpoint), "--texts", texts], "photos"),
        # fails while tracing, after the output and checkpoint folders were claimed
        (["--model", bert, "--texts", texts, "--min-tokens", "13"], "has 10 texts of at least 13 tokens"),
    ]
    for argv, message in cases:
        assert cli.main(["fit", *argv, "--out", str(out), *TINY]) == 2, argv
        error = capsys.readouterr().err
        assert error.startswith("pdeflow: error:") and message in error and error.count("\n") == 1, (argv, error)
        _nothing_left(tmp_path, out)


def test_lens_of_a_gpt2_checkpoint_reads_its_own_head(inputs, tmp_path, capsys):
    out = tmp_path / "lens"
    assert cli.main(["lens", "--model", str(inputs["gpt2"]), "--texts", str(inputs["texts"]), "--out", str(out),
                     "--max-tokens", "16", "--no-progress"]) == 0, capsys.readouterr().err
    result = json.loads((out / "results.json").read_text())
    assert {p.name for p in out.iterdir()} == {"results.json", "summary.md", "profile.png"}
    shannon = np.array(result["profile"]["1.0"])
    assert shannon.shape == (3,) and np.all((shannon >= 0) & (shannon <= np.log2(257) + 1e-4))
    assert result["texts"]["count"] == len(TEXTS) and result["lens_final_layer_max_abs_difference"] < 1e-3
    lengths = [len(t.encode()) for t in TEXTS]  # the tiny byte-level BPE has no merges: a token per byte
    assert result["truncated"] == sum(n > 16 for n in lengths) and result["tokens"] == sum(min(n, 16) for n in lengths)
    assert result["profile"]["inf"][1] <= shannon[1] <= result["profile"]["0.5"][1]  # Rényi orders in order
    for argv, message in ((["--model", str(inputs["bert"]), "--texts", str(inputs["texts"])], "gpt2 checkpoints only"),
                          (["--texts", str(inputs["texts"])], "needs both --model FOLDER and --texts FILE")):
        assert cli.main(["lens", *argv, "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def test_the_python_api_mirrors_the_cli(inputs, tmp_path):
    from pdeflow import fit_pretrained, load_pretrained

    folder = inputs["distilbert"]
    # the CLI's settings (so the surrogate's solves compiled for the CLI runs are reused), texts given in Python
    config = cli.run_config_from_args(cli.parse_args(["fit", "--model", str(folder), "--texts", str(inputs["texts"]),
                                                      *TINY]))
    report = fit_pretrained(folder, texts=TEXTS, config=config, progress=False)
    assert report.config.model == str(folder) and report.metrics.text == "30 texts given in Python"
    assert report.metrics.parameters.transformer == load_pretrained(folder).parameters()["transformer"]
    assert np.isfinite(report.metrics.held_out["pde"]["cosine"]).all()
    split = report.metrics.source_details["checkpoint"]["split"]
    assert [len(split[k]) for k in ("train", "validation", "test")] == [8, 4, 4]
    # images given in Python, as (name, PIL image) pairs
    from pdeflow.data.user_inputs import read_images

    vit = inputs["vit"]
    config = cli.run_config_from_args(cli.parse_args(["fit", "--model", str(vit), "--images", str(inputs["images"]),
                                                      *TINY]))
    report = fit_pretrained(vit, images=read_images(inputs["images"])[:20], config=config, progress=False)
    assert report.metrics.text == "20 images given in Python" and report.config.surrogate.grid == (2, 2)
    held_out = report.metrics.source_details["checkpoint"]["split"]["test"]
    assert len(held_out) == 4 and set(held_out) <= {f"image_{i:02d}.png" for i in range(20)}
