"""Slow clients (slowloris) are the documented nginx site's job, not Gunicorn's.

Gunicorn's stock gthread worker gives a connection a thread once its first bytes arrive; a client
sending its headers a byte a second holds that thread. The deployment puts nginx in front
(deploy/nginx-fillmask.conf), which reads every request whole before passing it on. Here the real
site file runs in a real nginx before a real Gunicorn with more slow sockets than it has threads.
"""

import os
import shutil
import socket
import subprocess
import threading
import time

import pytest
import requests
from live import ROOT, GunicornServer, free_port
from test_load import record

pytestmark = pytest.mark.live

SITE = ROOT / "deploy" / "nginx-fillmask.conf"
WORKERS, THREADS = 2, 4
SLOW_SOCKETS = 3 * WORKERS * THREADS  # more than every thread Gunicorn has


class Nginx:
    """The deploy site, its upstream and port rewritten, in a foreground nginx."""

    def __init__(self, tmp_path, upstream_port):
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            pytest.skip("nginx not installed (apt-get install nginx-light)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        site = SITE.read_text(encoding="utf-8")
        site = site.replace("127.0.0.1:5000", f"127.0.0.1:{upstream_port}")
        site = site.replace("listen [::]:80 default_server;", "")
        site = site.replace("listen 80 default_server;", f"listen 127.0.0.1:{self.port};")
        (tmp_path / "site.conf").write_text(site, encoding="utf-8")
        user = "user root;\n" if os.geteuid() == 0 else ""  # temp files in a root-only dir
        (tmp_path / "nginx.conf").write_text(
            f"{user}daemon off;\npid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
            f"events {{}}\nhttp {{\n  access_log off;\n  include {tmp_path}/site.conf;\n}}\n",
            encoding="utf-8",
        )
        self.command = [binary, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.command, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("nginx did not start: " + self.proc.stderr.read1().decode())

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(15)


def slowloris(port, stop):
    """Send a request's headers a byte every half second, reconnecting when cut."""
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + b"".join(
        b"X-Slow-%d: aaaaaaaaaaaaaaaaaaaa\r\n" % i for i in range(40)
    )
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(head[:40])
                for i in range(40, len(head)):
                    if stop.wait(0.5):
                        break
                    sock.sendall(head[i : i + 1])
        except OSError:
            pass  # cut by the server: start again


def latencies(url, seconds):
    """Fresh-connection requests for ``seconds``: (latencies, errors)."""
    times, errors = [], 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            r = requests.post(
                url + "/predict",
                json={"text": "今天天气真[MASK]啊"},
                headers={"Connection": "close"},
                timeout=30,
            )
            errors += r.status_code != 200
        except requests.RequestException:
            errors += 1
        times.append(time.monotonic() - start)
    return times, errors


def test_slow_clients_behind_nginx_do_not_block_others(tiny_model_dir, tmp_path):
    with (
        GunicornServer(tiny_model_dir, WORKERS=str(WORKERS), THREADS=str(THREADS)) as server,
        Nginx(tmp_path, server.port) as nginx,
    ):
        base, errors = latencies(nginx.url, 1.0)
        assert errors == 0
        stop = threading.Event()
        slow = [
            threading.Thread(target=slowloris, args=(nginx.port, stop), daemon=True)
            for _ in range(SLOW_SOCKETS)
        ]
        for thread in slow:
            thread.start()
        try:
            times, errors = latencies(nginx.url, 2.0)
        finally:
            stop.set()
            for thread in slow:
                thread.join(10)
    median = sorted(base)[len(base) // 2]
    record(
        "slow_clients_behind_nginx",
        {
            "slow_sockets": SLOW_SOCKETS,
            "gunicorn_threads": WORKERS * THREADS,
            "requests": len(times),
            "errors": errors,
            "p50_ms_before": round(median * 1000, 1),
            "p50_ms_during": round(sorted(times)[len(times) // 2] * 1000, 1),
            "max_wait_s": round(max(times), 2),
        },
    )
    assert errors == 0
    assert len(times) >= 10
    # Nobody waits on the slow sockets: the worst request stays near the unhindered median.
    assert max(times) < 1.0 + 20 * median
