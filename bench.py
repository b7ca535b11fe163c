"""Benchmark this service against transformers' pipeline and the reference design, one run.

    python bench.py --quick                      # fewer repetitions, every part
    python bench.py                              # the published run, ~11 min on 2 cores
    python bench.py --model models/bert-base-chinese --source ./bert-base-chinese

Measures single-request latency (16/64/128 tokens) of the pipeline, the full-logits reference
design and ours (fp32, int8), interleaved, for bert-base-chinese's shape and, in the same
round-robin, for a small model (hfl/rbt3's shape); ratios to the pipeline and of the small model
to bert-base; FLOPs per request against a GEMM peak measured here; every public Chinese BERT
shape (fillmask/bench/shapes.py) timed here, with an ESTIMATED Raspberry Pi 4B / 5 latency from
its FLOPs and weight bytes (fillmask/bench/pi_estimate.py); cold start, load time and peak RSS of
one process each; throughput / p95 through a real Gunicorn on loopback at 1, 4 and 16 clients
with micro-batching on and off. Writes docs/bench/results.json, results.md and chart.png, and
the estimate table of docs/raspberry-pi.md. Without --model it builds (once, cached in --work)
RANDOMLY INITIALISED models of those architectures and says so in every output. Needs
requirements-dev.txt (torch, transformers, matplotlib).
"""

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never wait on the hub

from fillmask.bench import (  # noqa: E402
    comparison,
    flops,
    http_load,
    machine,
    memory,
    models,
    pi_estimate,
    pi_report,
    report,
    service_cost,
    shapes,
    weights_report,
    workers_memory,
)
from fillmask.model_files import PRECISION_FILES as FILES  # noqa: E402

TOKENS = (16, 64, 128)
CLIENTS = (1, 4, 16)
HTTP_TOKENS = 16
PI_TOKENS = (16, 32, 64)
PARTS = ("latency", "small", "flops", "pi", "startup", "http", "service", "memory")
DOCS_BENCH = ROOT / "docs" / "bench"


def get_args(argv=None):
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions (under 5 minutes on a 2-core PC)"
    )
    parser.add_argument(
        "--model",
        help="an exported model directory (export_onnx.py); "
        "default: build a random model of bert-base-chinese's architecture",
    )
    parser.add_argument(
        "--source",
        help="with --model: its save_pretrained directory, for the "
        "pipeline and the reference design (skipped without it)",
    )
    parser.add_argument(
        "--work",
        default="~/.cache/fillmask-bench",
        help="cache for the random model and the reference export",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="threads for PyTorch and onnxruntime alike (default 2)",
    )
    parser.add_argument(
        "--out",
        default=str(DOCS_BENCH),
        help="where results.json, results.md and chart.png go",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated parts to leave out: small, flops, pi, startup, http, service, "
        "memory (and latency, with --update)",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="merge the parts run into OUT/results.json instead of starting afresh: the others "
        "keep their figures, and meta.updated says which parts were run again, when",
    )
    parser.add_argument(
        "--in-process",
        choices=("fill", "predict"),
        default="fill",
        help="the service-cost part's in-process side: FillService.fill (default) or "
        "the Predictor alone",
    )
    parser.add_argument(
        "--service-against",
        default="eb3ff83",
        help="the service-cost part also serves this git revision beside the current code, in "
        "the same repetitions (default eb3ff83: the code before issue 18); '' for none",
    )
    return parser.parse_args(argv)


def int_key(key):
    """A JSON object key as the results had it: token and client counts are ints."""
    return int(key) if key.isdigit() else key


def new_results(args, bench_models, command, reps, now):
    """A fresh results document: what was run, where and how."""
    return {
        "meta": {
            "weights": bench_models.label,
            "random_weights": bench_models.random_weights,
            "command": command,
            "date": now,
            "machine": machine.describe(),
            "versions": machine.versions(),
            "threads": args.threads,
            "latency_reps": reps,
            "quick": args.quick,
            "load_average_before": machine.load_average(),
        }
    }


