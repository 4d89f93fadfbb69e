"""`benchmarks.solve_profile`: the FLOPs read from compiled HLO, the trace's times per operation, and a toy-size
profile whose products add up to the solve's own count."""

import gzip
import json

import jax
import jax.numpy as jnp
import pytest

from benchmarks import solve_profile
from benchmarks.solver_throughput import benchmark_config, field_flops, readout_flops
from pdeflow.pde import SolverConfig


def test_a_dot_counts_twice_its_output_times_its_contracted_size():
    x, w = jnp.ones((8, 12, 5)), jnp.ones((5, 7))
    compiled = jax.jit(lambda x, w: jnp.exp(jnp.einsum("bnr,rc->bnc", x, w))).lower(x, w).compile()
    operations = solve_profile.hlo_operations(compiled.as_text())
    flops = [op["flops"] for op in operations.values() if op["flops"]]
    # one product, whether XLA kept it as a dot or fused it with the exp: counted once, in one operation
    assert sorted(set(flops)) == [2 * 8 * 12 * 7 * 5]
    described = [op["what"] for op in operations.values() if op["flops"]]
    assert any("bnr,rc->bnc" in what for what in described)


def test_a_fusion_counts_the_dots_of_the_computation_it_calls():
    text = "\n".join([
        "%fused_computation.1 (param_0: f32[4,6], param_1: f32[6,3]) -> f32[4,3] {",
        "  %param_0 = f32[4,6]{1,0} parameter(0)",
        "  %param_1 = f32[6,3]{1,0} parameter(1)",
        '  ROOT %dot.2 = f32[4,3]{1,0} dot(%param_0, %param_1), lhs_contracting_dims={1}, '
        'rhs_contracting_dims={0}, metadata={op_name="jit(f)/vmap(ik,kj->ij)/dot_general"}',
        "}",
        "",
        "ENTRY %main (a: f32[4,6], b: f32[6,3]) -> f32[4,3] {",
        "  %a = f32[4,6]{1,0} parameter(0)",
        "  %b = f32[6,3]{1,0} parameter(1)",
        '  ROOT %ynn_fusion = f32[4,3]{1,0} fusion(%a, %b), kind=kCustom, calls=%fused_computation.1, '
        'metadata={op_name="jit(f)/mul"}',
        "}",
    ])
    operations = solve_profile.hlo_operations(text)
    assert operations["ynn_fusion"]["flops"] == 2 * 4 * 3 * 6
    assert operations["ynn_fusion"]["what"] == ["ik,kj->ij"]
    assert operations["a"]["flops"] == 0
    # its memory traffic: both float32 operands read and its output written, once each
    assert operations["ynn_fusion"]["bytes"] == 4 * (4 * 6 + 6 * 3 + 4 * 3)


def test_traffic_counts_each_operand_by_its_element_type():
    text = "\n".join([
        "ENTRY %main (a: bf16[8,16], b: pred[8,16]) -> f32[8,16] {",
        "  %a = bf16[8,16]{1,0} parameter(0)",
        "  %b = pred[8,16]{1,0} parameter(1)",
        '  ROOT %select_fusion = f32[8,16]{1,0} fusion(%a, %b), kind=kLoop, calls=%fused, '
        'metadata={op_name="jit(f)/select_n"}',
        "}",
    ])
    operations = solve_profile.hlo_operations(text)
    assert operations["select_fusion"] == {"flops": 0, "bytes": 8 * 16 * (2 + 1 + 4), "what": ["select_n"]}


def test_trace_durations_sum_each_named_operation(tmp_path):
    events = [{"ph": "X", "name": "dot.1", "dur": 1500}, {"ph": "X", "name": "dot.1", "dur": 500},
              {"ph": "X", "name": "copy.3", "dur": 250}, {"ph": "X", "name": "other", "dur": 9000},
              {"ph": "i", "name": "dot.1"}]
    folder = tmp_path / "plugins" / "profile" / "run"
    folder.mkdir(parents=True)
    (folder / "host.trace.json.gz").write_bytes(gzip.compress(json.dumps({"traceEvents": events}).encode()))
    seconds, counts = solve_profile.trace_durations(tmp_path, {"dot.1", "copy.3"})
    assert seconds == pytest.approx({"dot.1": 2e-3, "copy.3": 2.5e-4})
    assert counts == {"dot.1": 2, "copy.3": 1}
    with pytest.raises(FileNotFoundError, match="create_perfetto_trace"):
        solve_profile.trace_durations(tmp_path / "plugins" / "none", {"dot.1"})


