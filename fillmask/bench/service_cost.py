"""The service's own cost per request: HTTP round trip minus the in-process call, same texts.

One Gunicorn worker per precision (WORKERS=1, BATCHING=0, CACHE_SIZE=0, ORT_THREADS as the
in-process side) and, in this process, the same work without HTTP: ``FillService.fill`` on the
``FillRequest`` the native protocol parses. Every repetition sends a text over HTTP and runs it
in process, back to back, the order alternating; the cost is the median of those per-pair
differences. Also timed alone: request validation (body → ``FillRequest``), in µs.

``against``: a git revision of this project (say the commit before issue 18, eb3ff83) served
beside the current code, from its own worktree, in the same interleaved repetitions: its HTTP
round trip and its cost against the same in-process side. Whether the cost grew is then read
from one run on one machine, not from figures taken on another day (this machine's speed varies
by tens of percent between hours).

    python -m fillmask.bench.service_cost MODEL_DIR --against eb3ff83
"""

import argparse
import json
import logging
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

from .http_load import ROOT, gunicorn_server, load_texts
from .latency import bench_text
from .variants import predict

logger = logging.getLogger(__name__)


class InProcess:
    """The in-process side: ``call(body)`` does what a worker does minus HTTP and formatting."""

    def __init__(self, model_dir, precision, threads, use="fill"):
        from fillmask.config import Config

        self.config = Config(
            model_dir=str(model_dir),
            model_precision=precision,
            ort_threads=threads,
            batching=False,
            cache_size=0,
        )
        try:
            if use != "fill":
                raise ImportError(use)
            from fillmask.requests import Shapes
            from fillmask.service import FillService
        except ImportError:  # before fillmask/service.py (or asked for): the predictor alone
            from fillmask.predictor import Predictor

            self.what = "the Predictor alone (no request validation, no FillService)"
            self.predictor = Predictor(
                model_dir, precision=precision, max_length=self.config.max_length, threads=threads
            )
            self.shapes = None
            return
        self.what = "FillService.fill on the FillRequest parsed by Shapes.predict"
        self.shapes = Shapes(self.config)
        self.service = FillService(self.config)
        self.service.load(strict=True)

    def validate(self, body):
        """Request validation only: the JSON body (a dict) → ``FillRequest``."""
        return self.shapes.predict(body)

    def call(self, body):
        """Validation and the model run, as the worker does them."""
        if self.shapes is None:
            return predict(self.predictor, [body["text"]], 5)
        return self.service.fill(self.shapes.predict(body))


def measure(
    model_dir, precisions, threads, tokens=(16, 64), reps=40, warmup=5, use="fill", against=None
):
    """Per precision and token count: HTTP p50, in-process p50, and their paired difference.

    ``use``: "fill" (``FillService.fill``) or "predict" (``variants.predict``: the predictor
    alone).
    ``against``: a git revision served beside this code (``baseline_*`` figures).
    """
    servers, sides, sessions, baselines = {}, {}, {}, {}
    worktree = _worktree(against) if against else None
    try:
        for precision in precisions:
            env = dict(WORKERS="1", BATCHING="0", MODEL_PRECISION=precision)
            env["ORT_THREADS"] = str(threads)
            servers[precision] = gunicorn_server(model_dir, **env).start()
            if worktree:
                baselines[precision] = gunicorn_server(model_dir, root=worktree, **env).start()
            sides[precision] = InProcess(model_dir, precision, threads, use)
            sessions[precision] = requests.Session()
        texts = {t: load_texts(bench_text(t)) for t in tokens}
        names = ["http", "inproc", "floor"] + (["baseline"] if worktree else [])
        times = {p: {t: {n: [] for n in names} for t in tokens} for p in precisions}
        for rep in range(warmup + reps):
            for t in tokens:
                body = {"text": texts[t][rep % len(texts[t])]}
                for precision in precisions:
                    pair = _pair(
                        servers[precision].url, sessions[precision], sides[precision], body
                    )
                    url, session = servers[precision].url, sessions[precision]
                    pair.append(
                        ("floor", lambda url=url, s=session: s.get(url + "/v2/health/live"))
                    )
                    if worktree:
                        pair += _pair(baselines[precision].url, sessions[precision], None, body)
                        pair[-1] = ("baseline", pair[-1][1])
                    pair = pair[rep % len(pair) :] + pair[: rep % len(pair)]  # each first in turn
                    for side, run in pair:
                        time.sleep(0.01)  # let the other side's threads go idle
                        start = time.perf_counter()
                        run()
                        if rep >= warmup:
                            times[precision][t][side].append((time.perf_counter() - start) * 1e3)
        validation = _validation_us(next(iter(sides.values())), texts[tokens[0]])
        what = next(iter(sides.values())).what
    finally:
        for server in [*servers.values(), *baselines.values()]:
            server.stop()
        if worktree:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", worktree])
    out = {
        "per_request": {p: {t: _summary(times[p][t]) for t in tokens} for p in precisions},
        "validation_us": validation,
        "in_process": what,
        "config": f"WORKERS=1, BATCHING=0, CACHE_SIZE=0, ORT_THREADS={threads}",
        "reps": reps,
    }
    if against:
        out["against"] = against
    return out


