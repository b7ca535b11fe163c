"""Cold start, load time and peak RSS of one process serving each variant.

Each measurement is a fresh child process (``python -m fillmask.bench.memory ...``) so nothing
loaded for another variant is counted. For our model the child goes through ``create_app``, the
code a Gunicorn worker runs after the fork, so "process start → first answer" bounds the time a
new worker needs before it can answer (the fork itself skips the interpreter start).
"""

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


def peak_rss_mb():
    """This process's peak resident set size so far, in MB.

    VmHWM, not ``getrusage``: Linux carries ``ru_maxrss`` over from the parent through fork and
    exec, so a child of the (large) benchmark process would report the parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ours_answerer(model_dir, precision, threads):
    """Build the app exactly as a worker does; return a function answering a list of texts."""
    from app import create_app
    from fillmask.config import Config

    # The served defaults (MAX_LENGTH 64, BATCH_MAX 16): a 128-token text is windowed to 64.
    config = Config(
        model_dir=str(model_dir),
        model_precision=precision,
        ort_threads=threads,
        cache_size=0,
    )
    client = create_app(config).test_client()  # strict by default: a model that fails raises

    def answer(texts):
        body = {"texts": texts} if len(texts) > 1 else {"text": texts[0]}
        response = client.post("/predict", json=body)
        if response.status_code != 200:
            raise RuntimeError(response.get_data(as_text=True))

    return answer


def other_answerer(variant, args):
    """The pipeline or the reference design, answering texts one by one (neither batches)."""
    from .models import BenchModels
    from .variants import load_variant

    # Only the paths matter here; the label is the parent's business.
    models = BenchModels(
        Path(args.model_dir),
        args.source and Path(args.source),
        args.reference and Path(args.reference),
        random_weights=True,
    )
    runner = load_variant(variant, models, args.threads)

    def answer(texts):
        for text in texts:
            runner.predict_mask(text)

    return answer


def probe(args):
    """Child side: load, answer once (cold start), then the heavier requests; print JSON."""
    from .latency import bench_text

    started = time.perf_counter()
    if args.variant.startswith("ours-"):
        answer = ours_answerer(args.model_dir, args.variant.split("-", 1)[1], args.threads)
    else:
        answer = other_answerer(args.variant, args)
    loaded = time.perf_counter()
    answer([bench_text(16)])
    first_answer_wall = time.time()
    first = time.perf_counter()
    answer([bench_text(64)])
    answer([bench_text(128)])
    # A full micro-batch of 64-token texts: the largest run a default worker makes.
    answer([bench_text(64)] * 16)
    print(
        json.dumps(
            {
                "variant": args.variant,
                "load_s": round(loaded - started, 3),
                "first_answer_s": round(first - loaded, 3),
                "first_answer_wall": first_answer_wall,
                "peak_rss_mb": round(peak_rss_mb(), 1),
            }
        )
    )


def run_probe(variant, models, threads):
    """Parent side: launch one child, return its measurements plus the cold start time."""
    command = [
        sys.executable,
        "-m",
        "fillmask.bench.memory",
        "--variant",
        variant,
        "--model-dir",
        str(models.model_dir),
        "--threads",
        str(threads),
    ]
    if models.source_dir:
        command += ["--source", str(models.source_dir)]
    if models.reference_onnx:
        command += ["--reference", str(models.reference_onnx)]
    launched = time.time()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{variant} probe failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["cold_start_s"] = round(result.pop("first_answer_wall") - launched, 3)
    return result


def measure(variants, models, threads, reps):
    """Probe every variant ``reps`` times, round-robin; medians per variant."""
    raw = {name: [] for name in variants}
    for rep in range(reps):
        shift = rep % len(variants)
        for name in list(variants[shift:]) + list(variants[:shift]):
            raw[name].append(run_probe(name, models, threads))
    summary = {}
    for name, runs in raw.items():
        summary[name] = {
            key: round(float(np.median([r[key] for r in runs])), 3)
            for key in ("cold_start_s", "load_s", "first_answer_s", "peak_rss_mb")
        }
        summary[name]["runs"] = len(runs)
    return summary


def session_load_times(paths, threads, reps):
    """Median seconds to create each ONNX session (name → path), interleaved."""
    from fillmask.session import create_session

    times = {name: [] for name in paths}
    for _ in range(reps):
        for name, path in paths.items():
            start = time.perf_counter()
            session = create_session(path, threads)
            times[name].append(time.perf_counter() - start)
            del session
    return {name: round(float(np.median(values)), 3) for name, values in times.items()}


def main(argv=None):
    """Entry point of the child process."""
    parser = argparse.ArgumentParser(description="one cold-start / peak-RSS probe")
    parser.add_argument("--variant", required=True)
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--source")
    parser.add_argument("--reference")
    parser.add_argument("--threads", type=int, default=1)
    probe(parser.parse_args(argv))


if __name__ == "__main__":
    main()
