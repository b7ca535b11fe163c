"""Memory of a whole Gunicorn server: summed PSS over master + workers, per-worker private memory.

PSS (proportional set size, ``/proc/PID/smaps_rollup``) charges each page shared by N processes
1/N to each, so the sum over a server's processes is what the server costs the machine, and the
growth per extra worker is what one more worker costs. Private memory (pages no other process
maps) is what a worker holds alone. Every figure is taken after every worker answered requests
(seen by its CPU time growing), not just after it booted. ``itemise`` answers "what does a
worker hold besides the weights": one fresh process, measured after each loading step.
"""

import json
import logging
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

from fillmask.session import weights_cache_dir

from .http_load import cpu_seconds, gunicorn_server
from .latency import bench_text

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
FILE = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_File", "Private_Clean", "Private_Dirty")


def rollup(pid):
    """The memory fields of one process's smaps_rollup, in MB."""
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3 and parts[0].rstrip(":") in FIELDS:
            values[parts[0].rstrip(":")] = int(parts[1]) / 1024
    values["Private"] = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return values


def answer_on_every_worker(server, texts, min_cpu_s=0.05, timeout=180):
    """Send requests (8 concurrent clients) until every worker has spent ``min_cpu_s`` on them."""
    pids = server.worker_pids()
    before = {pid: cpu_seconds([pid]) for pid in pids}
    deadline = time.monotonic() + timeout

    def ask(text):
        response = requests.post(server.url + "/predict", json={"text": text}, timeout=60)
        response.raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        while time.monotonic() < deadline:
            list(pool.map(ask, texts))
            waiting = [p for p in pids if cpu_seconds([p]) - before[p] < min_cpu_s]
            if not waiting:
                return pids
    raise RuntimeError(f"workers {waiting} answered nothing in {timeout} s")


def server_memory(model_dir, precision, workers, shared, cache_dir, tokens=64, **env):
    """One Gunicorn with ``workers`` workers: summed PSS and mean private memory, in MB."""
    server = gunicorn_server(
        model_dir,
        WORKERS=str(workers),
        MODEL_PRECISION=precision,
        SHARE_WEIGHTS="1" if shared else "0",
        WEIGHTS_CACHE_DIR=str(cache_dir),
        ORT_THREADS="1",
        **env,
    ).start()
    try:
        texts = [bench_text(tokens)] * 16
        pids = answer_on_every_worker(server, texts)
        workers_now = [rollup(pid) for pid in pids]
        master = rollup(server.proc.pid)
    finally:
        server.stop()
    return {
        "pss_mb": round(master["Pss"] + sum(w["Pss"] for w in workers_now), 1),
        "worker_private_mb": round(float(np.mean([w["Private"] for w in workers_now])), 1),
        "master_pss_mb": round(master["Pss"], 1),
        "ready_s": round(server.ready_s, 2),
    }


def per_extra_worker(table, low=1, high=4):
    """(summed PSS with ``high`` workers − with ``low``) / (high − low), in MB."""
    return round((table[high]["pss_mb"] - table[low]["pss_mb"]) / (high - low), 1)


def measure(model_dir, cache_dir, precisions=("fp32", "int8"), counts=(1, 2, 4)):
    """The memory table: every precision × sharing off (before) / on (after) × worker count."""
    table = {}
    for precision in precisions:
        for shared in (False, True):
            name = f"{precision}, {'shared' if shared else 'per-worker copies'}"
            rows = {n: server_memory(model_dir, precision, n, shared, cache_dir) for n in counts}
            table[name] = {
                "workers": rows,
                "per_extra_worker_mb": per_extra_worker(rows, counts[0], counts[-1]),
            }
            print(f"      {name}: {json.dumps(table[name])}", flush=True)
    return table


