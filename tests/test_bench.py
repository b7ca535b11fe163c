"""Smoke tests of the benchmark's pieces on the tiny model (the full run is bench.py's job)."""

import json

import numpy as np
import pytest

from fillmask.bench import flops, latency, report


def test_flops_of_bert_base_at_64_tokens():
    # 12 layers x 64 tokens x (8h² + 4·64·h + 4·h·3072), plus the head on one row.
    assert flops.bert_flops(64) == 11_056_263_168
    # The full-logits head runs the 768 x 21128 decoder on all 64 rows instead of one.
    extra = 63 * (2 * 768 * 768 + 2 * 768 * 21128)
    assert flops.bert_flops(64, full_logits=True) - flops.bert_flops(64) == extra


@pytest.mark.parametrize("tokens", [3, 16, 64])
def test_bench_text_has_exactly_the_tokens_asked(predictor, tokens):
    item = predictor.prepare(latency.bench_text(tokens))
    assert len(item.input_ids) == tokens and item.num_masks == 1


def test_measure_interleaves_and_rotates_the_order():
    calls = []

    class Fake:
        def __init__(self, name):
            self.name = name

        def predict_mask(self, text):
            calls.append((self.name, text))

    samples = latency.measure(
        {"a": Fake("a"), "b": Fake("b")}, {1: "x", 2: "y"}, reps=2, warmup=1, pause=0
    )
    assert calls == [
        ("a", "x"),
        ("b", "x"),
        ("a", "y"),
        ("b", "y"),
        ("b", "x"),
        ("a", "x"),
        ("b", "y"),
        ("a", "y"),
        ("a", "x"),
        ("b", "x"),
        ("a", "y"),
        ("b", "y"),
    ]
    assert [len(samples[n][t]) for n in "ab" for t in (1, 2)] == [2, 2, 2, 2]


def test_pairwise_ratios_are_medians_of_per_repetition_ratios():
    samples = {"base": {16: [10.0, 30.0, 20.0]}, "fast": {16: [5.0, 10.0, 2.0]}}
    # per repetition 2, 3, 10 -> median 3 (the ratio of medians would be 20/5 = 4)
    assert latency.pairwise_ratios(samples, "base") == {"fast": {16: 3.0}}


def test_gemm_peak_reports_a_rate():
    pytest.importorskip("onnx")  # builds its one-MatMul graph with onnx.helper
    peak = flops.gemm_peak(1, m=64, k=64, n=64, reps=3)
    assert peak["shape"] == [64, 64, 64] and peak["gflops"] >= peak["gflops_median"] > 0


@pytest.fixture(scope="module")
def reference(tiny_source, tmp_path_factory):
    """The reference design on a full-logits export of the tiny model's weights."""
    from fillmask.bench.models import export_full_logits
    from fillmask.bench.reference import ReferenceDesign

    path = tmp_path_factory.mktemp("full-logits") / "full_logits.onnx"
    export_full_logits(tiny_source, path)
    return ReferenceDesign(path, tiny_source, threads=1)


def test_graph_comparison_runs_both_graphs(reference, tiny_model_dir):
    from fillmask.bench.reference import compare_graphs

    result = compare_graphs(
        tiny_model_dir / "model.onnx", reference.onnx_path, 1, tokens=16, reps=3
    )
    assert result["tokens"] == 16 and result["ours_p50_ms"] > 0 and result["reference_p50_ms"] > 0


def test_reference_design_agrees_with_ours(reference, tiny_model_dir):
    from fillmask.bench.variants import Ours

    ours = Ours(tiny_model_dir, "fp32", threads=1, max_length=128)
    vocab = len(ours.predictor.words)
    for text in ["今天天气真[MASK]啊", latency.bench_text(40)]:
        # The reference ranks the whole vocabulary; ours never offers special tokens or ##
        # pieces, so compare with the reference's best offerable words.
        theirs = [
            (w, p)
            for w, p in reference.predict_mask(text, top_k=vocab)
            if ours.predictor.token_id(w) is not None
        ][:5]
        mine = ours.predict_mask(text)
        assert len(mine) == len(theirs) == 5
        # Same weights, same probabilities (over the whole vocabulary), word for word; two words
        # within float error of each other may come in either order.
        assert [p for _, p in mine] == pytest.approx([p for _, p in theirs], rel=1e-3)
        for (word, p), (other, q) in zip(mine, theirs, strict=True):
            assert word == other or p == pytest.approx(q, rel=1e-3)


