from types import SimpleNamespace

import jax
import numpy as np
import pytest

from experiments.fine_phase_restart import continue_fit, main, summary
from experiments.kernel_capacity import held_out_cosine
from pdeflow.pde import SolverConfig, init_surrogate
from pdeflow.surrogate import predict_attention
from tests.tiny_teacher import FIT, SURROGATE, tiny_traces


def test_each_arm_continues_from_the_given_parameters_and_is_measured_on_the_held_out_inputs():
    train, validation, test = tiny_traces()
    splits = SimpleNamespace(train=train, validation=validation, test=test)
    params = init_surrogate(jax.random.PRNGKey(2), SURROGATE, train.hidden[0][train.mask])
    solver = SolverConfig("rk4", adaptive=False, dt0=0.5, adjoint="stored")
    result = continue_fit(params, SURROGATE, solver, FIT, splits, [1e-9, 5e-2], steps=8)
    start = result["start"]["cosine"]
    np.testing.assert_allclose(start, held_out_cosine(test, predict_attention(params, SURROGATE, solver, test, 16)),
                               atol=1e-5)
    still, moved = result["arms"]
    # a vanishing rate leaves the start where it was (the arm begins at the given parameters, not a fresh start);
    # a real one moves the maps and lowers the validation KL it is kept by
    np.testing.assert_allclose(still["held_out"]["cosine"], start, atol=1e-5)
    assert np.max(np.abs(np.subtract(moved["held_out"]["cosine"], start))) > 1e-3
    assert min(moved["validation_kl"]) < still["validation_kl"][0]
    assert moved["best_step"] == 8 and len(moved["validation_kl"]) == 1  # evaluated once, at the end
    text = summary({"folder": "f", "held_out_inputs": int(test.mask.shape[0]), **result})
    assert "| the fit's own |" in text and "| + 8 steps at peak 0.05 |" in text


def test_the_command_refuses_a_folder_without_parameters(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--out", str(tmp_path / "out")])
    assert "holds no params.safetensors" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
