import dataclasses

import jax
import numpy as np

from experiments.kernel_capacity import (
    capacity_markdown,
    fit_teacher_forced,
    held_out_cosine,
    teacher_forced_kl,
    teacher_forced_log_maps,
)
from pdeflow import metrics
from pdeflow.pde import attention_pde, init_surrogate
from tests.tiny_teacher import FIT, SURROGATE, TEACHER, tiny_traces


def test_teacher_forced_maps_are_the_kernel_on_the_projected_transformer_states():
    train, _, _ = tiny_traces()
    params = init_surrogate(jax.random.PRNGKey(0), SURROGATE, train.hidden[0][train.mask])
    log_maps = teacher_forced_log_maps(params, SURROGATE, train.hidden, train.mask)
    assert log_maps.shape == train.attention.shape
    b, l = 3, 1
    u = train.hidden[l, b] @ params["projection"]
    expected = attention_pde.attention_kernel(params, SURROGATE, jax.numpy.float32(l), u, train.mask[b])
    real = np.asarray(train.mask[b])
    np.testing.assert_allclose(np.exp(log_maps[l, b])[:, real][:, :, real], np.asarray(expected)[:, real][:, :, real],
                               atol=1e-6)


def test_a_kernel_as_wide_as_the_teacher_fits_its_maps_on_teacher_forced_states():
    train, validation, test = tiny_traces()
    config = dataclasses.replace(SURROGATE, width=TEACHER.hidden_size, key_dim=TEACHER.hidden_size // TEACHER.num_heads)
    before = init_surrogate(jax.random.PRNGKey(FIT.seed), config, train.hidden[0][train.mask])
    params, best_step, history = fit_teacher_forced(train, validation, config, FIT)
    assert best_step > 0 and len(history) == FIT.steps // FIT.eval_every
    assert float(teacher_forced_kl(params, config, validation).mean()) < 0.5 * float(
        teacher_forced_kl(before, config, validation).mean())
    fitted = held_out_cosine(test, np.exp(np.asarray(teacher_forced_log_maps(params, config, test.hidden, test.mask))))
    uniform = held_out_cosine(test, metrics.uniform_maps(test.mask, TEACHER.num_layers, TEACHER.num_heads))
    assert min(fitted) > 0.8 and min(np.subtract(fitted, uniform)) > 0.3  # measured: 0.88 / 0.84 vs 0.40 / 0.40


def test_capacity_table_has_a_row_per_method_with_mean_and_worst_block():
    result = {"rows": [{"method": "teacher-forced kernel", "width": 8, "key_dim": 4, "cosine": [0.9, 0.7]},
                       {"method": "uniform", "cosine": [0.5, 0.3]}],
              "fit": {"steps": 10, "batch_size": 4, "seed": 0}, "transformer_head_width": 8}
    text = capacity_markdown(result)
    assert "| teacher-forced kernel | 8 | 4 | 0.900 | 0.700 | 0.800 | 0.700 |" in text
    assert "| uniform |  |  | 0.500 | 0.300 | 0.400 | 0.300 |" in text