@pytest.mark.parametrize("mode", solve_profile.MODES)
def test_a_toy_solve_is_profiled_and_its_products_are_the_counted_work(mode):
    batch, n, width, heads, layers = 2, 6, 8, 2, 2
    solver = SolverConfig(solver="rk4", adaptive=False, dt0=0.5, adjoint="stored")
    rows, totals = solve_profile.profile_solve(batch, n, width, heads, layers, solver, mode, repeats=1, peak=100.0)
    assert rows and all(row["seconds_per_solve"] > 0 for row in rows)
    assert [row["seconds_per_solve"] for row in rows] == sorted((row["seconds_per_solve"] for row in rows),
                                                               reverse=True)
    assert sum(row["share_of_op_time"] for row in rows) == pytest.approx(1.0)
    assert totals["wall_s"] > 0 and totals["fraction_of_matmul_peak"] > 0
    config = benchmark_config(width, heads, layers)
    if mode == "forward":
        # the solver benchmark's count: 4 steps of 4 stages and the maps read out once
        counted = batch * (4 * 4 * field_flops(config, n) + readout_flops(config, n))
        assert totals["counted_gflop"] == pytest.approx(counted / 1e9)
        # at each of the 16 stages, the queries and keys of all heads in one (B·N, r) x (r, 2·H·k) product, and
        # the values' down-projections in one (B·N, r) x (r, H·v) product
        stage_products = [row for row in rows if "nr,rc->nc" in row["what"] and row["executions_per_solve"] == 16]
        assert sorted(row["gflop_per_solve"] for row in stage_products) == pytest.approx(sorted(
            [16 * 2 * batch * n * width * 2 * heads * config.key_dim / 1e9,
             16 * 2 * batch * n * width * heads * config.value_rank / 1e9]))
    # XLA runs every counted product (and a few small ones the count leaves out: the knots' time basis, the
    # position bias's design); the count's softmax exponentials (one FLOP each) are no products
    exponentials = batch * heads * n * n * 16
    assert totals["hlo_product_gflop"] >= (totals["counted_gflop"] - exponentials / 1e9) * 0.999
    with pytest.raises(ValueError, match="mode must be one of"):
        solve_profile.profile_solve(batch, n, width, heads, layers, solver, "backward", 1, 100.0)


def test_each_operation_gets_its_bound_from_its_products_or_its_bytes():
    batch, n, width, heads, layers = 2, 6, 8, 2, 2
    solver = SolverConfig(solver="rk4", adaptive=False, dt0=0.5)
    peak, bandwidth = 100.0, {2**20: 5.0, 2**26: 10.0}  # GB/s by bytes moved
    rows, totals = solve_profile.profile_solve(batch, n, width, heads, layers, solver, "forward", repeats=1,
                                               peak=peak, bandwidth=bandwidth)
    for row in rows:  # a toy solve's operations move far less than 8 MB: the smaller pass's rate
        assert row["pass_gb_per_s"] == 5.0
        assert row["bound_seconds_per_solve"] == pytest.approx(
            max(row["gflop_per_solve"] / peak, row["gb_per_solve"] / 5.0))
        assert row["gb_per_solve"] > 0  # every operation reads or writes something
        assert row["of_bound"] == pytest.approx(row["bound_seconds_per_solve"] / row["seconds_per_solve"])
    # the state moves at every stage: at least one copy of (B, N, r) float32 read per stage's operations
    assert sum(row["gb_per_solve"] for row in rows) >= 16 * batch * n * width * 4 / 1e9
    assert totals["bound_s"] == pytest.approx(sum(row["bound_seconds_per_solve"] for row in rows))
    assert totals["bound_fraction_of_matmul_peak"] == pytest.approx(
        totals["counted_gflop"] / totals["bound_s"] / peak)
    without = solve_profile.profile_solve(batch, n, width, heads, layers, solver, "forward", 1, peak)[0]
    assert "bound_seconds_per_solve" not in without[0]


def test_the_bandwidth_curve_is_read_at_the_nearest_size_on_a_log_scale():
    from benchmarks.reporting import bandwidth_at, bandwidth_curve
    curve = bandwidth_curve(megabytes=(0.25, 4), repeats=2)
    assert sorted(curve) == [2**19, 2**23] and all(0.1 < rate < 1e5 for rate in curve.values())
    made = {2**19: 1.0, 2**23: 2.0}
    assert bandwidth_at(made, 2**18) == bandwidth_at(made, 2**21 - 1) == 1.0  # 2**21 is the log-midpoint
    assert bandwidth_at(made, 2**22) == bandwidth_at(made, 2**40) == 2.0


def test_short_names_give_the_einsum_or_the_last_operation():
    assert solve_profile._short_name("jit(f)/while/body/vmap(nr,rc->nc)/dot_general") == "nr,rc->nc"
    assert solve_profile._short_name("jit(f)/vmap()/exp") == "exp"
    assert solve_profile._short_name("") == ""


@pytest.mark.parametrize("argv, says", [(["--size", "1,2"], "five integers"), (["--solver", "rk4"], "SOLVER:DT"),
                                        (["--solver", "nope:0.5"], "SOLVER:DT")])
def test_the_command_line_says_what_to_fix(argv, says, capsys):
    with pytest.raises(SystemExit):
        solve_profile.main(argv + ["--out", "unused"])
    assert says in capsys.readouterr().err
