"""Load, faults and soak against a real Gunicorn on loopback (``python -m pytest -m load``).

Bounded in count and time, they stop by themselves. Short by default; the command in
docs/reliability.md sets the full durations: LOAD_SECONDS=30 SOAK_REQUESTS=20000. Figures
(p99, failure counts, RSS growth) are printed and written to artefacts/reliability.json.
"""

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests
from live import GunicornServer

pytestmark = [pytest.mark.load, pytest.mark.live]

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "artefacts" / "reliability.json"
CLIENTS = int(os.environ.get("LOAD_CLIENTS", "32"))
LOAD_SECONDS = float(os.environ.get("LOAD_SECONDS", "8"))
SOAK_REQUESTS = int(os.environ.get("SOAK_REQUESTS", "3000"))
# Varied sentences (one and two masks, a batch) so the load is not one cached shape.
TEXTS = [
    "今天天气真[MASK]啊",
    "床前明月[MASK]，疑是地上霜。",
    "画蛇[MASK][MASK]，多此一举。",
    "我们是好朋[MASK]。",
    "[MASK]前明月光，疑是地上［MASK］。",
    "他每天早上都去公[MASK]跑步。",
    "这本书非常有[MASK]思。",
    "春眠不觉晓，处处闻啼[MASK]。",
]


def body_for(i):
    """Request i of a run: mostly single texts, every fifth a small batch."""
    if i % 5 == 4:
        return {"texts": [TEXTS[(i + k) % len(TEXTS)] for k in range(3)], "top_k": 3}
    return {"text": TEXTS[i % len(TEXTS)] + "。" * (i % 7), "top_k": 5}


def record(name, figures):
    """Print the figures and merge them into artefacts/reliability.json."""
    REPORT.parent.mkdir(exist_ok=True)
    data = json.loads(REPORT.read_text(encoding="utf-8")) if REPORT.exists() else {}
    data[name] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    REPORT.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\n{name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else None


class Load:
    """``clients`` threads posting to /predict until ``stop`` is set or ``seconds`` pass.

    Each request is kept as (client, start, end, ok, detail) with monotonic times.
    """

    def __init__(self, url, clients=CLIENTS, seconds=LOAD_SECONDS, requests_each=None, timeout=30):
        self.url, self.clients, self.seconds = url, clients, seconds
        self.requests_each, self.timeout = requests_each, timeout
        self.results = []
        self.in_flight = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = []

    def client(self, index):
        session = requests.Session()
        deadline = time.monotonic() + self.seconds
        i = index
        while not self.stop.is_set() and time.monotonic() < deadline:
            if self.requests_each is not None and (i - index) // self.clients >= self.requests_each:
                break
            with self.lock:
                self.in_flight += 1
            start = time.monotonic()
            try:
                r = session.post(self.url + "/predict", json=body_for(i), timeout=self.timeout)
                ok = r.status_code == 200 and r.json().get("success") is True
                detail = r.status_code
            except requests.RequestException as exc:
                ok, detail = False, type(exc).__name__
                session = requests.Session()  # a fresh connection after a failure
            end = time.monotonic()
            with self.lock:
                self.in_flight -= 1
                self.results.append((index, start, end, ok, detail))
            i += self.clients

    def start(self):
        self.threads = [
            threading.Thread(target=self.client, args=(c,), daemon=True)
            for c in range(self.clients)
        ]
        for thread in self.threads:
            thread.start()
        return self

    def join(self):
        for thread in self.threads:
            thread.join(self.seconds + self.timeout + 30)
        assert not any(t.is_alive() for t in self.threads), "load clients did not stop"
        return self

    def latencies_ms(self, ok_only=True):
        return [(e - s) * 1000 for _, s, e, ok, _ in self.results if ok or not ok_only]

    def summary(self):
        lat = self.latencies_ms()
        elapsed = max(e for _, _, e, _, _ in self.results) - min(
            s for _, s, _, _, _ in self.results
        )
        return {
            "requests": len(self.results),
            "errors": sum(1 for r in self.results if not r[3]),
            "throughput_rps": round(len(lat) / elapsed, 1),
            "p50_ms": round(percentile(lat, 50), 1),
            "p99_ms": round(percentile(lat, 99), 1),
            "max_ms": round(max(lat), 1),
        }


@pytest.fixture
def server(tiny_model_dir):
    """A fresh 2-worker Gunicorn (no cache: every request runs the model)."""
    with GunicornServer(tiny_model_dir, WORKERS="2", THREADS="4", CACHE_SIZE="0") as live:
        yield live


def wait_for_workers(server, count, exclude=(), seconds=15):
    """The master's worker PIDs once there are ``count`` of them, none in ``exclude``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        pids = server.worker_pids()
        if len(pids) == count and not set(pids) & set(exclude):
            return pids
        time.sleep(0.05)
    raise AssertionError(f"workers now {server.worker_pids()}, wanted {count} new ones")


@pytest.mark.parametrize("reuse_port", ["0", "1"])
def test_concurrent_clients(tiny_model_dir, reuse_port):
    """32 clients for LOAD_SECONDS against 2 workers: zero errors, p99 reported.

    Run with the default one shared socket and with REUSE_PORT=1 (a socket per worker): the
    figures behind the trade-off the docs describe.
    """
    with GunicornServer(
        tiny_model_dir, WORKERS="2", THREADS="4", CACHE_SIZE="0", REUSE_PORT=reuse_port
    ) as server:
        concurrent_clients(server, reuse_port == "1")


def concurrent_clients(server, reuse_port):
    """The load, its figures, and the checks."""
    workers = [psutil.Process(pid) for pid in server.worker_pids()]
    cpu_before = [sum(w.cpu_times()[:2]) for w in workers]
    load = Load(server.url).start().join()
    cpu = [sum(w.cpu_times()[:2]) - b for w, b in zip(workers, cpu_before, strict=True)]
    figures = {
        "clients": CLIENTS,
        "seconds": LOAD_SECONDS,
        "workers": 2,
        **load.summary(),
        # How evenly the kernel spread the clients' connections over the workers.
        "worker_cpu_share_pct": sorted(round(100 * c / sum(cpu)) for c in cpu),
        "reuse_port": reuse_port,
    }
    record("concurrent_load_reuse_port" if reuse_port else "concurrent_load", figures)
    failures = [r for r in load.results if not r[3]]
    assert not failures, failures[:5]
    assert figures["requests"] >= CLIENTS
    if reuse_port:
        # Both workers work: neither is left idle by one taking every connection.
        assert min(figures["worker_cpu_share_pct"]) >= 15


def wait_for_answers(load, count, seconds=60):
    """Block until ``load`` has ``count`` successful answers (the load is under way)."""
    deadline = time.monotonic() + seconds
    while sum(1 for r in load.results if r[3]) < count:
        assert time.monotonic() < deadline, f"only {len(load.results)} answers in {seconds} s"
        time.sleep(0.01)


def wait_until_gone(pid, seconds=10):
    """The monotonic time at which process ``pid`` has exited (zombie or reaped)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.002)
    return time.monotonic()


