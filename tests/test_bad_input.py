"""Property-based tests (hypothesis): malformed input to the public API gets an error that names the problem
and the fix, and never a half-written output. Each property draws many bad inputs; every one must raise."""

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pdeflow.metrics import attention_fidelity
from pdeflow.models.minilm import load_pretrained_encoder
from pdeflow.models.trace import Trace, check_trace
from pdeflow.report import check_output_dir

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def good_trace(rng, layers=2, batch=3, heads=2, n=5, d=4):
    mask = np.arange(n)[None, :] < rng.integers(1, n + 1, size=batch)[:, None]
    logits = rng.normal(size=(layers, batch, heads, n, n))
    logits = np.where(mask[None, :, None, None, :], logits, -np.inf)
    attention = np.exp(logits - logits.max(-1, keepdims=True))
    attention /= attention.sum(-1, keepdims=True)
    hidden = rng.normal(size=(layers + 1, batch, n, d))
    return Trace(hidden, attention, mask)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), which=st.sampled_from(["hidden", "attention", "mask"]),
       rank=st.integers(0, 6))
def test_wrong_rank_is_named(seed, which, rank):
    trace = good_trace(np.random.default_rng(seed))
    expected = {"hidden": 4, "attention": 5, "mask": 2}[which]
    if rank == expected:
        rank += 1
    bad = trace._replace(**{which: np.zeros((2,) * rank)})
    with pytest.raises(ValueError, match=rf"trace\.{which} must have shape"):
        check_trace(bad)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), axis=st.integers(0, 2), extra=st.integers(1, 3))  # L+1, B, N (d is free)
def test_mismatched_sizes_are_named(seed, axis, extra):
    trace = good_trace(np.random.default_rng(seed))
    shape = list(trace.hidden.shape)
    shape[axis] += extra
    with pytest.raises(ValueError, match="trace shapes disagree|must have shape"):
        check_trace(trace._replace(hidden=np.zeros(shape)))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), which=st.sampled_from(["hidden", "attention"]),
       value=st.sampled_from([np.nan, np.inf, -np.inf]), data=st.data())
def test_nan_or_inf_anywhere_is_named(seed, which, value, data):
    trace = good_trace(np.random.default_rng(seed))
    array = np.array(getattr(trace, which))
    index = tuple(data.draw(st.integers(0, s - 1)) for s in array.shape)
    array[index] = value
    with pytest.raises(ValueError, match=rf"trace\.{which} contains NaN or Inf"):
        check_trace(trace._replace(**{which: array}))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), scale=st.floats(0.0, 3.0).filter(lambda s: abs(s - 1.0) > 0.01),
       data=st.data())
def test_rows_that_do_not_sum_to_one_are_named(seed, scale, data):
    trace = good_trace(np.random.default_rng(seed))
    attention = np.array(trace.attention)
    l, b, h = (data.draw(st.integers(0, s - 1)) for s in attention.shape[:3])
    real = np.flatnonzero(trace.mask[b])
    i = data.draw(st.sampled_from(real.tolist()))
    attention[l, b, h, i] *= scale
    with pytest.raises(ValueError, match="sum to one|negative entries"):
        check_trace(trace._replace(attention=attention))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1))
def test_logits_instead_of_probabilities_are_named(seed):
    trace = good_trace(np.random.default_rng(seed))
    logits = np.log(np.maximum(trace.attention, 1e-9))
    with pytest.raises(ValueError, match="negative entries; pass probabilities"):
        check_trace(trace._replace(attention=logits))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), data=st.data())
def test_all_padding_or_empty_batches_are_named(seed, data):
    trace = good_trace(np.random.default_rng(seed))
    mask = np.array(trace.mask)
    b = data.draw(st.integers(0, mask.shape[0] - 1))
    mask[b] = False
    with pytest.raises(ValueError, match=rf"inputs \[{b}\] are all padding"):
        check_trace(trace._replace(mask=mask))
    with pytest.raises(ValueError, match="empty"):
        check_trace(trace.take(slice(0, 0)))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), cut=st.integers(1, 4))
