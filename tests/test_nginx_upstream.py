"""The one-host nginx site (deploy/nginx-fillmask.conf) and its kept-alive upstream connections.

Gunicorn closes a connection idle for KEEPALIVE (5 s). If nginx keeps its idle upstream
connections longer (its default is 60 s), a request it sends on one just as Gunicorn closes it
fails, and nginx never sends a POST again by itself: the client gets a 502. The site closes
first (``keepalive_timeout`` below KEEPALIVE) and may resend a POST (``proxy_next_upstream ...
non_idempotent``). Both halves are shown with a real nginx running the shipped file, its
upstream and port rewritten: who closes an idle connection first, against a real Gunicorn; and
what a client gets when the connection breaks under a request, against an upstream made to do
exactly that (the race itself is a matter of microseconds and cannot be timed from outside).
"""

import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
from live import ROOT, GunicornServer, free_port, poll

pytestmark = pytest.mark.live

SITE = ROOT / "deploy" / "nginx-fillmask.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TIME_WAIT, ESTABLISHED = "06", "01"


class Nginx:
    """The shipped site in a foreground nginx, proxying to ``127.0.0.1:upstream_port``."""

    def __init__(self, tmp_path, upstream_port):
        if not os.path.exists(NGINX):
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
            f"{user}daemon off;\nworker_processes 1;\npid {tmp_path}/nginx.pid;\n"
            f"error_log {tmp_path}/error.log;\nevents {{}}\n"
            f"http {{\n  access_log off;\n  include {tmp_path}/site.conf;\n}}\n",
            encoding="utf-8",
        )
        self.error_log = tmp_path / "error.log"
        self.command = [NGINX, "-p", f"{tmp_path}/", "-c", str(tmp_path / "nginx.conf")]
        self.proc = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.command, stderr=subprocess.PIPE)

        def listening():
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", self.port)) == 0

        try:
            poll(listening, 15, "nginx did not listen")
        except AssertionError:
            self.proc.kill()
            raise RuntimeError(
                "nginx did not listen: " + self.proc.stderr.read1().decode()
            ) from None
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        self.proc.wait(15)


def post(url):
    """One /predict on a fresh client connection (the client side is not under test)."""
    return requests.post(
        url + "/predict",
        json={"text": "今天天气真[MASK]啊"},
        headers={"Connection": "close"},
        timeout=30,
    )


def tcp_states(port):
    """{(local port, remote port): state} of loopback TCP sockets with ``port`` at either end."""
    states = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        ends = int(local.split(":")[1], 16), int(remote.split(":")[1], 16)
        if port in ends:
            states[ends] = state
    return states


def test_nginx_closes_idle_upstream_connections_before_gunicorn_does(tiny_model_dir, tmp_path):
    """The side that closes first ends in TIME_WAIT: it must be nginx's, before KEEPALIVE."""
    from test_startup import gunicorn_conf

    keepalive = gunicorn_conf().keepalive
    with GunicornServer(tiny_model_dir, WORKERS="1") as server, Nginx(tmp_path, server.port) as nx:
        before = set(tcp_states(server.port))
        assert post(nx.url).status_code == 200
        answered = time.monotonic()
        # nginx's kept-alive connection: the new established one whose remote end is Gunicorn.
        (link,) = [
            ends
            for ends, state in tcp_states(server.port).items()
            if state == ESTABLISHED and ends[1] == server.port and ends not in before
        ]
        left = answered + keepalive + 10 - time.monotonic()
        poll(lambda: tcp_states(server.port).get(link) != ESTABLISHED, left, "still established")
        closed_after = time.monotonic() - answered
        states = tcp_states(server.port)
        nginx_side, gunicorn_side = states.get(link), states.get(link[::-1])
        # The connection is idle, not broken: a second request through nginx still works.
        assert post(nx.url).status_code == 200
    assert nginx_side == TIME_WAIT and gunicorn_side != TIME_WAIT, (
        f"Gunicorn closed the idle connection first ({closed_after:.1f} s): nginx would race it"
    )
    assert closed_after < keepalive


class BreakingUpstream:
    """An HTTP/1.1 server that answers the first request of each connection and keeps it alive,
    then drops the connection when a second request arrives on it: what Gunicorn closing an
    idle connection looks like to nginx when a request crosses the close."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requests = []  # (connection number, request line)
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        number = 0
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            number += 1
            threading.Thread(target=self.serve, args=(conn, number), daemon=True).start()

    def serve(self, conn, number):
        with conn:
            buffer, served = b"", 0
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                while len(buffer) < int(length.group(1) if length else 0):
                    buffer += conn.recv(65536)
                buffer = buffer[int(length.group(1)) if length else 0 :]
                with self.lock:
                    self.requests.append((number, head.split(b"\r\n")[0].decode()))
                if served:
                    # RST, as a socket closed with the request unread in its buffer sends.
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                served += 1
                body = b'{"success": true}'
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + b"Content-Length: %d\r\n\r\n" % len(body)
                    + body
                )

    def close(self):
        self.listener.close()


def test_a_post_on_a_connection_that_breaks_is_sent_again(tmp_path):
    upstream = BreakingUpstream()
    try:
        with Nginx(tmp_path, upstream.port) as nx:
            assert post(nx.url).status_code == 200  # opens the connection nginx keeps
            second = post(nx.url)  # goes out on that kept connection, which breaks under it
            log = nx.error_log.read_text(errors="replace")
    finally:
        upstream.close()
    assert second.status_code == 200, f"{second.status_code}: {second.text[:200]}\n{log}"
    # Sent on the kept connection (1), which broke, then again on a new one (2).
    assert upstream.requests == [
        (1, "POST /predict HTTP/1.1"),
        (1, "POST /predict HTTP/1.1"),
        (2, "POST /predict HTTP/1.1"),
    ]