def test_sigkill_one_worker_mid_load(server):
    """Gunicorn replaces a killed worker; only requests in flight on it may fail."""
    victim, survivor = server.worker_pids()
    load = Load(server.url).start()
    wait_for_answers(load, 2 * CLIENTS)  # every client has its connection and is busy
    in_flight = load.in_flight
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    died_at = wait_until_gone(victim)
    new_pid = [p for p in wait_for_workers(server, 2, exclude=[victim]) if p != survivor][0]
    spawned_at = time.monotonic()
    # The replacement serves: a fresh connection lands on it once it has booted. Booting the
    # whole server took ready_s in this run; a replacement under load may take a few times that.
    boot_allowance = 5 * server.ready_s + 5
    served_at = None
    while time.monotonic() < spawned_at + boot_allowance and served_at is None:
        try:
            r = requests.get(server.url + "/health", timeout=5)
            if r.status_code == 200 and r.json()["pid"] == new_pid:
                served_at = time.monotonic()
        except requests.RequestException:
            pass
    load.join()
    failures = [r for r in load.results if not r[3]]
    after_kill = [r for r in load.results if r[3] and r[1] >= killed_at]
    figures = {
        "clients": CLIENTS,
        "requests": len(load.results),
        "failed": len(failures),
        "in_flight_at_kill": in_flight,
        "died_after_s": round(died_at - killed_at, 3),
        "clients_failed": len({r[0] for r in failures}),
        "failure_kinds": sorted({str(r[4]) for r in failures}),
        "ok_after_kill": len(after_kill),
        "ok_before_replacement": sum(1 for r in after_kill if r[2] <= (served_at or killed_at)),
        "replacement_spawned_s": round(spawned_at - killed_at, 2),
        "replacement_served_s": round(served_at - killed_at, 2) if served_at else None,
    }
    record("sigkill_worker", figures)
    assert server.proc.poll() is None, "the master died"
    assert served_at is not None, f"no replacement answered within {boot_allowance:.0f} s"
    # Only requests on connections to the killed worker may fail: those in flight on it or
    # queued on its own REUSE_PORT socket while it died, and after its death at most one per
    # client (its kept-alive connection to the dead worker), after which the client reconnects.
    per_client = {}
    for client, start, *_ in failures:
        if start > died_at:
            per_client[client] = per_client.get(client, 0) + 1
    assert max(per_client.values(), default=0) <= 1, per_client
    assert not [r for r in failures if r[1] >= spawned_at], "a request failed after the respawn"
    assert figures["ok_before_replacement"] > 0, "the other worker stopped answering"
    assert [r for r in load.results if r[3] and r[1] > served_at], "nothing served afterwards"


