"""`benchmarks.field_backward` at a toy size: a labelled result with both backwards' times and their ratio for
the field, field + VJP and the maps read out at the layer times + their VJP (no timing is asserted)."""

import json

from benchmarks import field_backward


def test_field_backward_benchmark_writes_both_backwards_times(tmp_path, capsys):
    field_backward.main(["--sizes", "2,8,8,2,2", "--rounds", "1", "--repeats", "1", "--solve-repeats", "0",
                         "--out", str(tmp_path)])
    (path,) = tmp_path.glob("field_backward_*.json")
    result = json.loads(path.read_text())
    assert "jax" in result["label"]
    rows = result["rows"]
    assert [r["mode"] for r in rows] == ["field", "field_vjp", "maps_vjp"]  # the solve (compiled twice) left out
    for row in rows:
        assert row["autodiff_min_s"] <= row["autodiff_median_s"] and row["custom_min_s"] <= row["custom_median_s"]
        assert row["speedup"] > 0
    assert "field_vjp" in capsys.readouterr().out
