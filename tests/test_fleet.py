"""Three hosts behind nginx (deploy/nginx-fleet.conf): one killed, one stopped, no client notices.

Each host is a Gunicorn in its own network namespace with its own address (tests/netns.py); real
nginx runs the shipped site file in front, with only its ``fleet-test:`` lines rewritten to the
test's addresses. 16 clients post /predict through nginx while one host's whole Gunicorn gets
SIGKILL and another's gets SIGTERM: every client request must succeed. The killed host is then
started again and must serve through nginx again. Needs root, ``ip`` and nginx; figures go to
artefacts/fleet.json (docs/scaling.md shows them: ``python -m fillmask.bench.scaling``).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from live import free_port
from netns import Subnet

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "deploy" / "nginx-fleet.conf"
NGINX = "/usr/sbin/nginx"
REPORT = ROOT / "artefacts" / "fleet.json"
CLIENTS = 16
HOSTS = 3
PORT = 5000
TEXTS = ["今天天气真[MASK]啊", "床前明月[MASK]，疑是地上霜。", "春眠不觉晓，处处闻啼[MASK]。"]


def site_for_test(hosts, listen_port, access_log):
    """The shipped site file with its ``fleet-test:`` lines pointed at the test's addresses."""
    lines, hosts = [], list(hosts)
    for line in SITE.read_text().splitlines():
        marked = re.search(r"# fleet-test: (\w+)$", line)
        kind = marked.group(1) if marked else None
        if kind == "host":
            line = re.sub(r"server \S+:\d+", f"server {hosts.pop(0)}", line)
        elif kind == "listen":
            line = f"    listen 127.0.0.1:{listen_port};"
        elif kind == "listen6":
            continue  # the sandbox may have no IPv6
        elif kind == "log":
            line = re.sub(r"access_log \S+", f"access_log {access_log}", line)
        elif kind:
            raise AssertionError(f"unknown fleet-test mark: {line}")
        lines.append(line)
    assert not hosts, f"the site file has fewer upstream servers than the test's {len(hosts)}"
    return "\n".join(lines) + "\n"


def nginx_main_conf(prefix, site):
    """A minimal nginx.conf that includes the site, everything under ``prefix``."""
    return (
        f"daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log notice;\nevents {{ worker_connections 512; }}\n"
        f"http {{\n    access_log off;\n    include {site};\n}}\n"
    )


def write_nginx(tmp_path, hosts, port):
    """Files for nginx in ``tmp_path``: the main conf path, and where the access log goes."""
    log = tmp_path / "fleet-access.log"
    site = tmp_path / "fleet-site.conf"
    site.write_text(site_for_test(hosts, port, log))
    main = tmp_path / "nginx.conf"
    main.write_text(nginx_main_conf(tmp_path, site))
    return main, log


def nginx_args(tmp_path, main):
    return [NGINX, "-p", f"{tmp_path}/", "-e", f"{tmp_path}/error.log", "-c", str(main)]