def send_partial(url, body):
    """Open a connection and send all but the last bytes of a POST: the request is in flight."""
    host, port = url.split("//")[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:-5])
    return sock


def finish(sock, body):
    """Send the rest of the body and read the whole response: (status, body)."""
    sock.sendall(body[-5:])
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    sock.close()
    raw = b"".join(chunks)
    head, _, payload = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), payload


def wait_accepted(server, socks, seconds=10):
    """Block until a worker holds the server side of each of ``socks`` (accepted them)."""
    ports = {sock.getsockname()[1] for sock in socks}
    deadline = time.monotonic() + seconds
    while True:
        remote = set()
        for pid in server.worker_pids():
            for conn in psutil.Process(pid).net_connections("tcp"):
                if conn.raddr and conn.status == psutil.CONN_ESTABLISHED:
                    remote.add(conn.raddr.port)
        if ports <= remote:
            return
        assert time.monotonic() < deadline, "the workers did not accept the connections"
        time.sleep(0.01)


def wait_refused(url, seconds=10):
    """Block until a new connection to ``url`` is refused."""
    host, port = url.split("//")[1].split(":")
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return
        assert time.monotonic() < deadline, "the server still accepts connections"
        time.sleep(0.01)


def test_sigterm_master_finishes_in_flight(tiny_model_dir):
    """SIGTERM: requests in flight complete, new connections are not served, exit is clean."""
    with GunicornServer(
        tiny_model_dir, WORKERS="2", THREADS="4", CACHE_SIZE="0", GRACEFUL_TIMEOUT="20"
    ) as server:
        body = json.dumps({"text": "今天天气真[MASK]啊"}, ensure_ascii=False).encode()
        socks = [send_partial(server.url, body) for _ in range(3)]
        wait_accepted(server, socks)  # the workers are now reading those bodies
        server.proc.send_signal(signal.SIGTERM)
        sent_at = time.monotonic()
        wait_refused(server.url)  # the listening sockets are closed
        refused = 0
        for _ in range(3):
            try:
                r = requests.post(server.url + "/predict", json={"text": "好[MASK]"}, timeout=2)
            except requests.RequestException:
                refused += 1
            else:
                pytest.fail(f"a new request was served after SIGTERM: {r.status_code}")
        answers = [finish(sock, body) for sock in socks]
        code = server.proc.wait(30)
        stopped_s = time.monotonic() - sent_at
        figures = {
            "in_flight": len(socks),
            "in_flight_completed": sum(1 for s, _ in answers if s == 200),
            "new_refused": refused,
            "master_exit_code": code,
            "shutdown_s": round(stopped_s, 2),
        }
        record("sigterm_master", figures)
        assert [s for s, _ in answers] == [200, 200, 200]
        assert all(json.loads(p)["success"] is True for _, p in answers)
        # In-flight requests finished well inside the graceful timeout (nothing was cut).
        assert code == 0 and stopped_s < 20


def worker_rss(server):
    return {pid: psutil.Process(pid).memory_info().rss for pid in server.worker_pids()}


def test_soak_memory_stays_flat(server):
    """SOAK_REQUESTS requests: worker RSS grows by less than 10% after warm-up."""
    warmup = max(200, SOAK_REQUESTS // 10)
    Load(server.url, clients=8, seconds=600, requests_each=warmup // 8).start().join()
    before = worker_rss(server)
    load = (
        Load(server.url, clients=8, seconds=1800, requests_each=SOAK_REQUESTS // 8).start().join()
    )
    after = worker_rss(server)
    assert set(after) == set(before), "a worker was replaced during the soak"
    growth = (sum(after.values()) - sum(before.values())) / sum(before.values())
    figures = {
        "requests": len(load.results),
        "warmup_requests": warmup,
        "errors": sum(1 for r in load.results if not r[3]),
        "rss_before_mb": round(sum(before.values()) / 2**20, 1),
        "rss_after_mb": round(sum(after.values()) / 2**20, 1),
        "rss_growth_pct": round(growth * 100, 2),
        "p99_ms": load.summary()["p99_ms"],
    }
    record("soak", figures)
    assert figures["errors"] == 0
    assert growth < 0.10
