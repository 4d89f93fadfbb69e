import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow import metrics


def _maps(seed, layers=2, batch=3, heads=2, n=5, mask=None):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, n), bool) if mask is None else mask
    logits = np.where(mask[None, :, None, None, :], rng.normal(size=(layers, batch, heads, n, n)) * 2, -np.inf)
    maps = np.exp(logits - logits.max(-1, keepdims=True))
    return (maps / maps.sum(-1, keepdims=True)).astype(np.float32), mask


MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], bool)


def test_kl_is_zero_on_itself_positive_otherwise_and_matches_hand_computation():
    p, _ = _maps(0, mask=MASK)
    q, _ = _maps(1, mask=MASK)
    b = 1
    m = jnp.asarray(MASK[b])
    logq = jnp.log(jnp.where(m[None, :], q[0, b], 1.0))
    self_kl = metrics.attention_kl(p[0, b], jnp.log(jnp.where(m[None, :], p[0, b], 1.0)), m)
    np.testing.assert_allclose(self_kl, 0.0, atol=1e-6)
    kl = np.asarray(metrics.attention_kl(p[0, b], logq, m))
    n = MASK[b].sum()
    by_hand = [np.mean([np.sum(p[0, b, h, i, :n] * np.log(p[0, b, h, i, :n] / q[0, b, h, i, :n])) for i in range(n)])
               for h in range(2)]
    np.testing.assert_allclose(kl, by_hand, rtol=1e-5)
    assert np.all(kl > 0)


def test_fidelity_of_identical_maps_is_perfect():
    p, mask = _maps(0, mask=MASK)
    f = metrics.attention_fidelity(p, p, mask, top_k=2)
    np.testing.assert_allclose(f["cosine"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(f["js"], 0.0, atol=1e-6)
    np.testing.assert_allclose(f["top_k"], 1.0)


def test_js_is_one_bit_for_disjoint_rows_and_cosine_zero():
    n = 4
    p = np.zeros((1, 1, 1, n, n), np.float32)
    q = np.zeros_like(p)
    p[..., 0], q[..., 1] = 1.0, 1.0  # every row: all mass on key 0 vs on key 1
    f = metrics.attention_fidelity(p, q, np.ones((1, n), bool), top_k=1)
    np.testing.assert_allclose(f["js"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(f["cosine"], 0.0, atol=1e-6)
    np.testing.assert_allclose(f["top_k"], 0.0)


def test_fidelity_ignores_padding_and_rejects_bad_shapes():
    p, mask = _maps(0, mask=MASK)
    q = p.copy()
    q[:, 2, :, :, 2:] = 0.7  # garbage on padded keys of input 2
    q[:, 2, :, 2:, :] = 0.7  # and on its padded queries
    f = metrics.attention_fidelity(p, q, mask)
    np.testing.assert_allclose(f["cosine"], 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="one shape"):
        metrics.attention_fidelity(p, q[:, :2], mask)


def test_baselines_are_normalised_over_real_keys():
    p, mask = _maps(3, layers=3, mask=MASK)
    for maps in (metrics.uniform_maps(mask, 3, 2), metrics.mean_attention_maps(metrics.mean_attention(p, mask), mask)):
        assert maps.shape == p.shape
        np.testing.assert_array_equal(maps * ~mask[None, :, None, None, :], 0.0)
        np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)
    previous = metrics.previous_layer_maps(p)
    assert np.isnan(previous[0]).all()
    np.testing.assert_array_equal(previous[1:], p[:-1])
    f = metrics.attention_fidelity(p, previous, mask)
    assert np.isnan(f["cosine"][0]).all() and np.isnan(f["js"][0]).all()
    np.testing.assert_allclose(metrics.summarise(f)["cosine"][1:], f["cosine"][1:].mean(axis=(1, 2)))


def test_mean_attention_averages_each_row_over_inputs_where_it_is_real():
    p, mask = _maps(4, layers=1, mask=MASK)
    mean = metrics.mean_attention(p, mask)
    np.testing.assert_allclose(mean[0, :, 4], p[0, 0, :, 4])  # query 4 is real only in input 0
    np.testing.assert_allclose(mean[0, :, 0], p[0, :, :, 0].mean(0), rtol=1e-6)


def test_the_registry_holds_the_three_metrics_in_the_order_of_metrics_json():
    assert list(metrics.METRICS) == ["cosine", "js", "top_k"]
    assert [m.direction for m in metrics.METRICS.values()] == ["higher", "lower", "higher"]
    assert metrics.METRICS["js"].heading == "row-wise Jensen–Shannon divergence, bits (lower is better)"
    assert metrics.METRICS["js"].axis_title == "Jensen–Shannon (bits) ↓"
    with pytest.raises(ValueError, match="direction"):
        metrics.Metric("x", "x", "x", "up", "", lambda p, q, mask, top_k: p.sum((-2, -1)))
    with pytest.raises(ValueError, match="already registered"):
        metrics.register_metric(metrics.METRICS["cosine"])


def _max_gap(p, q, mask, top_k):
    """A toy metric: the largest absolute difference of the two maps, per head."""
    return jnp.max(jnp.abs(p - q), axis=(-2, -1))


MAX_GAP = metrics.Metric("max_gap", "largest gap", "largest gap", "lower", "", _max_gap)


def test_a_metric_registered_in_one_place_is_measured_and_reported():
    from pdeflow.report import summary_markdown
    from pdeflow.results import FitMetrics, FitSummary, ParameterCounts, SplitSizes

    p, mask = _maps(0, mask=MASK)
    q, _ = _maps(1, mask=MASK)
    before = metrics.attention_fidelity(p, q, mask)
    with metrics.registered_metrics(MAX_GAP):
        f = metrics.attention_fidelity(p, q, mask)
        record = FitMetrics.measured(
            model="m", text="t", splits=SplitSizes(1, 1, 3), parameters=ParameterCounts(1, 1, 2, 1),
            fidelity={"pde": f, "uniform": f}, fit=FitSummary(0, False, 0, ()), preset="", coefficients={},
            notes=())
        summary = summary_markdown(record)
    assert list(f) == ["cosine", "js", "top_k", "max_gap"]
    for name in before:  # the others are unchanged by the new one
        np.testing.assert_array_equal(f[name], before[name])
    masked = np.where(MASK[None, :, None, :, None] & MASK[None, :, None, None, :], np.abs(p - q), 0.0)
    np.testing.assert_allclose(f["max_gap"], masked.max(axis=(-2, -1)), rtol=1e-6)
    assert "## largest gap (lower is better)" in summary and "| attention-PDE |" in summary
    assert list(metrics.METRICS) == ["cosine", "js", "top_k"]  # gone once the block ends
    assert "largest gap" not in summary_markdown(record)  # the report shows what the registry knows


def test_fidelity_can_be_measured_with_a_registry_of_ones_own():
    p, mask = _maps(2, mask=MASK)
    f = metrics.attention_fidelity(p, p, mask, registry={"max_gap": MAX_GAP, "js": metrics.METRICS["js"]})
    assert list(f) == ["max_gap", "js"]
    np.testing.assert_allclose(f["max_gap"], 0.0)
    np.testing.assert_allclose(f["js"], 0.0, atol=1e-6)