def test_site_differs_from_shipped_file_only_in_marked_lines(tmp_path):
    """What the fleet test runs is the shipped file; nginx accepts it (nginx -t)."""
    shipped = SITE.read_text().splitlines()
    tested = site_for_test(["10.9.9.1:1", "10.9.9.2:1", "10.9.9.3:1"], 8080, "/x.log").splitlines()
    changed = [a for a in shipped if a not in tested]
    assert changed and all("# fleet-test:" in line for line in changed)
    if not Path(NGINX).exists():
        pytest.skip("no nginx at /usr/sbin/nginx")
    main, _ = write_nginx(tmp_path, ["10.9.9.1:1", "10.9.9.2:1", "10.9.9.3:1"], free_port())
    done = subprocess.run([*nginx_args(tmp_path, main), "-t"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_site_retries_posts_and_keeps_upstream_connections_alive():
    """The directives the fleet's behaviour rests on, and the body limit of the one-host site."""
    text = SITE.read_text()
    retry = re.search(r"proxy_next_upstream ([^;]+);", text).group(1).split()
    assert {"error", "timeout", "http_502", "http_503", "non_idempotent"} <= set(retry)
    assert re.search(r"proxy_next_upstream_tries [2-9];", text)
    assert re.search(r"proxy_next_upstream_timeout \d+s;", text)
    servers = re.findall(r"^\s*server \S+:\d+ ([^;]*);", text, re.M)
    assert len(servers) >= 2 and all("max_fails=" in s and "fail_timeout=" in s for s in servers)
    assert re.search(r"^\s*keepalive \d+;", text, re.M)
    assert 'proxy_set_header Connection "";' in text and "proxy_http_version 1.1;" in text
    one_host = (ROOT / "deploy" / "nginx-fillmask.conf").read_text()
    limit = re.compile(r"client_max_body_size \S+;")
    assert limit.search(text).group(0) == limit.search(one_host).group(0)


@pytest.mark.skipif(not Path(NGINX).exists(), reason="no nginx at /usr/sbin/nginx")
def test_no_host_left_gives_a_json_503(tmp_path):
    """Every host refusing connections: the client gets the service's JSON error shape."""
    port = free_port()
    main, log = write_nginx(tmp_path, [f"127.0.0.1:{free_port()}" for _ in range(3)], port)
    nginx = subprocess.Popen(nginx_args(tmp_path, main), start_new_session=True)
    try:
        session = requests.Session()
        session.trust_env = False
        url = f"http://127.0.0.1:{port}/predict"
        wait_for(lambda: _reachable(session, url), 30, "nginx to listen")
        r = session.post(url, json={"text": TEXTS[0]}, timeout=30)
    finally:
        nginx.terminate()
        nginx.wait(30)
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert r.json() == {
        "success": False,
        "error": "no host of the fleet could answer; try again in a few seconds",
        "code": "unavailable",
    }
    # nginx tried every host before giving up (proxy_next_upstream_tries 3).
    assert access_log(log)[-1]["upstream"].count(":") == 3


def _reachable(session, url):
    try:
        session.get(url, timeout=2)
        return True
    except requests.RequestException:
        return False


def fleet_prerequisites():
    """Why the fleet cannot run here, or None."""
    if os.geteuid() != 0:
        return "fleet test needs root (ip netns)"
    if shutil.which("ip") is None:
        return "fleet test needs iproute2's ip"
    if not Path(NGINX).exists():
        return f"fleet test needs nginx at {NGINX}"
    return None


class Host:
    """One Gunicorn inside a namespace; its whole process group can be killed."""

    def __init__(self, net, index, model_dir, log_dir):
        self.net, self.index = net, index
        self.addr = f"{net.address(index)}:{PORT}"
        self.log_path = log_dir / f"host{index}.log"
        self.env = dict(
            os.environ,
            MODEL_DIR=str(model_dir),
            BIND=self.addr,
            WORKERS="2",
            THREADS="4",
            ORT_THREADS="1",
            CACHE_SIZE="0",
            ACCESS_LOG="0",
            GRACEFUL_TIMEOUT="10",
        )
        self.proc = None

    def start(self):
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"]
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(
                [*self.net.exec_prefix(self.index), *command],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: master and workers
            )
        return self

    def wait_ready(self, seconds=90):
        """Poll /health directly (not through nginx) until it answers 200."""
        session = requests.Session()
        session.trust_env = False
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if session.get(f"http://{self.addr}/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(f"host {self.addr} not ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Clients:
    """``CLIENTS`` threads posting /predict through nginx until stopped; every outcome kept."""

    def __init__(self, url):
        self.url, self.results, self.lock = url, [], threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(CLIENTS)]

    def run(self, index):
        session = requests.Session()
        session.trust_env = False
        i = index
        while not self.stop.is_set():
            body = {"text": TEXTS[i % len(TEXTS)], "top_k": 3}
            try:
                r = session.post(self.url + "/predict", json=body, timeout=30)
                ok = r.status_code == 200 and r.json().get("success") is True
                outcome = "ok" if ok else f"{r.status_code}: {r.text[:80]}"
            except (requests.RequestException, ValueError) as exc:
                outcome = type(exc).__name__
            with self.lock:
                self.results.append(outcome)
            i += CLIENTS

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(60)


def access_log(path, request="POST /predict"):
    """nginx's JSON lines for ``request`` so far (the last line may be half written)."""
    entries = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return [e for e in entries if e["request"] == request]


def answered_by(entry):
    """The host that gave the final answer: the last address nginx tried."""
    return entry["upstream"].split(", ")[-1]


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}")


def served_since(log, addr, since, count):
    """True once ``addr`` answered ``count`` requests with 200 logged after ``since``."""
    return (
        sum(
            1
            for e in access_log(log)
            if e["msec"] >= since and e["status"] == 200 and answered_by(e) == addr
        )
        >= count
    )


@pytest.mark.fleet
@pytest.mark.load
@pytest.mark.skipif(fleet_prerequisites() is not None, reason=str(fleet_prerequisites()))
def test_fleet_survives_kill_and_stop_and_the_killed_host_rejoins(tiny_model_dir, tmp_path):
    fail_timeout = int(re.search(r"fail_timeout=(\d+)s", SITE.read_text()).group(1))
    with Subnet(HOSTS) as net:
        hosts = [Host(net, i, tiny_model_dir, tmp_path) for i in range(HOSTS)]
        nginx = None
        try:
            for host in hosts:
                host.start()
            for host in hosts:
                host.wait_ready()
            port = free_port()
            main, log = write_nginx(tmp_path, [h.addr for h in hosts], port)
            nginx = subprocess.Popen(nginx_args(tmp_path, main), start_new_session=True)
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: _answers(url), 30, "nginx to answer /health")
            figures = run_scenario(hosts, url, log, fail_timeout)
        finally:
            if nginx is not None:
                nginx.terminate()
                nginx.wait(30)
            for host in hosts:
                host.stop()
    assert not net.leftovers(), net.leftovers()
    record(figures)
    assert figures["failed"] == 0, figures["failures"]
    # Requests were in flight on, or sent to, the dead hosts and nginx passed them on.
    assert figures["retried_requests"] >= 1
    assert figures["rejoined_after_s"] is not None


