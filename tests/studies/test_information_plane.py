"""The information plane: estimates on layers of known content, and the ViT study end to end (tiny)."""

import json
import math

import numpy as np
import pytest

from pdeflow import cli
from pdeflow.studies.information_plane import InfoPlaneConfig, layer_information, principal_components
from pdeflow.train.vit import ViTTrainConfig


def test_principal_components_are_standardised_and_ordered():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(300, 5)) * np.array([10.0, 3.0, 1.0, 0.1, 0.01])
    pcs = principal_components(values, 2)
    np.testing.assert_allclose(pcs.std(0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(abs(np.corrcoef(pcs[:, 0], values[:, 0])[0, 1]), 1.0, atol=1e-3)
    assert np.all(principal_components(np.ones((10, 3)), 2) == 0)  # no variance: stays zero


def test_a_layer_that_carries_the_label_has_high_i_t_y_and_one_that_does_not_has_little():
    rng = np.random.default_rng(0)
    n = 600
    labels = rng.integers(0, 4, n)  # H(Y) = 2 bits
    images = rng.normal(size=(n, 4, 4))
    noise = rng.normal(size=(n, 3, 8))  # unrelated to the labels
    carrier = np.zeros((n, 3, 8))
    carrier[:, 0, 0] = 3.0 * labels + 0.1 * rng.normal(size=n)  # the label, plainly
    constant = np.ones((n, 3, 8))
    hidden = np.stack([constant, noise, carrier])
    plane = layer_information(hidden, images, labels, InfoPlaneConfig(components=1, bins=12, k=5))
    for name in ("binning", "ksg"):
        assert plane[name][2, 1] > 1.8, name  # I(T; Y) close to H(Y) = 2 bits
        assert plane[name][1, 1] < 0.25, name  # noise: no information on Y
        assert plane[name][0, 1] < 0.05, name  # a constant layer knows nothing
    for name in ("binning", "ksg"):
        assert np.all(plane[name][:, 2] < 0.3), name  # shuffled labels: only the estimator's small bias
    assert plane["binning"][0, 0] == 0.0  # H(bin(T)) of a constant
    assert plane["binning"][1, 0] > 2.0  # 12 bins of a Gaussian: about 3 bits
    assert np.all(plane["binning"][:, 0] <= math.log2(n) + 1e-9)


def test_info_cli_defaults_and_bad_snapshots():
    args = cli.build_parser().parse_args(["info"])
    assert cli.info_config_from_args(args) == InfoPlaneConfig()
    with pytest.raises(ValueError, match="snapshot_epochs"):
        InfoPlaneConfig(train=ViTTrainConfig(epochs=5))


def test_tiny_information_plane_writes_its_figure_and_numbers(tmp_path, capsys):
    out = tmp_path / "info"
    argv = ["info", "--out", str(out), "--epochs", "2", "--snapshot-epochs", "0", "2", "--hidden-size", "8",
            "--num-layers", "1", "--num-heads", "2", "--mlp-size", "8", "--components", "2", "--no-progress"]
    assert cli.main(argv) == 0
    assert "Information plane" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["information_plane.png", "results.json", "summary.md"]
    result = json.loads((out / "results.json").read_text())
    assert result["epochs"] == [0, 2] and result["samples"] == 450
    for name in ("binning", "ksg"):
        plane = np.asarray(result["plane"][name])
        assert plane.shape == (2, 2, 3)  # (epochs, L+1, [I(X;T), I(T;Y), I(T;shuffled Y)])
        assert np.all(plane >= 0) and np.all(plane[..., 1] <= result["label_entropy_bits"] + 0.5)
    assert len(result["test_accuracy"]) == 2