def _worktree(revision):
    """A detached worktree of this repository at ``revision`` (removed after the run)."""
    path = tempfile.mkdtemp(prefix="fillmask-baseline-")
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--force", "--detach", path, revision],
        check=True,
        capture_output=True,
    )
    return path


def _pair(url, session, side, body):
    """The runs of one repetition, as (name, callable): HTTP, then in process (if ``side``)."""

    def http():
        response = session.post(f"{url}/predict", json=body, timeout=30)
        response.raise_for_status()

    return [("http", http)] + ([("inproc", lambda: side.call(body))] if side else [])


def _summary(samples):
    """Medians of each side and of the per-pair difference, in ms (also the baseline's)."""
    http, inproc = np.asarray(samples["http"]), np.asarray(samples["inproc"])
    out = {
        "http_p50_ms": round(float(np.median(http)), 2),
        "in_process_p50_ms": round(float(np.median(inproc)), 2),
        "service_cost_ms": round(float(np.median(http - inproc)), 2),
        "n": int(http.size),
    }
    if samples.get("floor"):  # the least a request costs: Gunicorn, Flask, its hooks, the client
        out["floor_p50_ms"] = round(float(np.median(samples["floor"])), 2)
    if samples.get("baseline"):
        base = np.asarray(samples["baseline"])
        out["baseline_http_p50_ms"] = round(float(np.median(base)), 2)
        out["baseline_service_cost_ms"] = round(float(np.median(base - inproc)), 2)
    return out


def _validation_us(side, texts, reps=2000):
    """Median µs of validating one /predict body, or None before request shapes exist."""
    if side.shapes is None:
        return None
    samples = []
    for i in range(reps):
        body = {"text": texts[i % len(texts)], "top_k": 5}
        start = time.perf_counter()
        side.validate(body)
        samples.append((time.perf_counter() - start) * 1e6)
    return {"p50_us": round(float(np.median(samples)), 1), "n": reps}


def markdown(cost):
    """The service-cost table for results.md."""
    lines = [
        "",
        f"The service's own cost per request ({cost['config']}, one client; in process: "
        f"{cost['in_process']}; {cost['reps']} interleaved pairs, the order alternating):",
        "",
        "| precision | tokens | HTTP round trip p50 | in process p50 | "
        "service's cost (median of HTTP − in process, pair by pair) | of which the floor |",
        "|---|---|---|---|---|---|",
    ]
    if cost.get("against"):
        lines[-2] += f" {cost['against']}: HTTP p50 | {cost['against']}: cost |"
        lines[-1] += "---|---|"
    for precision, per in cost["per_request"].items():
        for tokens, row in per.items():
            lines.append(
                f"| {precision} | {tokens} | {row['http_p50_ms']} ms | "
                f"{row['in_process_p50_ms']} ms | {row['service_cost_ms']} ms | "
                + (f"{row['floor_p50_ms']} ms |" if "floor_p50_ms" in row else "– |")
            )
            if "baseline_http_p50_ms" in row:
                lines[-1] += (
                    f" {row['baseline_http_p50_ms']} ms | {row['baseline_service_cost_ms']} ms |"
                )
    lines += [
        "",
        "The floor: the round trip of `GET /v2/health/live` to the same worker in the same "
        "repetitions (Gunicorn, Flask and its hooks, the socket and the client: what any request "
        "costs); the rest of the service's cost is /predict's own reading, parsing, formatting "
        "and sending.",
    ]
    if cost.get("validation_us"):
        v = cost["validation_us"]
        lines += [
            "",
            f"Request validation alone (a /predict body → `FillRequest`, pydantic): "
            f"{v['p50_us']} µs per request (median of {v['n']}).",
        ]
    return lines


def main(argv=None):
    """``python -m fillmask.bench.service_cost MODEL_DIR [--against REV]``: print the table."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--against", help="a git revision served beside this code")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    precisions = ["fp32"] + (["int8"] if (args.model_dir / "model.int8.onnx").is_file() else [])
    cost = measure(args.model_dir, precisions, args.threads, reps=args.reps, against=args.against)
    if args.json:
        args.json.write_text(json.dumps(cost, indent=1) + "\n")
    print("\n".join(markdown(cost)))


if __name__ == "__main__":
    main()
