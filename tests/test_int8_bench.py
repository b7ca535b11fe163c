"""fillmask/bench/int8.py, the int8 comparison, runs and reports what it says on a real export."""

import pytest

pytest.importorskip("onnxruntime.quantization")


def test_the_comparison_measures_both_int8_graphs_and_fp32(tiny_model_dir):
    from fillmask.bench import int8

    result = int8.measure(tiny_model_dir, threads=1, reps=2)
    names = ["int8 per-run scale", "int8 per-row scale", "fp32"]
    assert list(result["latency"]) == names
    for cases in result["latency"].values():
        assert list(cases) == ["16 tokens", "64 tokens", "8 texts x 16 tokens"]
        assert all(cell["wall_p50_ms"] > 0 and cell["cpu_p50_ms"] > 0 for cell in cases.values())
    per_row = result["batch_invariance"]["int8 per-row scale"]
    assert per_row["top10_changed"] == "0/7" and per_row["max_abs_diff"] <= 1e-5
    assert result["batch_invariance"]["fp32"]["top10_changed"] == "0/7"
    assert set(result["vs_fp32"]) == set(names[:2])
    for figures in result["vs_fp32"].values():
        assert 0 <= figures["top1_agreement"] <= 1 and 0 <= figures["top5_overlap"] <= 1
