"""The sparse-memory generators: reproducible from their seed, and each target depends on exactly the tokens its
definition names."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.tasks import sparse_memory
from pdeflow.tasks.sparse_memory import AdaptiveMemory, FixedMemory, SmoothMemory, SparseBoolean

TASKS = [FixedMemory(lags=(2, 5, 11), length=16), SparseBoolean(lags=(1, 4, 9), length=16),
         AdaptiveMemory(num_keys=3, length=16), AdaptiveMemory(num_keys=3, nested=True, length=16),
         SmoothMemory((("power", 2.0, 1.5), ("matern", 3.0, 0.0)), support=6, length=16)]


@pytest.mark.parametrize("task", TASKS, ids=lambda t: type(t).__name__ + ("-nested" if getattr(t, "nested", 0) else ""))
def test_batches_are_reproducible_from_the_seed(task):
    first = list(itertools.islice(sparse_memory.batches(task, seed=3, batch=4), 3))
    again = list(itertools.islice(sparse_memory.batches(task, seed=3, batch=4), 3))
    other = next(sparse_memory.batches(task, seed=4, batch=4))
    for a, b in zip(first, again):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(first[0].inputs), np.asarray(other.inputs))
    assert not np.array_equal(np.asarray(first[0].inputs), np.asarray(first[1].inputs))  # a fresh batch per step
    assert first[0].inputs.shape == (4, task.length, task.input_dim)
    assert first[0].targets.shape == first[0].valid.shape == (4, task.length)
    assert np.all(np.isfinite(np.asarray(first[0].targets)))
    assert np.asarray(first[0].valid).any()


def _influence(task, x, t):
    """Which tokens move y_t: token s moves it if replacing s by a fresh random token changes y_t."""
    targets = jax.jit(task.targets)
    y, _ = targets(x)
    moved = np.zeros(task.length, bool)
    for s in range(task.length):
        for trial in range(6):
            replacement = task.inputs(jax.random.PRNGKey(100 * s + trial), 1)[0, s]
            y2, _ = targets(x.at[0, s].set(replacement))
            moved[s] |= bool(abs(float(y2[0, t]) - float(y[0, t])) > 1e-6)
    return moved


@pytest.mark.parametrize("task", [FixedMemory(lags=(2, 5, 11), length=16), SparseBoolean(lags=(1, 4, 9), length=16)])
def test_fixed_lag_targets_depend_only_on_their_lags(task):
    x = task.inputs(jax.random.PRNGKey(0), 1)
    t = 13
    moved = _influence(task, x, t)
    np.testing.assert_array_equal(np.flatnonzero(moved), sorted(t - lag for lag in task.lags))
    _, valid = task.targets(x)
    np.testing.assert_array_equal(np.asarray(valid[0]), np.arange(16) >= max(task.lags))


def test_smooth_memory_depends_on_its_window_only():
    task = SmoothMemory((("power", 2.0, 1.5),), support=5, length=16)
    x = task.inputs(jax.random.PRNGKey(1), 1)
    moved = _influence(task, x, 12)
    np.testing.assert_array_equal(np.flatnonzero(moved), np.arange(8, 13))


def test_smooth_memory_is_the_convolution_it_names():
    task = SmoothMemory((("exponential", 3.0, 0.0), ("power", 1.0, 2.0)), support=7, readout="linear", length=20)
    x = np.asarray(task.inputs(jax.random.PRNGKey(2), 2))
    y, valid = task.targets(jnp.asarray(x))
    rho = task.kernel_matrix()
    for t in range(6, 20):
        z = [sum(rho[k, s] * x[:, t - s, k] for s in range(7)) for k in range(2)]
        np.testing.assert_allclose(np.asarray(y[:, t]), (z[0] + z[1]) / np.sqrt(2), rtol=1e-5, atol=1e-5)
    assert not np.asarray(valid[:, :6]).any() and np.asarray(valid[:, 6:]).all()


def test_memory_kernels_have_unit_norm_and_their_tails():
    for shape in ("power", "exponential", "matern"):
        assert np.linalg.norm(sparse_memory.memory_kernel(shape, 3.0, 1.5, 64)) == pytest.approx(1.0)
    heavy = sparse_memory.memory_kernel("power", 2.0, 1.5, 200)
    light = sparse_memory.memory_kernel("exponential", 4.0, 0.0, 200)
    # a power law decays by a constant factor per doubling, an exponential by ever more
    assert heavy[100] / heavy[50] == pytest.approx((1 + 25) ** 1.5 / (1 + 50) ** 1.5, rel=1e-6)
    assert light[100] / light[50] == pytest.approx(np.exp(-50 / 4), rel=1e-6)
    assert sparse_memory.heavy_tailed_memory().kernels[0][0] == "power"
    assert sparse_memory.light_tailed_memory().kernels[0][0] == "matern"


def test_most_recent_match_brute_force():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 3, (4, 12))
    query = rng.integers(0, 3, (4, 12))
    before = rng.integers(0, 13, (4, 12))
    got = np.asarray(sparse_memory.most_recent_match(jnp.asarray(keys), jnp.asarray(query), jnp.asarray(before)))
    for b, t in np.ndindex(4, 12):
        hits = [s for s in range(before[b, t]) if keys[b, s] == query[b, t]]
        assert got[b, t] == (max(hits) if hits else -1)


@pytest.mark.parametrize("nested", [False, True])
def test_adaptive_targets_depend_only_on_the_tokens_they_name(nested):
    """y_t moves with the values at t and the fetched positions, with the keys from the earliest fetched
    position to t, and (nested) with the pointer at s₁; changing anything else leaves it unchanged."""
    task = AdaptiveMemory(num_keys=3, nested=nested, readout="product", length=16)
    targets = jax.jit(lambda inputs: task.targets(inputs)[0])
    checked = 0
    for seed in range(3):
        x = task.inputs(jax.random.PRNGKey(seed), 1)
        _, valid = task.targets(x)
        positions = np.asarray(task.memory_positions(x))[0]
        k = task.num_keys
        for t in np.flatnonzero(np.asarray(valid[0])):
            fetched = positions[t]
            y = float(targets(x)[0, t])
            for s in range(task.length):
                token = np.asarray(x[0, s])
                # values
                changed = x.at[0, s, k].add(1.7)
                moves = abs(float(targets(changed)[0, t]) - y) > 1e-6
                assert moves == (s == t or s in fetched), (t, s, fetched)
                # keys: only tokens in [earliest fetched, t] can change which match is the most recent
                for other in range(k):
                    if token[:k].argmax() == other:
                        continue
                    rekeyed = x.at[0, s, :k].set(jax.nn.one_hot(other, k))
                    if abs(float(targets(rekeyed)[0, t]) - y) > 1e-6:
                        assert fetched.min() <= s <= t, (t, s, fetched)
                # pointers: only the one at s₁
                if nested:
                    for other in range(k):
                        repointed = x.at[0, s, k + 1:].set(jax.nn.one_hot(other, k))
                        if abs(float(targets(repointed)[0, t]) - y) > 1e-6:
                            assert s == fetched[0], (t, s, fetched)
                checked += 1
    assert checked > 100


def test_nested_memory_reads_the_pointer_of_the_first_match():
    task = AdaptiveMemory(num_keys=3, nested=True, readout="product", length=16)
    x = np.asarray(task.inputs(jax.random.PRNGKey(5), 1))[0]
    keys, values, pointers = x[:, :3].argmax(-1), x[:, 3], x[:, 4:].argmax(-1)
    positions = np.asarray(task.memory_positions(jnp.asarray(x[None])))[0]
    y, valid = task.targets(jnp.asarray(x[None]))
    for t in range(16):
        s1 = max([s for s in range(t) if keys[s] == keys[t]], default=-1)
        s2 = max([s for s in range(t) if s1 >= 0 and keys[s] == pointers[s1]], default=-1)
        assert tuple(positions[t]) == (s1, s2 if s1 >= 0 else -1)
        assert bool(valid[0, t]) == (s1 >= 0 and s2 >= 0)
        if valid[0, t]:
            assert float(y[0, t]) == pytest.approx(values[t] * values[s1] * values[s2], rel=1e-5)


def test_normalised_mse_scores_the_mean_predictor_one():
    batch = sparse_memory.sample(FixedMemory(lags=(1, 3), readout="product", length=12), jax.random.PRNGKey(0), 64)
    valid = np.asarray(batch.valid)
    mean = np.asarray(batch.targets)[valid].mean()
    constant = jnp.full(batch.targets.shape, mean)
    assert float(sparse_memory.normalised_mse(constant, batch.targets, batch.valid)) == pytest.approx(1.0)
    assert float(sparse_memory.normalised_mse(batch.targets, batch.targets, batch.valid)) == 0.0
    stacked = jnp.stack([batch.targets, jnp.zeros_like(batch.targets)])
    assert sparse_memory.normalised_mse(stacked, batch.targets, batch.valid).shape == (2,)


def test_bad_settings_say_what_to_fix():
    with pytest.raises(ValueError, match="exceed the largest lag"):
        FixedMemory(lags=(4, 20), length=16)
    with pytest.raises(ValueError, match="unknown readout"):
        FixedMemory(readout="cubic")
    with pytest.raises(ValueError, match="distinct"):
        SparseBoolean(lags=(2, 2))
    with pytest.raises(ValueError, match="kernel"):
        SmoothMemory((("gaussian", 1.0, 0.0),))


def _boolean_reference(bits: np.ndarray, target: str) -> np.ndarray:
    """The Boolean functions written from their definitions, on ``(P, k)`` arrays of ±1 bits."""
    minus = (bits < 0).sum(-1)
    plus = (bits > 0).sum(-1)
    if target == "parity":
        return np.where(minus % 2 == 0, 1.0, -1.0)
    if target == "and":
        return np.where(minus == 0, 1.0, -1.0)
    return np.where(plus > bits.shape[-1] / 2, 1.0, -1.0)


@pytest.mark.parametrize("target", sorted(sparse_memory.BOOLEAN_TARGETS))
def test_boolean_target_is_its_function_of_the_lagged_bits_on_every_pattern(target):
    task = SparseBoolean(lags=(1, 4, 9), length=16, target=target)
    k, t = len(task.lags), 13
    patterns = np.array(list(itertools.product([-1.0, 1.0], repeat=k)))  # (2^k, k), every pattern once
    x = np.asarray(task.inputs(jax.random.PRNGKey(5), len(patterns))).copy()  # random bits elsewhere
    for j, lag in enumerate(task.lags):
        x[:, t - lag, 0] = patterns[:, j]
    y, valid = task.targets(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(y[:, t]), _boolean_reference(patterns, target))
    assert np.asarray(valid[:, t]).all()
    # over all patterns: parity and majority balanced, AND +1 on exactly one pattern
    positives = int((np.asarray(y[:, t]) > 0).sum())
    assert positives == (1 if target == "and" else len(patterns) // 2)
    # every valid target of a random batch is ±1 and equals the reference at the lagged bits
    batch = sparse_memory.sample(task, jax.random.PRNGKey(6), 8)
    xs, ys, vs = (np.asarray(a) for a in batch)
    for s in range(max(task.lags), task.length):
        bits = np.stack([xs[:, s - lag, 0] for lag in task.lags], axis=-1)
        np.testing.assert_array_equal(ys[:, s], _boolean_reference(bits, target))
    assert set(np.unique(ys[vs])) <= {-1.0, 1.0}


def test_parity_has_no_lower_order_correlation_and_and_majority_do():
    """Why parity is the hard one for gradient descent: over uniform bits, its correlation with every proper
    subset's product (Fourier coefficient) is 0, while AND and majority correlate with each bit alone."""
    lags = (1, 4, 9)
    patterns = np.array(list(itertools.product([-1.0, 1.0], repeat=3)))
    x = np.zeros((len(patterns), 16, 1), np.float32)
    for j, lag in enumerate(lags):
        x[:, 13 - lag, 0] = patterns[:, j]
    for target, first_order in (("parity", 0.0), ("majority", 0.5), ("and", 0.25)):
        y = np.asarray(SparseBoolean(lags=lags, length=16, target=target).targets(jnp.asarray(x))[0][:, 13])
        for j in range(3):
            assert np.mean(y * patterns[:, j]) == pytest.approx(first_order)
        for i, j in itertools.combinations(range(3), 2):
            pair = np.mean(y * patterns[:, i] * patterns[:, j])
            assert pair == pytest.approx(0.0 if target != "and" else 0.25)
        assert np.mean(y * patterns.prod(-1)) == pytest.approx({"parity": 1.0, "majority": -0.5, "and": 0.25}[target])


def test_sign_error_counts_wrong_signs_over_valid_positions():
    targets = jnp.array([[1.0, -1.0, 1.0, -1.0]])
    valid = jnp.array([[False, True, True, True]])
    predictions = jnp.array([[[-5.0, -0.1, 0.3, 0.2]], [[0.0, 0.0, 0.0, 0.0]]])  # (2 models, B, N)
    np.testing.assert_allclose(np.asarray(sparse_memory.sign_error(predictions, targets, valid)), [1 / 3, 1.0])
    assert float(sparse_memory.sign_error(targets, targets, valid)) == 0.0


def test_bad_boolean_settings_say_what_to_fix():
    with pytest.raises(ValueError, match="unknown Boolean target"):
        SparseBoolean(target="xor")
    with pytest.raises(ValueError, match="odd number of lags"):
        SparseBoolean(lags=(1, 3), length=8, target="majority")
