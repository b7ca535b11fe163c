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
import http.client
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

    def __init__(self, model_dir, precision, threads, use="fill", share_weights=True):
        from fillmask.config import Config

        self.config = Config(
            model_dir=str(model_dir),
            model_precision=precision,
            ort_threads=threads,
            batching=False,
            cache_size=0,
            share_weights=share_weights,
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
            # With a baseline from before shared weights (issue 19), every side loads the model
            # file as it is: the same sessions, so that the costs compare the service alone.
            env.update(ORT_THREADS=str(threads), SHARE_WEIGHTS="0" if worktree else "1")
            servers[precision] = gunicorn_server(model_dir, **env).start()
            if worktree:
                baselines[precision] = gunicorn_server(model_dir, root=worktree, **env).start()
            sides[precision] = InProcess(model_dir, precision, threads, use, not worktree)
            sessions[precision] = requests.Session()
        texts = {t: load_texts(bench_text(t)) for t in tokens}
        names = ["http", "requests", "inproc", "floor"] + (["baseline"] if worktree else [])
        times = {p: {t: {n: [] for n in names} for t in tokens} for p in precisions}
        clients = {p: Client(servers[p].url) for p in precisions}
        base = {p: Client(baselines[p].url) for p in baselines}
        for rep in range(warmup + reps):
            for t in tokens:
                body = {"text": texts[t][rep % len(texts[t])]}
                for precision in precisions:
                    runs = _runs(
                        clients[precision],
                        (sessions[precision], servers[precision].url),
                        sides[precision],
                        base.get(precision),
                        body,
                    )
                    order = names[rep % len(names) :] + names[: rep % len(names)]  # first in turn
                    for side_name in order:
                        time.sleep(0.01)  # let the other sides' threads go idle
                        start = time.perf_counter()
                        runs[side_name]()
                        if rep >= warmup:
                            elapsed = (time.perf_counter() - start) * 1e3
                            times[precision][t][side_name].append(elapsed)
        validation = _validation_us(next(iter(sides.values())), texts[tokens[0]])
        what = next(iter(sides.values())).what
        hot = _back_to_back(clients[precisions[0]])
    finally:
        for server in [*servers.values(), *baselines.values()]:
            server.stop()
        if worktree:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", worktree])
    out = {
        "per_request": {p: {t: _summary(times[p][t]) for t in tokens} for p in precisions},
        "validation_us": validation,
        "in_process": what,
        "config": f"WORKERS=1, BATCHING=0, CACHE_SIZE=0, ORT_THREADS={threads}"
        + (", SHARE_WEIGHTS=0 on every side" if worktree else ""),
        "reps": reps,
        "floor_back_to_back_ms": hot,
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


def _back_to_back(client, n=300):
    """The floor with no pause: ``GET /v2/health/live`` repeated at once, p50 in ms (nothing
    sleeps between requests, so no thread has to be woken from idle)."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        client.get("/v2/health/live")
        samples.append((time.perf_counter() - start) * 1e3)
    return round(float(np.median(samples)), 3)


def _runs(client, session_url, side, baseline, body):
    """Each side of one repetition, by name: a callable doing its request."""
    session, url = session_url
    runs = {
        "http": lambda: client.post("/predict", body),
        "requests": lambda: session.post(
            url + "/predict", json=body, timeout=30
        ).raise_for_status(),
        "inproc": lambda: side.call(body),
        "floor": lambda: client.get("/v2/health/live"),
    }
    if baseline is not None:
        runs["baseline"] = lambda: baseline.post("/predict", body)
    return runs


class Client:
    """One keep-alive connection through the standard library's ``http.client``: the leanest
    client, so that what the round trip costs is the service's, not the client library's
    (``requests`` adds about 0.9 ms per request on its own, measured here beside it)."""

    def __init__(self, url):
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def post(self, path, body):
        headers = {"Content-Type": "application/json"}
        self.connection.request("POST", path, json.dumps(body).encode(), headers)
        return self.read()

    def get(self, path):
        self.connection.request("GET", path)
        return self.read()

    def read(self):
        response = self.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        return data


def _summary(samples):
    """Medians of each side and of the per-pair difference, in ms (also the baseline's)."""
    http, inproc = np.asarray(samples["http"]), np.asarray(samples["inproc"])
    out = {
        "http_p50_ms": round(float(np.median(http)), 2),
        "in_process_p50_ms": round(float(np.median(inproc)), 2),
        "service_cost_ms": round(float(np.median(http - inproc)), 2),
        "n": int(http.size),
    }
    if samples.get("requests"):  # the same through requests, as the figures were taken
        client = np.asarray(samples["requests"])
        out["requests_p50_ms"] = round(float(np.median(client)), 2)
        out["requests_cost_ms"] = round(float(np.median(client - inproc)), 2)
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
    cell = {
        "http_p50_ms": "HTTP round trip p50",
        "in_process_p50_ms": "in process p50",
        "service_cost_ms": "service's cost (median of HTTP − in process, pair by pair)",
        "floor_p50_ms": "the floor",
        "requests_cost_ms": "cost with requests as the client",
    }
    against = cost.get("against")
    if against:
        cell |= {"baseline_http_p50_ms": f"{against}: HTTP p50"}
        cell |= {"baseline_service_cost_ms": f"{against}: cost"}
    lines = [
        "",
        f"The service's own cost per request ({cost['config']}, one client, http.client with one "
        f"keep-alive connection; in process: {cost['in_process']}; {cost['reps']} interleaved "
        "repetitions, each side first in turn, 10 ms apart):",
        "",
        "| precision | tokens | " + " | ".join(cell.values()) + " |",
        "|---|---|" + "---|" * len(cell),
    ]
    for precision, per in cost["per_request"].items():
        for tokens, row in per.items():
            values = [f"{row[k]} ms" if k in row else "–" for k in cell]
            lines.append(f"| {precision} | {tokens} | " + " | ".join(values) + " |")
    lines += [
        "",
        "The floor: the round trip of `GET /v2/health/live` to the same worker in the same "
        "repetitions (Gunicorn, Flask and its hooks, the socket, the client, and waking idle "
        "threads: what any request costs here); the rest of the service's cost is /predict's own "
        "reading, parsing, formatting and sending. The issue's figures (2–2.5 ms) were taken "
        "with `requests`, which costs about 0.9 ms more per request by itself: the last column"
        + (f"; {against}: the code of that revision served beside this one." if against else "."),
    ]
    if cost.get("floor_back_to_back_ms"):
        lines[-1] += (
            f" The same floor with no pause between requests: {cost['floor_back_to_back_ms']} ms "
            "(median of 300): most of the floor is waking the worker's idle threads (and the "
            "client), which a lone user's requests, seconds apart, always pay."
        )
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