def latency_ratio(model_dir, precision, cache_dir, reps=30, threads=2, tokens=(16, 64)):
    """Median ms of one run with the prepacked copy and with the exported file, interleaved,
    and the median of their per-repetition ratios (below 1: the shared copy is faster)."""
    from fillmask.session import create_session

    path = Path(model_dir) / ("model.onnx" if precision == "fp32" else "model.int8.onnx")
    special = json.loads((Path(model_dir) / "manifest.json").read_text())["special_tokens"]
    from fillmask.session import _options, _session

    # What sharing without the prepacked copy would cost: mapped weights, prepacking off.
    unpacked = _options(threads)
    unpacked.add_session_config_entry("session.disable_prepacking", "1")
    sessions = {
        "exported file": create_session(path, threads),
        "shared copy": create_session(path, threads, shared=True, cache_dir=str(cache_dir)),
        "prepacking off": _session(path, unpacked),
    }
    result = {}
    for length in tokens:
        ids = np.full((1, length), 1000, dtype=np.int64)
        ids[0, 0], ids[0, -1], ids[0, length // 2] = special["cls"], special["sep"], special["mask"]
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        times = {name: [] for name in sessions}
        for rep in range(reps + 3):
            names = list(sessions)[rep % 3 :] + list(sessions)[: rep % 3]
            for name, session in ((n, sessions[n]) for n in names):
                start = time.perf_counter()
                session.run(None, feeds)
                if rep >= 3:  # the first runs fault the mapped pages in and fill the arena
                    times[name].append((time.perf_counter() - start) * 1000)
        medians = {name: round(float(np.median(v)), 2) for name, v in times.items()}
        # Medians of per-repetition ratios: a burst of other work hits all runs of a round.
        base = np.array(times["exported file"])
        ratio = {k: round(float(np.median(np.array(times[k]) / base)), 3) for k in times}
        result[length] = {
            **{f"{k} ms": v for k, v in medians.items()},
            "ratio": ratio["shared copy"],
            "ratio prepacking off": ratio["prepacking off"],
        }
    return result


def run(model_dir, work, quick=False):
    """Everything bench.py's memory part reports (see fillmask/bench/weights_report.py)."""
    cache = Path(work) / "weights-cache"
    precisions = [p for p in ("fp32", "int8") if (Path(model_dir) / FILE[p]).is_file()]
    result = {"table": measure(model_dir, cache, precisions)}
    result["cold_start_s"] = {p: cold_start(model_dir, p, cache) for p in precisions}
    copies = weights_cache_dir(model_dir, str(cache))
    result["copy_mb"] = {
        p: round(sum(f.stat().st_size for f in copies.glob(f"{FILE[p]}-*/*")) / 2**20)
        for p in precisions
    }
    result["itemised"] = {p: itemise(model_dir, p, cache) for p in precisions}
    reps = 30 if quick else 100
    result["latency"] = {p: latency_ratio(model_dir, p, cache, reps) for p in precisions}
    result["load"] = "8 concurrent clients, 64-token texts (micro-batches up to 8), ORT_THREADS=1"
    return result


def cold_start(model_dir, precision, cache_dir):
    """Seconds from launching a 1-worker Gunicorn to its first answer, without then with the
    prepacked copy present (the first start makes it)."""
    result = {}
    for old in weights_cache_dir(model_dir, str(cache_dir)).glob(f"{FILE[precision]}-*"):
        shutil.rmtree(old)  # this precision's copy only
    for label in ("without prepacked copy", "with prepacked copy"):
        server = gunicorn_server(
            model_dir,
            WORKERS="1",
            MODEL_PRECISION=precision,
            WEIGHTS_CACHE_DIR=str(cache_dir),
            SHARE_WEIGHTS="1",
        )
        started = time.monotonic()
        server.start()
        try:
            response = requests.post(server.url + "/predict", json={"text": bench_text(16)})
            response.raise_for_status()
            result[label] = round(time.monotonic() - started, 2)
        finally:
            server.stop()
    return result


STEPS = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
def private():
    lines = Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]
    v = {l.split()[0].rstrip(":"): int(l.split()[1]) / 1024 for l in lines if len(l.split()) == 3}
    return round(v["Private_Clean"] + v["Private_Dirty"], 1), round(v["Pss_File"], 1)
steps = [("python interpreter", private())]
import numpy, onnxruntime, tokenizers, flask  # noqa
import app  # noqa: what a worker imports after the fork (no preload_app)
steps.append(("imports: flask, numpy, onnxruntime, tokenizers, the app", private()))
from fillmask.session import create_session, return_freed_memory
from tokenizers import Tokenizer
model_dir, precision = Path(sys.argv[2]), sys.argv[3]
return_freed_memory()
tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
steps.append(("tokenizer", private()))
name = "model.onnx" if precision == "fp32" else "model.int8.onnx"
session = create_session(model_dir / name, 1, shared=True, cache_dir=sys.argv[4])
steps.append(("onnxruntime session on the prepacked copy", private()))
import numpy as np
for batch in (1, 16):
    ids = np.full((batch, 64), 1000, dtype=np.int64)
    ids[:, 0], ids[:, -1], ids[:, 5] = 101, 102, 103
    session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
    steps.append((f"after a run of {batch} x 64 tokens (activation arena)", private()))
print(json.dumps(steps))
"""


def itemise(model_dir, precision, cache_dir):
    """Private and file-mapped memory of one process after each loading step, in MB.

    The copy at ``cache_dir`` must exist already (else the step includes making it).
    """
    done = subprocess.run(
        [sys.executable, "-c", STEPS, str(ROOT), str(model_dir), precision, str(cache_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    rows, last = [], 0.0
    for label, (private, mapped) in json.loads(done.stdout.splitlines()[-1]):
        rows.append(
            {
                "step": label,
                "private_mb": private,
                "added_mb": round(private - last, 1),
                "file_mapped_pss_mb": mapped,
            }
        )
        last = private
    return rows
