"""The start is refused, fast and in one line, when the port is taken or the model is unfit.

Real Gunicorn processes (tests/live.py); the deadline for a refused start is the time a good
start took in the same test, since a refusal does strictly less work.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import make_config
from live import ROOT, GunicornServer, free_port

from fillmask.errors import ModelFilesError
from fillmask.model_files import open_model_dir

pytestmark = pytest.mark.live


def run_gunicorn(model_dir, bind, seconds, **env):
    """Start Gunicorn and wait for it to exit: (exit status, output, seconds it ran)."""
    environ = dict(os.environ, MODEL_DIR=str(model_dir), BIND=bind, WORKERS="1", ORT_THREADS="1")
    environ.update({k: str(v) for k, v in env.items()})
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "app:app"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"the server was still running after {seconds:.1f} s:\n{output}")
    return proc.returncode, output, time.monotonic() - started


def lines_with(output, words):
    """The lines of ``output`` that contain ``words`` (and no traceback anywhere)."""
    assert "Traceback" not in output, output
    return [line for line in output.splitlines() if words in line]


@pytest.fixture(scope="module")
def good_start(tiny_model_dir):
    """Seconds a normal start takes until /health answers (the baseline for refusals)."""
    started = time.monotonic()
    with GunicornServer(tiny_model_dir, WORKERS="1"):
        return time.monotonic() - started


# -- the port ------------------------------------------------------------------------------------


@pytest.mark.parametrize("reuse_port", ["0", "1"])
def test_a_second_server_on_the_same_port_is_refused(tiny_model_dir, good_start, reuse_port):
    with GunicornServer(tiny_model_dir, WORKERS="1", REUSE_PORT=reuse_port) as first:
        pids = first.worker_pids()
        address = f"127.0.0.1:{first.port}"
        code, output, took = run_gunicorn(
            tiny_model_dir, address, good_start + 5, REUSE_PORT=reuse_port
        )
        assert code != 0
        assert took < good_start + 2
        (line,) = lines_with(output, address)
        assert "cannot start" in line and "already in use" in line
        # The first server kept its port to itself and still answers.
        for _ in range(5):
            assert requests.get(first.url + "/health", timeout=5).json()["pid"] in pids


@pytest.mark.parametrize("reuse_port", ["0", "1"])
def test_a_port_held_by_another_program_stops_the_start(tiny_model_dir, good_start, reuse_port):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        address = f"127.0.0.1:{other.getsockname()[1]}"
        code, output, took = run_gunicorn(
            tiny_model_dir, address, good_start + 5, REUSE_PORT=reuse_port
        )
    assert code != 0 and took < good_start + 2
    (line,) = lines_with(output, address)
    assert "cannot start" in line and "already in use" in line


# -- the model -----------------------------------------------------------------------------------


def edited_copy(src, dst, edit):
    """A copy of a model directory whose manifest went through ``edit(manifest)``."""
    shutil.copytree(src, dst)
    path = Path(dst) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    edit(manifest)
    path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    return Path(dst)


def failed_parity(manifest):
    manifest["parity"]["fp32"]["passed"] = False


def no_parity(manifest):
    del manifest["parity"]


def no_mask_token(manifest):
    del manifest["special_tokens"]["mask"]


def no_files(manifest):
    del manifest["files"]


UNFIT = {
    "parity failed": (failed_parity, "parity check with PyTorch failed"),
    "parity missing": (no_parity, "parity check with PyTorch was never completed"),
    "mask token missing": (no_mask_token, "special_tokens.mask"),
    "files missing": (no_files, "lacks files"),
}


@pytest.mark.parametrize("case", sorted(UNFIT))
def test_an_unfit_model_is_refused_by_the_check(tiny_model_dir, tmp_path, case):
    edit, words = UNFIT[case]
    model = edited_copy(tiny_model_dir, tmp_path / "m", edit)
    for precision in ("fp32", "int8"):
        with pytest.raises(ModelFilesError) as err:
            open_model_dir(model, precision)
        assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("case", sorted(UNFIT))
def test_an_unfit_model_stops_the_server_with_one_line(tiny_model_dir, tmp_path, good_start, case):
    edit, words = UNFIT[case]
    model = edited_copy(tiny_model_dir, tmp_path / "m", edit)
    code, output, took = run_gunicorn(model, f"127.0.0.1:{free_port()}", good_start + 5)
    assert code != 0 and took < good_start + 2
    (line,) = lines_with(output, "cannot start")
    assert words in line
    if case.startswith("parity"):
        assert "tiny-random-bert" in line  # names the model


@pytest.mark.parametrize("case", sorted(UNFIT))
def test_an_unfit_model_answers_503_without_a_traceback(tiny_model_dir, tmp_path, caplog, case):
    from app import create_app

    model = edited_copy(tiny_model_dir, tmp_path / "m", UNFIT[case][0])
    client = create_app(make_config(model), strict=False).test_client()
    health = client.get("/health")
    assert health.status_code == 503 and health.get_json()["status"] == "error"
    response = client.post("/predict", json={"text": "好[MASK]"})
    assert response.status_code == 503 and response.get_json()["code"] == "model_unavailable"
    assert "Traceback" not in caplog.text


def garbage_onnx(src, dst, record_sha256):
    """A copy whose model.onnx is random bytes of the right size."""
    import hashlib

    model = edited_copy(src, dst, lambda m: None)
    path = model / "model.onnx"
    path.write_bytes(os.urandom(path.stat().st_size))
    if record_sha256:  # as if exported so: only loading it can tell
        manifest = json.loads((model / "manifest.json").read_text(encoding="utf-8"))
        manifest["files"]["model.onnx"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        (model / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return model


def test_a_corrupt_onnx_file_of_the_right_size_answers_503(tiny_model_dir, tmp_path):
    from app import create_app

    model = garbage_onnx(tiny_model_dir, tmp_path / "m", record_sha256=False)
    app = create_app(make_config(model, model_verify="size"), strict=False)
    (reason,) = app.extensions["fillmask"].failed.values()
    assert "onnxruntime cannot load" in reason
    assert app.test_client().get("/health").status_code == 503
    with pytest.raises(ModelFilesError):
        create_app(make_config(model, model_verify="size"))


@pytest.mark.parametrize("record_sha256", [False, True])
def test_a_corrupt_onnx_file_stops_the_server_with_one_line(
    tiny_model_dir, tmp_path, good_start, record_sha256
):
    model = garbage_onnx(tiny_model_dir, tmp_path / "m", record_sha256)
    code, output, took = run_gunicorn(
        model, f"127.0.0.1:{free_port()}", good_start + 10, MODEL_VERIFY="size"
    )
    assert code != 0 and took < good_start + 5
    (line,) = lines_with(output, "cannot start")
    # The master's sha256 check catches it; if the manifest agrees, the worker's load does.
    reason = "onnxruntime cannot load" if record_sha256 else "does not match its sha256"
    assert reason in line and "model.onnx" in line


# -- the timeouts --------------------------------------------------------------------------------


def gunicorn_conf():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gconf", ROOT / "gunicorn.conf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"REQUEST_TIMEOUT": "60"}, "REQUEST_TIMEOUT=60 is out of range: below TIMEOUT=60"),
        ({"HUNG_RUN_SECONDS": "20"}, "HUNG_RUN_SECONDS=20 is out of range"),
        ({"REQUEST_TIMEOUT": "0"}, "REQUEST_TIMEOUT=0 is out of range"),
        ({"DRAIN_SECONDS": "30"}, "DRAIN_SECONDS=30 is out of range: below GRACEFUL_TIMEOUT=30"),
        ({"DRAIN_SECONDS": "45.5"}, "DRAIN_SECONDS=45.5 is out of range: below GRACEFUL_TIMEOUT"),
    ],
)
def test_timeouts_out_of_order_stop_the_start(settings, words):
    from fillmask.config import Config

    with pytest.raises(ValueError) as err:
        gunicorn_conf().check_timeouts(Config.from_env(settings), 60, 30)
    assert words in str(err.value)


def test_default_timeouts_are_in_order():
    from fillmask.config import Config

    conf = gunicorn_conf()
    conf.check_timeouts(Config.from_env({}), conf.timeout, conf.graceful_timeout)
    assert conf.reuse_port is False  # the safe default


def test_a_drain_longer_than_the_graceful_timeout_stops_the_start(tiny_model_dir, good_start):
    """The master kills workers GRACEFUL_TIMEOUT after SIGTERM: a longer drain would be cut."""
    code, output, took = run_gunicorn(
        tiny_model_dir,
        f"127.0.0.1:{free_port()}",
        good_start + 5,
        DRAIN_SECONDS="10",
        GRACEFUL_TIMEOUT="2",
    )
    assert code != 0 and took < good_start + 2
    (line,) = lines_with(output, "cannot start")
    assert "DRAIN_SECONDS=10 is out of range: below GRACEFUL_TIMEOUT=2" in line


def test_an_unknown_log_level_stops_the_start_with_one_line(tiny_model_dir, good_start):
    code, output, took = run_gunicorn(
        tiny_model_dir, f"127.0.0.1:{free_port()}", good_start + 5, LOG_LEVEL="lots"
    )
    assert code != 0 and took < good_start + 2
    (line,) = lines_with(output, "cannot start")
    assert "LOG_LEVEL=lots is not one of debug, info, warning, error, critical" in line


# -- the control socket --------------------------------------------------------------------------


def test_no_control_socket_is_opened(tiny_model_dir, tmp_path):
    """Gunicorn >= 25.1 opens a management socket by default; this server opens none."""
    home = tmp_path / "home"
    runtime = home / "run"  # XDG_RUNTIME_DIR is Gunicorn's first choice for the socket
    runtime.mkdir(parents=True)
    with GunicornServer(
        tiny_model_dir, WORKERS="1", HOME=str(home), XDG_RUNTIME_DIR=str(runtime)
    ) as server:
        pids = {server.proc.pid, *server.worker_pids()}
        sockets = [p for p in home.rglob("*") if p.is_socket() or p.name.endswith(".ctl")]
        # No Unix socket of the server's processes listens anywhere (/proc/net/unix: inodes).
        listening = _unix_listening_inodes()
        held = {
            int(link.split("[")[1].rstrip("]"))
            for pid in pids
            for link in _fd_links(pid)
            if link.startswith("socket:[")
        }
        assert "Control socket" not in server.output()
    assert sockets == []
    assert held & listening == set(), "a server process listens on a Unix socket"


def _fd_links(pid):
    """Where the open file descriptors of ``pid`` point."""
    fds = Path(f"/proc/{pid}/fd")
    links = []
    for fd in fds.iterdir():
        try:
            links.append(os.readlink(fd))
        except OSError:
            pass  # closed meanwhile
    return links


def _unix_listening_inodes():
    """Inodes of the machine's listening Unix stream sockets (state 01: LISTEN)."""
    inodes = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        cols = line.split()
        # Num RefCount Protocol Flags Type St Inode [Path]; flags 00010000 is __SO_ACCEPTCON
        if len(cols) >= 7 and int(cols[3], 16) & 0x10000:
            inodes.add(int(cols[6]))
    return inodes
