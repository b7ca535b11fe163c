"""int8 side by side: onnxruntime's per-run activation scale against the exporter's per-row one.

    python -m fillmask.bench.int8 models/bert-base-chinese        # an export made with --int8
    python -m fillmask.bench.int8 DIR --threads 2 --reps 100 --json

Builds the per-run graph from the directory's ``model.onnx`` with plain ``quantize_dynamic``
(what the exporter wrote before issue 19) into a temporary file, then measures both int8
graphs and fp32, interleaved: single-request latency at 16 and 64 tokens, one run of 8 texts of
16 tokens, batch invariance (a text alone vs in one run with 7 texts of other lengths, 7
tries: how many changed their top-10 order, largest |Δ log-prob|), and top-1 / top-5
agreement with fp32 on the parity sentences, each alone. With ``--http``, also throughput
through a real Gunicorn (``bench.py``'s load, 16-token texts) for both int8 graphs with
micro-batching on and off, at 1 and 16 clients.
"""

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fillmask import parity
from fillmask.bench.latency import bench_text
from fillmask.session import create_session

logger = logging.getLogger(__name__)


def per_run_graph(src, dst):
    """The int8 graph as onnxruntime's ``quantize_dynamic`` alone makes it (per-run scales)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # a page of notes per tensor it skips
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )
    return dst


def run(session, sequences):
    """One padded ``session.run`` of token-id lists; the [masks, vocab] log-prob rows."""
    longest = max(map(len, sequences))
    ids = np.zeros((len(sequences), longest), np.int64)
    mask = np.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]


def invariance(session, encode, tries=7):
    """Changed top-10 orders and the largest score change, alone vs batched with 7 others."""
    rng = np.random.default_rng(0)
    changed, largest = 0, 0.0
    for attempt in range(tries):
        target = encode(bench_text(12 + 5 * attempt))
        others = [encode(bench_text(int(n))) for n in rng.integers(5, 60, 7)]
        place = int(rng.integers(0, 8))
        alone = run(session, [target])[0]
        together = run(session, [*others[:place], target, *others[place:]])[place]
        changed += not np.array_equal(np.argsort(-alone)[:10], np.argsort(-together)[:10])
        largest = max(largest, float(np.abs(alone - together).max()))
    return {"top10_changed": f"{changed}/{tries}", "max_abs_diff": round(largest, 6)}


def latencies(sessions, cases, reps, warmup=3):
    """Median wall and CPU ms per (graph, case), round-robin; speeds relative to the first graph.

    CPU time is this thread's (``time.thread_time``): with one onnxruntime thread the run is
    computed on it, and CPU time hardly moves with what else the machine runs, unlike wall time.
    """
    times = {(n, c, clock): [] for n in sessions for c in cases for clock in ("wall", "cpu")}
    names = list(sessions)
    for rep in range(warmup + reps):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for case, feed in cases.items():
            for name in order:
                wall, cpu = time.perf_counter(), time.thread_time()
                run(sessions[name], feed)
                if rep >= warmup:
                    times[(name, case, "cpu")].append((time.thread_time() - cpu) * 1000)
                    times[(name, case, "wall")].append((time.perf_counter() - wall) * 1000)
    base = names[0]

    def cell(name, case):
        out = {}
        for clock in ("wall", "cpu"):
            mine, theirs = np.array(times[(name, case, clock)]), times[(base, case, clock)]
            out[f"{clock}_p50_ms"] = round(float(np.median(mine)), 2)
            out[f"{clock}_speed_vs_first"] = round(float(np.median(theirs / mine)), 3)
        return out

    return {name: {case: cell(name, case) for case in cases} for name in names}


def agreement(session, reference, sequences, k=5):
    """Top-1 agreement and top-k overlap with ``reference`` rows, each sentence run alone."""
    got = np.concatenate([run(session, [seq]) for seq in sequences])
    want, have = np.argsort(-reference, 1)[:, :k], np.argsort(-got, 1)[:, :k]
    return {
        "top1_agreement": round(float(np.mean(want[:, 0] == have[:, 0])), 4),
        f"top{k}_overlap": round(
            float(np.mean([len(set(a) & set(b)) / k for a, b in zip(want, have, strict=True)])), 4
        ),
        "mean_abs_diff": round(float(np.mean(np.abs(got - reference))), 5),
    }


def measure(model_dir, threads=1, reps=60):
    """Every figure of the module docstring for one exported model directory."""
    from tokenizers import Tokenizer

    model_dir = Path(model_dir)
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))

    def encode(text):
        return tokenizer.encode(text).ids

    with tempfile.TemporaryDirectory() as tmp:
        graphs = {
            "int8 per-run scale": per_run_graph(model_dir / "model.onnx", Path(tmp) / "q.onnx"),
            "int8 per-row scale": model_dir / "model.int8.onnx",
            "fp32": model_dir / "model.onnx",
        }
        sessions = {name: create_session(path, threads) for name, path in graphs.items()}
    cases = {
        "16 tokens": [encode(bench_text(16))],
        "64 tokens": [encode(bench_text(64))],
        "8 texts x 16 tokens": [encode(bench_text(16))] * 8,
    }
    sentences = [encode(s) for s in parity.load_sentences()]
    fp32 = np.concatenate([run(sessions["fp32"], [seq]) for seq in sentences])
    return {
        "model_dir": str(model_dir),
        "threads": threads,
        "reps": reps,
        "latency": latencies(sessions, cases, reps),
        "batch_invariance": {n: invariance(s, encode) for n, s in sessions.items()},
        "vs_fp32": {n: agreement(s, fp32, sentences) for n, s in sessions.items() if n != "fp32"},
    }


def per_run_model_dir(model_dir, out):
    """A copy of ``model_dir`` whose int8 graph is the per-run one, its manifest updated."""
    import shutil

    from fillmask.model_files import MANIFEST, file_entry

    out = Path(out)
    out.mkdir()
    for name in ("model.onnx", "tokenizer.json", "vocab.txt"):
        shutil.copy(Path(model_dir) / name, out / name)
    per_run_graph(out / "model.onnx", out / "model.int8.onnx")
    manifest = json.loads((Path(model_dir) / MANIFEST).read_text(encoding="utf-8"))
    manifest["files"]["model.int8.onnx"] = file_entry(out / "model.int8.onnx")
    (out / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    return out


def http(model_dir, seconds=5, rounds=2, levels=(1, 16)):
    """Throughput / p50 / p95 / CPU per request through Gunicorn, both int8 graphs."""
    from fillmask.bench import http_load, latency

    servers = {}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {"per-run": per_run_model_dir(model_dir, Path(tmp) / "m"), "per-row": model_dir}
        try:
            for graph, directory in dirs.items():
                for batching in ("on", "off"):
                    env = {"MODEL_PRECISION": "int8", "BATCHING": "1" if batching == "on" else "0"}
                    server = http_load.gunicorn_server(directory, **env)
                    servers[f"int8 {graph} scale, batching {batching}"] = server.start()
            texts = http_load.load_texts(latency.bench_text(16))
            results = http_load.measure(servers, texts, levels, seconds, rounds)
        finally:
            for server in servers.values():
                server.stop()
    keys = ("throughput_rps", "p50_ms", "p95_ms", "cpu_ms_per_request", "errors")
    return {
        name: {level: {k: cell[k] for k in keys} for level, cell in per.items()}
        for name, per in results.items()
    }


def main(argv=None):
    """Print the comparison (a table, or JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", help="a model directory exported with --int8")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    parser.add_argument("--reps", type=int, default=60, help="timed repetitions (default 60)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    parser.add_argument("--http", action="store_true", help="also load Gunicorn (a few minutes)")
    args = parser.parse_args(argv)
    result = measure(args.model_dir, args.threads, args.reps)
    if args.http:
        result["http"] = http(Path(args.model_dir))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['model_dir']}, {args.threads} thread(s), {args.reps} interleaved repetitions")
    for name, cases in result["latency"].items():
        cells = ", ".join(
            f"{c} {v['wall_p50_ms']} ms ({v['wall_speed_vs_first']:.0%}; CPU "
            f"{v['cpu_p50_ms']} ms, {v['cpu_speed_vs_first']:.0%})"
            for c, v in cases.items()
        )
        print(f"  {name}: {cells}")
        print(f"    batch invariance: {result['batch_invariance'][name]}")
        if name in result["vs_fp32"]:
            print(f"    vs fp32: {result['vs_fp32'][name]}")
    for name, per in result.get("http", {}).items():
        print(f"  HTTP {name}: {per}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
