"""Throughput and latency through a real Gunicorn on loopback, with N concurrent clients.

Each client is a thread with its own keep-alive connection sending ``POST /predict`` back to
back. Every run is bounded both in time and in request count. The server's LRU cache is turned
off (CACHE_SIZE=0) and the texts vary, so every request reaches the model.
"""

import logging
import os
import re
import sys
import threading
import time
from pathlib import Path

import numpy as np
import requests

from .latency import bench_text

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


def gunicorn_server(model_dir, **env):
    """A ``GunicornServer`` (tests/live.py) for ``model_dir``; env overrides the defaults."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.live import GunicornServer

    return GunicornServer(model_dir, CACHE_SIZE="0", **env)


def load_texts(base, count=32):
    """``count`` different texts of the same token length as ``base`` (one character changed)."""
    from .latency import FILLER

    texts = []
    for i in range(count):
        position = i % max(1, base.index("[MASK]"))
        texts.append(base[:position] + FILLER[i % len(FILLER)] + base[position + 1 :])
    return texts


def cpu_seconds(pids):
    """User + system CPU time used so far by these processes (Linux /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def run_load(url, texts, clients, seconds, max_requests=5000, pids=()):
    """Drive ``clients`` concurrent clients for ``seconds`` (or ``max_requests`` in all).

    With ``pids`` (the server's workers) it also records the CPU time they spent: CPU per
    request hardly depends on what else runs on the machine, unlike throughput.
    """
    latencies, errors = [], []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    budget = [max_requests]

    def client(index):
        session = requests.Session()
        i = index
        while time.monotonic() < deadline:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            text = texts[i % len(texts)]
            i += clients
            start = time.perf_counter()
            try:
                response = session.post(
                    url + "/predict", json={"text": text, "top_k": 5}, timeout=30
                )
                ok = response.status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                (latencies if ok else errors).append(elapsed)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    cpu_before = cpu_seconds(pids)
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return {
        "clients": clients,
        "errors": len(errors),
        "seconds": wall,
        "cpu_seconds": cpu_seconds(pids) - cpu_before,
        "latencies_ms": latencies,
    }


def worker_peak_rss_mb(server):
    """Largest peak RSS (VmHWM) among the server's workers, in MB."""
    peaks = []
    for pid in server.worker_pids():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return round(max(peaks), 1) if peaks else None


def merge(runs):
    """Combine the rounds of one (server, clients) cell: totals, and pooled percentiles."""
    latencies = np.asarray([ms for r in runs for ms in r["latencies_ms"]] or [np.nan])
    seconds = sum(r["seconds"] for r in runs)
    answered = sum(len(r["latencies_ms"]) for r in runs)
    return {
        "clients": runs[0]["clients"],
        "requests": answered,
        "errors": sum(r["errors"] for r in runs),
        "seconds": round(seconds, 2),
        "throughput_rps": round(answered / seconds, 1),
        "p50_ms": round(float(np.median(latencies)), 1),
        "p95_ms": round(float(np.percentile(latencies, 95)), 1),
        "cpu_ms_per_request": round(
            sum(r["cpu_seconds"] for r in runs) * 1000 / max(1, answered), 1
        ),
        "rounds": len(runs),
    }


def measure(servers, texts, levels, seconds, rounds):
    """Load every server at every client count, round-robin over servers within each round.

    ``servers``: name → started server. Returns name → clients → merged result.
    """
    raw = {name: {level: [] for level in levels} for name in servers}
    for _ in range(rounds):
        for level in levels:
            for name, server in servers.items():
                run_load(server.url, texts, level, min(1.0, seconds / 4))  # warm-up
                raw[name][level].append(
                    run_load(server.url, texts, level, seconds, pids=server.worker_pids())
                )
    return {name: {level: merge(runs) for level, runs in per.items()} for name, per in raw.items()}


def run(bench_models, seconds, rounds, clients, tokens):
    """Gunicorn with the default settings: fp32 batching on / off, int8 batching on."""
    configs = {
        "fp32, batching on": {},
        "fp32, batching off": {"BATCHING": "0"},
        "int8, batching on": {"MODEL_PRECISION": "int8"},
    }
    if not (bench_models.model_dir / "model.int8.onnx").is_file():
        del configs["int8, batching on"]
    texts = load_texts(bench_text(tokens))
    servers = {}
    try:
        for name, env in configs.items():
            servers[name] = gunicorn_server(bench_models.model_dir, **env).start()
        results = measure(servers, texts, clients, seconds, rounds)
        rss = {name: worker_peak_rss_mb(s) for name, s in servers.items()}
        env = servers["fp32, batching on"].env
    finally:
        for server in servers.values():
            server.stop()
    from fillmask.config import Config

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
        "text_tokens": tokens,
        "seconds": seconds,
        "rounds": rounds,
    }
