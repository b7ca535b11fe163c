"""Graceful drain on SIGTERM: readiness turns 503 at once, in-flight requests finish with 200."""

import json
import signal
import socket
import time

import pytest
import requests
from live import GunicornServer

pytestmark = pytest.mark.live

TEXT = "今天天气真[MASK]啊"


class SlowRequest:
    """A /predict whose body is held back: in flight in a worker thread until ``finish``."""

    def __init__(self, server):
        self.body = json.dumps({"text": TEXT}, ensure_ascii=False).encode("utf-8")
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        self.sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(self.body)}\r\n".encode()
            + b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
            + self.body[:5]
        )
        # Gunicorn answers "100 Continue" from the worker thread that took the request up.
        assert self.sock.recv(64).startswith(b"HTTP/1.1 100 Continue")

    def finish(self):
        """Send the rest of the body; return (status, JSON body)."""
        self.sock.sendall(self.body[5:])
        raw = b""
        while chunk := self.sock.recv(65536):
            raw += chunk
        self.sock.close()
        head, _, payload = raw.partition(b"\r\n\r\n")
        return int(head.split()[1]), json.loads(payload)


def poll(check, seconds):
    """Call ``check`` until it returns a truthy value or ``seconds`` pass; return that value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    return None


def statuses(server):
    """(/health, /v2/health/ready) statuses, or None when the server does not answer."""
    try:
        health = requests.get(server.url + "/health", timeout=1)
        ready = requests.get(server.url + "/v2/health/ready", timeout=1)
    except requests.RequestException:
        return None
    return health.status_code, ready.status_code, health.json().get("status")


def test_readiness_turns_503_while_in_flight_requests_finish(tiny_model_dir):
    drain = 4.0  # 503 is due at once; 4 s leaves room on a busy shared machine
    with GunicornServer(tiny_model_dir, WORKERS=2, DRAIN_SECONDS=drain) as server:
        assert statuses(server) == (200, 200, "ok")
        slow = SlowRequest(server)
        server.proc.send_signal(signal.SIGTERM)  # to the master, which forwards it to workers
        sent = time.monotonic()
        seen = poll(lambda: (s := statuses(server)) and s[:2] == (503, 503) and s, drain)
        assert seen == (503, 503, "draining"), server.output()
        assert time.monotonic() - sent < drain  # not ready while still serving
        # During the drain new requests are still answered...
        r = requests.post(server.url + "/predict", json={"text": TEXT}, timeout=5)
        assert r.status_code == 200
        # ...then the workers stop accepting, and the request in flight still completes.
        assert poll(lambda: statuses(server) is None, drain + 20), "still accepting"
        status, body = slow.finish()
        assert status == 200 and body["success"] is True
        assert body["result"][0]["sequence"] == TEXT.replace("[MASK]", body["result"][0]["word"])
        assert server.proc.wait(30) == 0
        assert "draining" in server.output()


def test_without_a_drain_delay_in_flight_requests_still_finish(tiny_model_dir):
    with GunicornServer(tiny_model_dir, WORKERS=1) as server:
        slow = SlowRequest(server)
        server.proc.send_signal(signal.SIGTERM)
        assert poll(lambda: statuses(server) is None, 20), "still accepting"
        status, body = slow.finish()
        assert status == 200 and body["success"] is True
        assert server.proc.wait(30) == 0