def _answers(url):
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment between the test and nginx
    try:
        return session.get(url + "/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def run_scenario(hosts, url, log, fail_timeout):
    """Kill one host, stop another, restart the killed one, all under 16 clients."""
    killed, stopped, survivor = hosts
    started = time.time()
    with Clients(url) as clients:
        for host in hosts:  # every host is busy before anything fails
            wait_for(lambda h=host: served_since(log, h.addr, started, 20), 60, f"{host.addr}")
        kill_at = time.time()
        os.killpg(killed.proc.pid, signal.SIGKILL)
        stopped.proc.send_signal(signal.SIGTERM)  # the master: graceful stop
        killed.proc.wait(30)
        stopped.proc.wait(40)
        down_at = time.time()
        # The survivor alone carries the load for a while.
        wait_for(lambda: served_since(log, survivor.addr, down_at, 100), 60, "the survivor")
        killed.start().wait_ready()
        restart_at, restarted = time.time(), time.monotonic()
        rejoined = wait_for(
            lambda: served_since(log, killed.addr, restart_at, 5),
            fail_timeout + 30,
            "the restarted host to serve through nginx",
        )
    entries = access_log(log)
    failures = [r for r in clients.results if r != "ok"]
    retried = [e for e in entries if "," in e["upstream"]]
    return {
        "hosts": HOSTS,
        "clients": CLIENTS,
        "requests": len(clients.results),
        "failed": len(failures),
        "failures": failures[:10],
        "answered_by_host": {
            role: sum(1 for e in entries if e["status"] == 200 and answered_by(e) == h.addr)
            for role, h in zip(("killed", "stopped", "survivor"), hosts, strict=True)
        },
        "retried_requests": len(retried),
        "retry_first_status": _count(e["upstream_status"].split(", ")[0] for e in retried),
        "max_request_ms_around_failure": round(
            1000 * max((e["request_time"] for e in entries if e["msec"] >= kill_at), default=0)
        ),
        "rejoined_after_s": round(rejoined - restarted, 1),
        "load_seconds": round(time.time() - started, 1),
        "fail_timeout_s": fail_timeout,
    }


def _count(values):
    counts = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def record(figures):
    """Print the figures and write artefacts/fleet.json."""
    REPORT.parent.mkdir(exist_ok=True)
    figures = {
        **figures,
        "model": "tiny random test model (tests/conftest.py)",
        "cores": os.cpu_count(),
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    REPORT.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print("\nfleet: " + json.dumps(figures, ensure_ascii=False))
