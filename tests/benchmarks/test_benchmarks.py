"""The benchmarks are run by hand, so these keep them from rotting: each runs at a toy size and must write a
labelled result whose numbers make sense (no timing is asserted)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import fit_throughput, solver_throughput
from pdeflow.pde import SolverConfig, attention_pde, init_surrogate
from tests.tiny_teacher import FIT, SURROGATE, tiny_traces


def test_solver_throughput_writes_a_labelled_result_with_a_flop_count(tmp_path, capsys):
    solver_throughput.main(["--sizes", "2,8,8,2,2", "--solvers", "euler:1.0", "--adjoints", "stored",
                            "--compute-dtypes", "float32", "bfloat16", "--repeats", "1", "--out", str(tmp_path)])
    (path,) = tmp_path.glob("solver_throughput_*.json")
    result = json.loads(path.read_text())
    label = result["label"]
    assert label["matmul_peak_gflop_per_s"] > 0 and label["bfloat16_matmul_peak_gflop_per_s"] > 0 and "jax" in label
    rows = result["rows"]
    assert [(r["compute_dtype"], r["mode"], r["adjoint"]) for r in rows] == [
        (dtype, mode, adjoint) for dtype in ("float32", "bfloat16")
        for mode, adjoint in (("forward", None), ("forward+backward", "stored"))]
    assert all(r["solver_steps"] == 2 and r["gflop_per_s"] > 0 for r in rows)
    # bfloat16 cases also stand against the bfloat16 peak, float32 ones only against the float32 peak
    assert [("fraction_of_bfloat16_matmul_peak" in r) for r in rows] == [False, False, True, True]
    assert "% of peak" in capsys.readouterr().out


def test_fit_throughput_times_the_fit_step_without_recompiling():
    train = tiny_traces()[0]
    fit = dataclasses.replace(FIT, seed=5)  # one shape (test_fit checks the bucketed fit's compiles)
    counter = fit_throughput.CompileCounter()
    solver = SolverConfig("euler", adaptive=False, dt0=1.0, adjoint="stored")
    row = fit_throughput.time_steps(SURROGATE, solver, fit, train, 4, counter)
    assert row["recompilations_during_timed_steps"] == {}
    assert row["compiled_lengths"] == [train.mask.shape[1]]
    assert row["steps_per_s"] > 0 and np.isfinite(row["xla_compile_s"])
    json.dumps(row)  # goes into the result file as it is


def test_the_peer_field_agrees_with_pdeflows_at_a_toy_size():
    """Only where the benchmark-only peer is installed (`pip install -e '.[bench]'`); CI skips it."""
    pytest.importorskip("torchdiffeq")
    from benchmarks import peer_torchdiffeq

    rows = peer_torchdiffeq.compare_field("2,8,8,2,2", repeats=1)
    assert [r["mode"] for r in rows] == ["field", "field+vjp"]
    assert all(r["max_abs_field_diff"] < 1e-5 and r["max_rel_state_gradient_diff"] < 1e-4 for r in rows)
    assert all(r["pdeflow_steady_s"] > 0 and r["torch_steady_s"] > 0 for r in rows)


def test_the_peers_forward_only_run_times_both_fixed_step_paths_and_checks_them_against_the_peer():
    """Only where the benchmark-only peer is installed; CI skips it."""
    pytest.importorskip("torchdiffeq")
    from benchmarks import peer_torchdiffeq

    field_s = {"pdeflow": 1e-3, "torch": 1e-3}
    rows = peer_torchdiffeq.compare("2,8,8,2,2", peer_torchdiffeq.Case("rk4"), 1, field_s=field_s, forward_only=True)
    assert [(r["mode"], r["pdeflow_adjoint"]) for r in rows] == [("forward", None), ("forward", "discrete")]
    assert all(r["max_abs_solution_diff"] < 1e-5 and r["pdeflow_overhead"] > 0 for r in rows)


def test_the_solver_benchmark_times_fixed_steps_forward_through_the_discrete_adjoints_scan(tmp_path):
    """Fixed steps with the discrete adjoint: the forward through diffrax's loop (the default adjoint's) and through
    pdeflow's own scan, the same steps and FLOPs. (Euler alone: an adaptive tsit5 beside it took the test
    from 7 to 36 s, compiling its discrete adjoint.)"""
    solver_throughput.main(["--sizes", "2,8,8,2,2", "--solvers", "euler:1.0", "--adjoints", "discrete", "--repeats",
                            "1", "--out", str(tmp_path)])
    (path,) = tmp_path.glob("solver_throughput_*.json")
    rows = json.loads(path.read_text())["rows"]
    assert [(r["solver"], r["mode"], r["adjoint"]) for r in rows] == [
        ("euler", "forward", None), ("euler", "forward", "discrete"), ("euler", "forward+backward", "discrete")]
    default, scan = rows[:2]
    assert default["solver_steps"] == scan["solver_steps"] == 2 and default["flop_factor"] == scan["flop_factor"] == 1


def test_the_analytic_flop_counts_agree_with_xlas_cost_analysis():
    """The benchmark's FLOP counts (matmuls and exponentials) against XLA's own count of the compiled field and
    read-out, which adds the element-wise work: never below ours, and within 5 % above it at the benchmark's
    largest size, where the products dominate (leaving out the mixing product would put ours 10 % low). Nothing
    runs: XLA counts the compiled programs. At toy sizes (N = 16, r = 24) the element-wise work is half as
    much again as the products, so no such bound holds there."""
    batch, n, width, heads, layers = 32, 128, 384, 12, 6
    config = solver_throughput.benchmark_config(width, heads, layers)
    params = init_surrogate(jax.random.PRNGKey(0), config)
    mask = jnp.ones((batch, n), bool)

    def xla_flops(fn, *args):
        cost = jax.jit(fn).lower(*args).compile().cost_analysis()
        return (cost[0] if isinstance(cost, list) else cost)["flops"] / batch

    field = xla_flops(lambda u, p, lap, m: attention_pde.batch_vector_field(config, jnp.float32(0.5), u, (p, lap, m)),
                      jnp.ones((batch, n, width)), params, jnp.zeros((batch, n, n)), mask)
    readout = xla_flops(lambda p, s, m: jax.vmap(lambda si, mi: attention_pde.attention_log_maps(p, config, si, mi),
                                                 in_axes=(1, 0), out_axes=1)(s, m),
                        params, jnp.ones((layers + 1, batch, n, width)), mask)
    ours_field, ours_readout = solver_throughput.field_flops(config, n), solver_throughput.readout_flops(config, n)
    assert ours_field <= field <= 1.05 * ours_field, f"XLA/analytic field FLOPs {field / ours_field:.3f}"
    assert ours_readout <= readout <= 1.05 * ours_readout, f"XLA/analytic read-out FLOPs {readout / ours_readout:.3f}"


def test_the_products_benchmark_counts_the_fields_matmul_flops():
    """The forward products listed by `peer_matmuls` are the field's: their FLOPs are the field's analytic count
    less the softmax's exponentials (``H·N²`` per input), which are not products."""
    from benchmarks import peer_matmuls

    batch, n = 3, 10
    config = solver_throughput.benchmark_config(24, 4, 2)
    products = peer_matmuls.field_products(config, batch, n, square=16)
    forward = [p for p in products if not p[0].startswith(("VJP", "square"))]
    assert len(forward) == 8
    counted = sum(peer_matmuls.einsum_flops(spec, shapes) for _, spec, shapes in forward)
    expected = batch * (solver_throughput.field_flops(config, n) - config.num_heads * n * n)
    assert counted == expected
    assert peer_matmuls.einsum_flops("ij,jk->ik", [(16, 16), (16, 16)]) == 2 * 16**3


def test_the_products_benchmark_agrees_with_the_peer_at_a_toy_size(tmp_path):
    """Only where the benchmark-only peer is installed (torch and torchdiffeq: the test extra has torch alone, for
    the checkpoint loaders' reference); CI skips it."""
    pytest.importorskip("torch")
    pytest.importorskip("torchdiffeq")  # benchmarks.torch_peer needs it
    from benchmarks import peer_matmuls

    peer_matmuls.main(["--size", "2,8,8,2,2", "--repeats", "1", "--square", "16", "--out", str(tmp_path)])
    (path,) = tmp_path.glob("peer_matmuls_*.json")
    result = json.loads(path.read_text())
    assert result["label"]["torch"] and len(result["rows"]) == 11
    assert all(r["max_abs_diff"] < 1e-4 and r["xla_s"] > 0 and r["torch_s"] > 0 for r in result["rows"])
