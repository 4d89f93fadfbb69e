from types import SimpleNamespace

import jax
import numpy as np
import pytest

from experiments.generalisation_gap import main, measure, summary
from pdeflow.pde import SolverConfig, init_surrogate
from tests.tiny_teacher import SURROGATE, tiny_traces


def test_every_split_is_measured_free_and_forced_and_the_length_parts_make_up_the_whole():
    train, validation, test = tiny_traces()
    splits = SimpleNamespace(train=train, validation=validation, test=test)
    params = init_surrogate(jax.random.PRNGKey(2), SURROGATE, train.hidden[0][train.mask])
    solver = SolverConfig("rk4", adaptive=False, dt0=0.5, adjoint="stored")
    lengths = np.asarray(test.mask).sum(1)
    long_tokens = int(np.median(lengths)) + 1
    result = measure(params, SURROGATE, solver, splits, train_inputs=5, long_tokens=long_tokens, batch_size=4)
    parts = result["splits"]
    assert parts["train"]["inputs"] == 5 and parts["test"]["inputs"] == test.mask.shape[0]
    for s in parts.values():
        free, forced = np.asarray(s["free"]["cosine"]), np.asarray(s["forced"]["cosine"])
        assert free.shape == forced.shape == (SURROGATE.num_layers,)
        # u(0) = hidden[0]·P: block 0's free-running maps are the teacher-forced ones
        np.testing.assert_allclose(free[0], forced[0], atol=1e-6)
        assert not np.allclose(free[1:], forced[1:], atol=1e-6)  # later blocks read the solved state
    s = parts["test"]
    n_long = s["long_inputs"]
    assert n_long == int((lengths >= long_tokens).sum()) and 0 < n_long < s["inputs"]
    whole = (n_long * np.asarray(s["free_long"]["cosine"]) + (s["inputs"] - n_long) * np.asarray(
        s["free_short"]["cosine"])) / s["inputs"]
    np.testing.assert_allclose(whole, s["free"]["cosine"], rtol=1e-5)
    text = summary({"folder": "f", **result})
    assert "| held-out (" in text and "| training, forced |" in text and "long (" in text


def test_the_command_refuses_a_folder_without_parameters(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert "holds no params.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
