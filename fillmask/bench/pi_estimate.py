"""ESTIMATED Raspberry Pi latency from FLOPs, weight bytes and two cited rates per board.

Nothing here is measured on a Pi. One request costs its matrix FLOPs at the board's sustained
fp32 GEMM rate plus the bytes of the weights it reads at the board's memory bandwidth:

    estimated ms = GFLOP / (GFLOP/s) + weight GB / (GB/s)

The two terms are summed, not overlapped (max): at batch 1 every weight matrix meets only
16-64 rows, so each GEMM streams its weights from DRAM (the Pi's 1 MB L2 holds none of them)
and computes little with each panel; the A72 does not hide one behind the other. The sum also
fits the published Pi 4 measurements below better than the max (``validation``).

int8 on the Pi 4: the Cortex-A72 has no int8 dot-product instructions (``asimddp``), so int8
kernels do no more arithmetic per second than fp32 ones; int8 reads a quarter of the bytes but
its compute term stays at the fp32 rate. The Pi 5's Cortex-A76 has them: its int8 rate is taken
as 1.5 × its fp32 rate, the speed-up Arm reports for quantised GEMM with the dot product.
"""

import logging
from pathlib import Path

from . import flops
from .pi_rates import BOARDS, PUBLISHED
from .shapes import VOCAB

logger = logging.getLogger(__name__)

# Operators that read only their tokens' rows of a table, not all of it.
ROW_LOOKUPS = {"Gather", "EmbedLayerNormalization", "QEmbedLayerNormalization"}


def weight_bytes(onnx_path):
    """Bytes of the initializers one run reads whole, counted from the ONNX graph.

    Embedding tables consumed only by ``Gather`` / ``EmbedLayerNormalization`` are left out:
    a run reads the rows of its tokens, not the table. Everything else (every MatMul weight,
    the MLM decoder over the whole vocabulary, biases, LayerNorm) is read once per run.
    Works without loading external data: sizes come from the tensors' dims and types.
    """
    import onnx
    from onnx import helper

    model = onnx.load(str(onnx_path), load_external_data=False)
    graph = model.graph
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    total = 0
    for tensor in graph.initializer:
        uses = consumers.get(tensor.name, set())
        if not uses or uses <= ROW_LOOKUPS:
            continue
        count = 1
        for dim in tensor.dims:
            count *= dim
        total += count * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return total


def analytic_weight_bytes(layers, hidden, intermediate, vocab=VOCAB, head=True, matrix_bytes=4):
    """Bytes of the weights a run reads, from the config (the independent check of the graph).

    Per layer: Q, K, V and output projections, the feed-forward in and out (``matrix_bytes``
    per weight: 4 in fp32, 1 in int8), their biases and two LayerNorms (fp32 in both); with
    ``head``, the MLM transform, its LayerNorm and the decoder over the whole vocabulary.
    """
    h, i = hidden, intermediate
    matrices = layers * (4 * h * h + 2 * h * i)
    vectors = layers * ((4 * h + i + h) + 2 * 2 * h) + 2 * h  # + the embeddings' LayerNorm
    if head:
        matrices += h * h + h * vocab
        vectors += h + 2 * h + vocab
    return matrices * matrix_bytes + vectors * 4


def estimate_ms(gflop, weight_mb, board, precision="fp32", combine="sum"):
    """Estimated latency on ``board`` (a ``BOARDS`` entry) of one run: compute + memory."""
    compute = gflop / board[f"{precision}_gflops"] * 1000
    memory = weight_mb / 1000 / board["gbps"] * 1000
    return compute + memory if combine == "sum" else max(compute, memory)


def validation(tokens=(16, 32, 64)):
    """The method against the published Pi 4 latencies: estimate, error, both combinations."""
    rows = []
    board = BOARDS["pi4"]
    for name, layers, hidden, inter, measured in PUBLISHED["models"]:
        mb = analytic_weight_bytes(layers, hidden, inter, head=False) / 1e6
        row = {"model": name, "measured_ms": measured, "weight_mb": round(mb, 1), "by_tokens": {}}
        for t in tokens:
            # No MLM head (an embedding model): the head term is zero with masks=0.
            gflop = flops.bert_flops(t, masks=0, layers=layers, hidden=hidden, intermediate=inter)
            gflop /= 1e9
            cell = {}
            for combine in ("sum", "max"):
                est = estimate_ms(gflop, mb, board, combine=combine)
                cell[combine] = {"ms": round(est, 1), "error": round(est / measured - 1, 3)}
            row["by_tokens"][t] = cell
        rows.append(row)
    return {"source": PUBLISHED["source"], "rows": rows}


