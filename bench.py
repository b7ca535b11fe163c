"""Benchmark this service against transformers' pipeline and the reference design, one run.

    python bench.py --quick                      # random bert-base-chinese-sized model, ~4 min
    python bench.py                              # more repetitions, ~12 min
    python bench.py --model models/bert-base-chinese --source ./bert-base-chinese

Measures single-request latency (16/64/128 tokens) of the pipeline, the full-logits reference
design and ours (fp32, int8), interleaved; ratios to the pipeline; cold start, load time and peak
RSS of one process each; FLOPs per request against a GEMM peak measured here; and throughput /
p95 through a real Gunicorn on loopback at 1, 4 and 16 clients with micro-batching on and off.
Writes docs/bench/results.json, results.md and chart.png. Without --model it builds (once, cached
in --work) a RANDOMLY INITIALISED model with bert-base-chinese's exact architecture and says so in
every output. Needs requirements-dev.txt (torch, transformers, matplotlib).
"""

import argparse
import gc
import json
import os
import platform
import re
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local; never wait on the hub

from fillmask.bench import flops, http_load, latency, memory, models, report  # noqa: E402
from fillmask.bench.reference import compare_graphs  # noqa: E402
from fillmask.bench.variants import VARIANTS, load_variant  # noqa: E402
from fillmask.config import Config  # noqa: E402

TOKENS = (16, 64, 128)
CLIENTS = (1, 4, 16)
HTTP_TOKENS = 16


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
        default=str(ROOT / "docs" / "bench"),
        help="where results.json, results.md and chart.png go",
    )
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to leave out: startup, flops, http"
    )
    return parser.parse_args(argv)


def machine():
    """One line describing the CPU, cores, memory and OS."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory_text = f", {mem_kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        memory_text = ""
    return (
        f"{cpu} ({platform.machine()}), {os.cpu_count()} cores{memory_text}, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def load_average():
    """The 1/5/15-minute load averages: how busy the machine was around the run."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def versions():
    """Library versions the numbers depend on."""
    import onnxruntime
    import torch
    import transformers

    return {
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def run_latency(bench_models, args, reps):
    """Interleaved single-request latency; summaries, ratios and top-1 agreement."""
    loaded = {name: load_variant(name, bench_models, args.threads) for name in VARIANTS}
    variants = {name: v for name, v in loaded.items() if v is not None}
    texts = {tokens: latency.bench_text(tokens) for tokens in TOKENS}
    agreement = latency.top1_agreement(variants, texts)
    samples = latency.measure(variants, texts, reps)
    result = {
        "texts": texts,
        "agreement": agreement,
        "reps": reps,
        "summary": {
            name: {t: latency.summarise(v) for t, v in per.items()} for name, per in samples.items()
        },
        "ratios_to_pipeline": {},
        "ours_fp32_vs_reference": {},
    }
    if "pipeline" in samples:
        result["ratios_to_pipeline"] = latency.pairwise_ratios(samples, "pipeline")
    if "reference" in samples:
        # ours ÷ reference, pair by pair (below 1 = ours faster).
        inverse = latency.pairwise_ratios(
            {"ref": samples["ours-fp32"], "ours": samples["reference"]}, "ref"
        )
        result["ours_fp32_vs_reference"] = inverse["ours"]
    del loaded, variants
    gc.collect()
    if bench_models.reference_onnx:
        result["graphs_at_64_tokens"] = compare_graphs(
            bench_models.model_dir / "model.onnx",
            bench_models.reference_onnx,
            args.threads,
            reps=30 if args.quick else 100,
        )
    return result


def run_flops(lat, threads, model_dir):
    """GEMM peak here, and FLOPs / achieved rate of ours fp32 per token count."""
    peak = flops.gemm_peak(threads)
    arch = flops.architecture(json.loads((model_dir / "manifest.json").read_text("utf-8")))
    per_request = {}
    for tokens in TOKENS:
        p50 = lat["summary"]["ours-fp32"][tokens]["p50_ms"]
        row = flops.achieved(p50, tokens, **arch)
        row["gflop_reference"] = round(flops.bert_flops(tokens, full_logits=True, **arch) / 1e9, 3)
        row["fraction_of_peak"] = round(row["gflops_achieved"] / peak["gflops"], 3)
        row["lower_bound_ms"] = round(row["gflop"] / peak["gflops"] * 1000, 1)
        per_request[tokens] = row
    return {
        "gemm_peak": peak,
        "per_request": per_request,
        "architecture": arch,
        "note": "matrix products only, 2 FLOPs per multiply-add",
    }


def run_http(bench_models, seconds, rounds):
    """Gunicorn with the default settings: fp32 batching on / off, int8 batching on."""
    configs = {
        "fp32, batching on": {},
        "fp32, batching off": {"BATCHING": "0"},
        "int8, batching on": {"MODEL_PRECISION": "int8"},
    }
    if not (bench_models.model_dir / "model.int8.onnx").is_file():
        del configs["int8, batching on"]
    texts = http_load.load_texts(latency.bench_text(HTTP_TOKENS))
    servers = {}
    try:
        for name, env in configs.items():
            servers[name] = http_load.gunicorn_server(bench_models.model_dir, **env).start()
        results = http_load.measure(servers, texts, CLIENTS, seconds, rounds)
        rss = {name: http_load.worker_peak_rss_mb(s) for name, s in servers.items()}
        env = servers["fp32, batching on"].env
    finally:
        for server in servers.values():
            server.stop()
    defaults = Config()
    threads = env.get("THREADS") or re.search(
        r'"THREADS", "(\d+)"', (ROOT / "gunicorn.conf.py").read_text()
    ).group(1)
    config = (
        f"WORKERS={env['WORKERS']}, THREADS={threads}, ORT_THREADS={env['ORT_THREADS']}, "
        f"BATCH_MAX={defaults.batch_max}, BATCH_WINDOW_MS={defaults.batch_window_ms:g}, "
        "CACHE_SIZE=0"
    )
    return {
        "servers": results,
        "worker_peak_rss_mb": rss,
        "config": config,
        "text_tokens": HTTP_TOKENS,
        "seconds": seconds,
        "rounds": rounds,
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
    )
    results = {
        "meta": {
            "weights": bench_models.label,
            "random_weights": bench_models.random_weights,
            "command": command,
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
            "versions": versions(),
            "threads": args.threads,
            "latency_reps": reps,
            "quick": args.quick,
            "load_average_before": load_average(),
        }
    }
    print(f"[1/4] single-request latency, {reps} interleaved repetitions ...", flush=True)
    results["latency"] = run_latency(bench_models, args, reps)
    if "flops" not in skip:
        print("[2/4] FLOPs and GEMM peak ...", flush=True)
        results["flops"] = run_flops(results["latency"], args.threads, bench_models.model_dir)
    if "startup" not in skip:
        print("[3/4] cold start, load time, peak RSS (one fresh process each) ...", flush=True)
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
        print("[4/4] HTTP load through Gunicorn ...", flush=True)
        results["http"] = run_http(bench_models, 3 if args.quick else 8, 2 if args.quick else 3)
    results["meta"]["seconds"] = round(time.perf_counter() - started)
    results["meta"]["load_average_after"] = load_average()
    text = report.write_all(results, args.out)
    print(text)
    print(f"wrote {args.out}/results.json, results.md, chart.png in {results['meta']['seconds']} s")
    return 1 if any(t["passed"] is False for t in results["targets"]) else 0


if __name__ == "__main__":
    sys.exit(main())
