import jax
import numpy as np

from experiments.kernel_capacity import held_out_cosine, teacher_forced_log_maps
from experiments.state_drift import drift, summary
from pdeflow.pde import SolverConfig, init_surrogate
from pdeflow.surrogate import predict_attention
from tests.tiny_teacher import SURROGATE, tiny_traces


def test_drift_starts_at_the_transformer_state_and_reads_both_ways_as_the_package_does():
    train, _, test = tiny_traces()
    params = init_surrogate(jax.random.PRNGKey(3), SURROGATE, train.hidden[0][train.mask])
    solver = SolverConfig("rk4", adaptive=False, dt0=0.5)
    result = drift(params, SURROGATE, solver, test)
    # u(0) = hidden[0]·P: the states agree at t = 0, so block 0's maps are the same both ways
    np.testing.assert_allclose([result["state_cosine"][0], result["state_distance"][0],
                                result["state_norm_ratio"][0]], [1, 0, 1], atol=1e-5)
    np.testing.assert_allclose(result["map_cosine"]["free_running"][0],
                               result["map_cosine"]["kernel_on_transformer_states"][0], atol=1e-6)
    # later on the states move: the two readings differ, as the report's and kernel_capacity's figures do
    assert result["state_distance"][-1] > 0.01
    np.testing.assert_allclose(result["map_cosine"]["free_running"],
                               held_out_cosine(test, predict_attention(params, SURROGATE, solver, test, 16)),
                               atol=1e-5)
    forced = np.exp(np.asarray(teacher_forced_log_maps(params, SURROGATE, test.hidden, test.mask)))
    np.testing.assert_allclose(result["map_cosine"]["kernel_on_transformer_states"], held_out_cosine(test, forced),
                               atol=1e-5)
    assert all(len(result[k]) == SURROGATE.num_layers + 1 for k in ("state_cosine", "readout_error"))
    text = summary({"runs": [{"folder": "f", "model": "tiny", "preset": None, "held_out_inputs": 32, **result}]})
    assert "| map cosine, kernel on transformer states |" in text and "| state distance | 0.000 |" in text