def table(shape_results, tokens):
    """One row per (shape, precision): GFLOP, weight MB, measured here, estimated Pi 4 / Pi 5.

    ``shape_results``: shape name → {"shape": Shape, "weight_mb": {precision: MB},
    "here_ms": {precision: {tokens: p50 ms}}}.
    """
    rows = []
    for name, entry in shape_results.items():
        shape = entry["shape"]
        gflop = {t: flops.bert_flops(t, **shape.flops_args()) / 1e9 for t in tokens}
        for precision, mb in entry["weight_mb"].items():
            rows.append(
                {
                    "shape": name,
                    "models": shape.models,
                    "precision": precision,
                    "weight_mb": round(mb, 1),
                    "gflop": {t: round(gflop[t], 3) for t in tokens},
                    "here_ms": entry["here_ms"].get(precision, {}),
                    "pi4_ms": {
                        t: round(estimate_ms(gflop[t], mb, BOARDS["pi4"], precision), 1)
                        for t in tokens
                    },
                    "pi5_ms": {
                        t: round(estimate_ms(gflop[t], mb, BOARDS["pi5"], precision), 1)
                        for t in tokens
                    },
                }
            )
    return rows


def here_check(rows, rates, tokens):
    """Measured here ÷ the formula with this machine's own rates, over the fp32 rows.

    int8 is left out: this x86 CPU has fast int8 arithmetic, which the formula's fp32 rate
    would not describe (the Pi 4 has none, which is why the formula uses its fp32 rate).
    """
    ratios = []
    for row in rows:
        if row["precision"] != "fp32":
            continue
        for t in tokens:
            measured = row["here_ms"].get(t)
            if measured:
                ratios.append(measured / estimate_ms(row["gflop"][t], row["weight_mb"], rates))
    if not ratios:
        return None
    return {
        "rates": rates,
        "median": round(float(sorted(ratios)[len(ratios) // 2]), 2),
        "min": round(min(ratios), 2),
        "max": round(max(ratios), 2),
        "n": len(ratios),
    }


def model_weight_mb(model_dir, precisions=("fp32", "int8")):
    """precision → MB of weights read per run, from the exported graphs of ``model_dir``."""
    from fillmask.model_files import PRECISION_FILES

    out = {}
    for precision in precisions:
        path = Path(model_dir) / PRECISION_FILES[precision]
        if path.is_file():
            out[precision] = weight_bytes(path) / 1e6
    return out


def run(work, threads, reps, tokens=(16, 32, 64)):
    """Export every shape (cached), time each here, and estimate it on the Pi 4 and Pi 5."""
    from .shapes import SHAPES, export_all, measure_here

    dirs = export_all(work=work)
    exported = {name: d for name, d in dirs.items() if not isinstance(d, str)}
    # This machine's own two rates, for the same formula against what is measured here.
    rates = {
        "fp32_gflops": flops.gemm_peak(threads)["gflops"],
        "gbps": flops.weight_stream_rate(threads)["gbps"],
    }
    here = measure_here(exported, threads, reps, tokens)
    by_name = {shape.name: shape for shape in SHAPES}
    entries = {
        name: {
            "shape": by_name[name],
            "weight_mb": model_weight_mb(model_dir),
            "here_ms": here.get(name, {}),
        }
        for name, model_dir in exported.items()
    }
    rows = table(entries, tokens)
    return {
        "tokens": list(tokens),
        "threads_here": threads,
        "here_check": here_check(rows, rates, tokens),
        "reps": reps,
        "combine": "sum",
        "boards": BOARDS,
        "rows": rows,
        "export_failed": {name: d for name, d in dirs.items() if isinstance(d, str)},
        "validation": validation(),
        "random_weights": True,
    }
