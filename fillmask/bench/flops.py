"""FLOPs per request, counted from the architecture, and a GEMM peak measured on this machine.

Counts multiply-adds as 2 FLOPs and only the matrix products (what dominates BERT); softmax,
LayerNorm and GELU are a few percent and left out, so achieved GFLOP/s is slightly understated.
"""

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

BERT_BASE = dict(layers=12, hidden=768, intermediate=3072, vocab=21128)


def bert_flops(
    tokens, masks=1, full_logits=False, layers=12, hidden=768, intermediate=3072, vocab=21128
):
    """FLOPs of one sequence of ``tokens``: encoder, then the MLM head on the masked rows.

    ``full_logits``: the head runs on every token (the reference design's graph).
    """
    per_token = (
        2 * 3 * hidden * hidden  # Q, K, V projections
        + 2 * 2 * tokens * hidden  # scores QKᵀ and the weighted sum of V
        + 2 * hidden * hidden  # attention output projection
        + 2 * 2 * hidden * intermediate
    )  # feed-forward in and out
    head_rows = tokens if full_logits else masks
    head = head_rows * (2 * hidden * hidden + 2 * hidden * vocab)  # transform + decoder
    return layers * tokens * per_token + head


def gemm_graph(m, k, n):
    """A one-MatMul ONNX model [m, k] × [k, n] (the weight as an initializer, as in BERT)."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((k, n)).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def gemm_peak(threads, m=512, k=768, n=3072, reps=20):
    """Peak fp32 GFLOP/s of onnxruntime's MatMul on this machine (fastest of ``reps``).

    The shape is BERT's feed-forward layer at 512 tokens: large enough to run at full speed.
    """
    from fillmask.session import create_session

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gemm.onnx"
        path.write_bytes(gemm_graph(m, k, n))
        session = create_session(path, threads)
    x = np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)
    for _ in range(3):
        session.run(None, {"x": x})
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    flop = 2 * m * k * n
    # Peak = the fastest repetition: background load on shared cores only ever slows a run.
    return {
        "shape": [m, k, n],
        "threads": threads,
        "median_ms": round(float(np.median(times)) * 1000, 2),
        "gflops_median": round(flop / float(np.median(times)) / 1e9, 1),
        "gflops": round(flop / min(times) / 1e9, 1),
    }


def weight_stream_rate(threads, k=2048, n=32768, reps=10):
    """GB/s at which onnxruntime's MatMul streams a weight matrix too big for any cache.

    One input row against a [k, n] fp32 weight (256 MB by default): what a run does with each
    weight when it has few rows, so its time is the weight's bytes over the memory's rate.
    """
    from fillmask.session import create_session

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gemv.onnx"
        path.write_bytes(gemm_graph(1, k, n))
        session = create_session(path, threads)
    x = np.random.default_rng(1).standard_normal((1, k)).astype(np.float32)
    session.run(None, {"x": x})
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        session.run(None, {"x": x})
        times.append(time.perf_counter() - start)
    return {"shape": [1, k, n], "threads": threads, "gbps": round(4 * k * n / min(times) / 1e9, 2)}


def architecture(manifest):
    """``bert_flops`` keyword arguments from an exported model's manifest.json.

    The manifest records layers, hidden size and vocabulary; the feed-forward width is BERT's
    4 × hidden (3072 for bert-base-chinese).
    """
    arch = manifest.get("architecture", {})
    hidden = arch.get("hidden", BERT_BASE["hidden"])
    return {
        "layers": arch.get("layers", BERT_BASE["layers"]),
        "hidden": hidden,
        "intermediate": 4 * hidden,
        "vocab": manifest.get("vocab_size", BERT_BASE["vocab"]),
    }


def achieved(latency_p50_ms, tokens, masks=1, full_logits=False, **arch):
    """GFLOP/s reached by one request of ``tokens`` at the given median latency."""
    flops = bert_flops(tokens, masks, full_logits, **arch)
    return {
        "gflop": round(flops / 1e9, 3),
        "gflops_achieved": round(flops / (latency_p50_ms / 1000) / 1e9, 1),
    }


def run(lat, threads, model_dir, tokens):
    """GEMM peak here, and FLOPs / achieved rate of ours fp32 per token count."""
    peak = gemm_peak(threads)
    arch = architecture(json.loads((model_dir / "manifest.json").read_text("utf-8")))
    per_request = {}
    for t in tokens:
        p50 = lat["summary"]["ours-fp32"][t]["p50_ms"]
        row = achieved(p50, t, **arch)
        row["gflop_reference"] = round(bert_flops(t, full_logits=True, **arch) / 1e9, 3)
        row["fraction_of_peak"] = round(row["gflops_achieved"] / peak["gflops"], 3)
        row["lower_bound_ms"] = round(row["gflop"] / peak["gflops"] * 1000, 1)
        per_request[t] = row
    return {
        "gemm_peak": peak,
        "per_request": per_request,
        "architecture": arch,
        "note": "matrix products only, 2 FLOPs per multiply-add",
    }