def main(argv=None):
    """Run every part, print progress, write the outputs; exit 1 if a target is missed."""
    args = get_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    started = time.perf_counter()
    work = Path(args.work).expanduser()
    if args.model:
        bench_models = models.given_models(args.model, args.source, work)
    else:
        bench_models = models.random_models(work / "random-bert-base-chinese")
    print(f"weights: {bench_models.label}", flush=True)
    reps = 8 if args.quick else 40
    command = (
        "python bench.py"
        + (" --quick" if args.quick else "")
        + (f" --model {args.model}" if args.model else "")
        + (f" --threads {args.threads}" if args.threads != 2 else "")
        + (f" --in-process {args.in_process}" if args.in_process != "fill" else "")
    )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if args.update:
        text = (Path(args.out) / "results.json").read_text(encoding="utf-8")
        # JSON made the token counts (16, 64, ...) strings; the report indexes them by number.
        results = json.loads(text, object_hook=lambda d: {int_key(k): v for k, v in d.items()})
        parts = [p for p in PARTS if p not in skip]
        results["meta"].setdefault("updated", []).append(
            {"parts": parts, "date": now, "command": command + " --update --skip " + args.skip}
            | {"load_average_before": machine.load_average()}
        )
    else:
        skip.discard("latency")  # the other parts compare against it
        results = new_results(args, bench_models, command, reps, now)
    if "latency" not in skip:
        print(f"[1/6] single-request latency, {reps} interleaved repetitions ...", flush=True)
        small = None
        if "small" not in skip:
            small = (shapes.SMALL, shapes.bench_models(shapes.SMALL, work))
        results["latency"] = comparison.run(
            bench_models, small, args.threads, reps, TOKENS, args.quick
        )
    if "flops" not in skip:
        print("[2/6] FLOPs and GEMM peak ...", flush=True)
        results["flops"] = flops.run(
            results["latency"], args.threads, bench_models.model_dir, TOKENS
        )
    if "pi" not in skip:
        print("[3/6] model shapes: measured here, ESTIMATED for a Raspberry Pi ...", flush=True)
        results["pi"] = pi_estimate.run(work, args.threads, 5 if args.quick else 20, PI_TOKENS)
    if "startup" not in skip:
        print("[4/6] cold start, load time, peak RSS (one fresh process each) ...", flush=True)
        names = [n for n in results["latency"]["summary"]]  # the variants that loaded
        results["startup"] = memory.measure(
            names, bench_models, args.threads, 2 if args.quick else 5
        )
        paths = {
            "ours-fp32": bench_models.model_dir / "model.onnx",
            "ours-int8": bench_models.model_dir / "model.int8.onnx",
            "reference": bench_models.reference_onnx,
        }
        paths = {name: path for name, path in paths.items() if path and path.is_file()}
        results["session_load_s"] = memory.session_load_times(
            paths, args.threads, 2 if args.quick else 5
        )
    if "http" not in skip:
        print("[5/6] HTTP load through Gunicorn ...", flush=True)
        results["http"] = http_load.run(
            bench_models, 3 if args.quick else 8, 2 if args.quick else 3, CLIENTS, HTTP_TOKENS
        )
    if "service" not in skip:
        print("[6/6] the service's own cost: HTTP minus in process, interleaved ...", flush=True)
        precisions = [p for p in ("fp32", "int8") if (bench_models.model_dir / FILES[p]).is_file()]
        results["service_cost"] = service_cost.measure(
            bench_models.model_dir,
            precisions,
            args.threads,
            reps=15 if args.quick else 40,
            use=args.in_process,
            against=args.service_against or None,
        )
    if "memory" not in skip:
        print("[+] shared weights: summed PSS of 1, 2, 4 workers, cold start ...", flush=True)
        results["workers_memory"] = workers_memory.run(bench_models.model_dir, work, args.quick)
    record = results["meta"]["updated"][-1] if args.update else results["meta"]
    record["seconds"] = round(time.perf_counter() - started)
    record["load_average_after"] = machine.load_average()
    text = report.write_all(results, args.out)
    if "pi" in results and Path(args.out).resolve() == DOCS_BENCH:
        pi_report.write_doc(results)  # docs/raspberry-pi.md shows this run's table, no other
    if "workers_memory" in results:
        with open(Path(args.out) / "results.md", "a", encoding="utf-8") as handle:
            handle.write("\n## Memory per worker: shared weights\n\n")
            handle.write(weights_report.markdown(results) + "\n")
        if Path(args.out).resolve() == DOCS_BENCH:
            weights_report.write_docs(results)  # docs/performance.md and raspberry-pi.md
    print(text)
    print(f"wrote {args.out}/results.json, results.md, chart.png in {record['seconds']} s")
    return 1 if any(t["passed"] is False for t in results["targets"]) else 0


if __name__ == "__main__":
    sys.exit(main())