def test_fidelity_of_mismatched_maps_is_refused(seed, cut):
    trace = good_trace(np.random.default_rng(seed))
    with pytest.raises(ValueError, match="need reference and predicted of one shape"):
        attention_fidelity(trace.attention, trace.attention[..., cut:], trace.mask)


@SETTINGS
@given(garbage=st.binary(min_size=0, max_size=256))
def test_corrupt_weight_files_are_named(tmp_path_factory, garbage):
    folder = tmp_path_factory.mktemp("weights")
    (folder / "config.json").write_text(json.dumps({"vocab_size": 30, "hidden_size": 8, "num_hidden_layers": 1,
                                                    "num_attention_heads": 2, "intermediate_size": 16,
                                                    "max_position_embeddings": 8, "type_vocab_size": 2}))
    (folder / "model.safetensors").write_bytes(garbage)
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises((ValueError, FileNotFoundError), match="model.safetensors|tokenizer.json|reinstall"):
        load_pretrained_encoder(folder)


@pytest.mark.parametrize("missing", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_weight_files_are_named(tmp_path, missing):
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if name != missing:
            (tmp_path / name).write_text("{}")
    with pytest.raises(FileNotFoundError, match=missing):
        load_pretrained_encoder(tmp_path)


@SETTINGS
@given(name=st.text(alphabet="abcdefgh", min_size=1, max_size=8))
def test_unwritable_outputs_are_refused_before_any_work(tmp_path_factory, name):
    root = tmp_path_factory.mktemp("out")
    blocker = root / "file"
    blocker.write_text("")
    with pytest.raises((PermissionError, ValueError, FileExistsError, NotADirectoryError), match="--out"):
        check_output_dir(blocker / name, overwrite=False)
    assert sorted(p.name for p in Path(root).iterdir()) == ["file"]  # nothing written


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), value=st.sampled_from([7, 2, -1]))
def test_a_mask_that_is_not_boolean_or_0_1_is_named(seed, value):
    trace = good_trace(np.random.default_rng(seed))
    mask = np.asarray(trace.mask).astype(np.int32) * value
    with pytest.raises(ValueError, match="trace.mask must be boolean"):
        check_trace(trace._replace(mask=mask))
    check_trace(trace._replace(mask=np.asarray(trace.mask).astype(np.int32)))  # 0/1 is a mask


def test_an_integer_0_1_mask_masks_in_the_fit_and_never_indexes():
    import dataclasses

    from pdeflow.fitting.fit import fit_surrogate
    from pdeflow.pde import SolverConfig
    from tests.tiny_teacher import FIT, SURROGATE, tiny_traces

    train, validation, _ = tiny_traces()
    solver = SolverConfig("heun", adaptive=False, dt0=0.5, adjoint="stored")
    config = dataclasses.replace(FIT, steps=2, eval_every=2)
    as_ints = [t._replace(mask=np.asarray(t.mask).astype(np.int32)) for t in (train, validation)]
    expected = fit_surrogate(train, validation, SURROGATE, solver, config, progress=False)
    got = fit_surrogate(*as_ints, SURROGATE, solver, config, progress=False)
    assert got.history == expected.history


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), scale=st.sampled_from([1e7, 1e30, -1e12]))
def test_absurdly_scaled_hidden_states_are_named(seed, scale):
    trace = good_trace(np.random.default_rng(seed))
    with pytest.raises(ValueError, match="not rescaled"):
        check_trace(trace._replace(hidden=np.asarray(trace.hidden) * scale + scale))


@pytest.mark.parametrize("option, value, message", [
    ("--top-k", "0", "top_k must be a positive integer"),
    ("--hidden-weight", "nan", "hidden_weight must be a finite number"),
    ("--learning-rate", "inf", "learning_rate must be a finite number"),
    ("--rtol", "-1e-3", "need rtol > 0 and atol > 0"),
    ("--atol", "0", "need rtol > 0 and atol > 0"),
    ("--width", "1000000000", "more than this machine's"),
])
def test_bad_fit_options_are_refused_before_any_work(tmp_path, capsys, option, value, message):
    from pdeflow import cli

    assert cli.main(["fit", "--out", str(tmp_path / "run"), f"{option}={value}", "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