def fake_results():
    """A results dict shaped like bench.py's, with round numbers."""
    summary = {
        name: {
            t: {"p50_ms": p, "p95_ms": p * 1.2, "mean_ms": p, "n": 3}
            for t, p in zip((16, 64), values, strict=True)
        }
        for name, values in {
            "pipeline": (60, 120),
            "reference": (30, 80),
            "ours-fp32": (20, 70),
            "ours-int8": (10, 40),
        }.items()
    }
    return {
        "meta": {
            "weights": "RANDOM",
            "random_weights": True,
            "command": "python bench.py",
            "date": "today",
            "machine": "test box",
            "threads": 2,
            "latency_reps": 3,
        },
        "latency": {
            "summary": summary,
            "ratios_to_pipeline": {
                "reference": {16: 2.0, 64: 1.5},
                "ours-fp32": {16: 3.0, 64: 1.5},
                "ours-int8": {16: 6.0, 64: 3.0},
            },
            "ours_fp32_vs_reference": {16: 0.67, 64: 0.88},
            "agreement": {16: {"fp32_agree": True}, 64: {"fp32_agree": False}},
            "graphs_at_64_tokens": {
                "tokens": 64,
                "reps": 3,
                "ours_p50_ms": 70.0,
                "reference_p50_ms": 80.0,
                "ours_over_reference": 0.88,
            },
        },
        "startup": {
            "ours-fp32": {
                "cold_start_s": 1.5,
                "load_s": 1.0,
                "first_answer_s": 0.1,
                "peak_rss_mb": 590.0,
            },
            "ours-int8": {
                "cold_start_s": 1.0,
                "load_s": 0.5,
                "first_answer_s": 0.1,
                "peak_rss_mb": 310.0,
            },
        },
        "session_load_s": {"ours-fp32": 0.5},
        "http": {
            "servers": {
                "fp32, batching on": {
                    16: {"throughput_rps": 30.0, "p50_ms": 1, "p95_ms": 90.0, "errors": 0}
                },
                "fp32, batching off": {
                    16: {"throughput_rps": 20.0, "p50_ms": 1, "p95_ms": 100.0, "errors": 0}
                },
            },
            "worker_peak_rss_mb": {"fp32, batching on": 550.0},
            "config": "WORKERS=2",
            "text_tokens": 16,
            "seconds": 1,
            "rounds": 1,
        },
    }


def test_targets_are_judged_from_the_numbers():
    verdicts = {t["target"]: t["passed"] for t in report.targets(fake_results())}
    assert verdicts["ours-fp32 speed-up vs pipeline at 64 tokens"] is False  # 1.5 < 1.6
    assert verdicts["ours-int8 speed-up vs pipeline at 16 tokens"] is True
    assert verdicts["ours-int8 worker peak RSS (MB)"] is False  # 310 > 300
    assert verdicts["batching: throughput on/off at 16 clients"] is True  # 1.5x
    assert verdicts["batching: p95 on/off at 16 clients (no worse)"] is True
    assert (
        verdicts[
            "our fp32 graph time / full-logits graph time at 64 tokens, 1 mask "
            "(issue 2: >=10% faster)"
        ]
        is True
    )  # 0.88


def test_outputs_are_written_and_say_random_weights(tmp_path):
    pytest.importorskip("matplotlib")
    text = report.write_all(fake_results(), tmp_path)
    assert "ours 70.0 ms, full-logits export 80.0 ms" in text
    assert "put **different** word first" in text
    assert text.startswith("**Weights: RANDOM.**")
    assert "| ours, int8 | 10.0 / 12.0 ms | 40.0 / 48.0 ms | 6.00× / 3.00× |" in text
    assert "**MISSED**" in text
    saved = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert saved["meta"]["random_weights"] is True and len(saved["targets"]) == 10
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite([t["measured"] for t in saved["targets"]]).all()
