"""Start a real Gunicorn on a free loopback port for live tests (and the benchmark)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]


def poll(until, timeout, what, interval=0.05):
    """Call ``until()`` until it returns something truthy (returned), at most ``timeout`` s.

    The one polling loop of the live tests: each wait has a deadline and says what it waited
    for when it runs out (AssertionError with ``what``, a string or a callable for details).
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        found = until()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(what() if callable(what) else what)
        pause.wait(interval)  # nothing to wake on: the state is outside this process


def answers_ready(url):
    """True once ``url``'s /v2/health/ready answers 200 (False while it cannot be reached)."""
    try:
        return requests.get(url + "/v2/health/ready", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GunicornServer:
    """``with GunicornServer(model_dir, WORKERS="2") as server: server.url``"""

    def __init__(self, model_dir, startup_timeout=60, config=None, root=ROOT, **env):
        self.root = Path(root)  # another checkout of the project (the benchmark's baseline)
        self.config = config or self.root / "gunicorn.conf.py"  # another -c file, for tests
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(
            os.environ,
            MODEL_DIR=str(model_dir),
            BIND=f"127.0.0.1:{self.port}",
            WORKERS="2",
            ORT_THREADS="1",
            ACCESS_LOG="0",
        )
        self.env.update({k: str(v) for k, v in env.items()})
        self.startup_timeout = startup_timeout
        self.proc = None
        self.log_path = None
        self.ready_s = None

    def start(self):
        """Launch and wait until /health answers 200."""
        import tempfile

        self.log = tempfile.NamedTemporaryFile(
            "w+", prefix="gunicorn-", suffix=".log", delete=False
        )
        self.log_path = self.log.name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(self.config), "app:app"],
            cwd=self.root,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started = time.monotonic()
        deadline = started + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with {self.proc.returncode}:\n" + self.output()
                )
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    # How long this machine, as loaded now, takes to boot a worker: a baseline
                    # for tests that wait for a replacement.
                    self.ready_s = time.monotonic() - started
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not become ready:\n" + self.output())

    def output(self):
        """What Gunicorn printed so far."""
        return Path(self.log_path).read_text(errors="replace") if self.log_path else ""

    def worker_pids(self):
        """PIDs of the master's worker processes."""
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)], capture_output=True, text=True
        ).stdout
        return [int(p) for p in out.split()]

    def stop(self, timeout=30):
        """SIGTERM the master (graceful) and wait; SIGKILL the group if it hangs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.log_path:
            self.log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
