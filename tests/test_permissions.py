"""Exported as one user, served as another: an unreadable model is one line, never a traceback.

The model directory belongs to an "exporter" uid and the service runs as a "service" uid
(``setpriv``, as root), the situation of the systemd unit's ``fillmask`` user or the image's
uid 10001 when someone else ran export_onnx.py. Both paths that read the model are tried: the
Gunicorn master's check (``on_starting``) in a live start, and a worker's boot (``app.app``).
"""

import functools
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest
from live import ROOT, free_port

EXPORTER = 10002
# The image's uid, unknown to this machine's passwd (the message gives the number), and a named
# account (the message gives the name too), as the systemd unit's "fillmask" user would be.
SERVICE_UIDS = [10001, *(entry.pw_uid for entry in pwd.getpwall() if entry.pw_name == "nobody")]
SETPRIV = shutil.which("setpriv")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not SETPRIV, reason="needs root and setpriv to act as two users"
)


def who(uid):
    """How the refusal names the account of ``uid``."""
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def as_service(uid, *args):
    """The command line that runs ``python args`` as ``uid``, and its environment."""
    python, path = interpreter(uid)
    drop = [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    # Not another test's in-process metrics directory (prepare_dir exports it): a clean start.
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    return [*drop, python, *args], {**env, "PYTHONPATH": path}


@functools.cache
def interpreter(uid):
    """(python, PYTHONPATH) that ``uid`` can run with this venv's packages.

    The test interpreter may sit where that uid cannot reach (a pyenv under /root): then the
    system's python of the same version runs with this venv's packages on its path.
    """
    drop = [SETPRIV, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    venv = f"{ROOT}{os.pathsep}{sysconfig.get_paths()['purelib']}"
    system = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
    for python, path in ((sys.executable, str(ROOT)), (system, venv)):
        probe = subprocess.run(
            [*drop, python, "-c", "import onnxruntime, gunicorn, flask"],
            env=dict(os.environ, PYTHONPATH=path),
            capture_output=True,
        )
        if probe.returncode == 0:
            return python, path
    pytest.skip(f"no python uid {uid} can run with this venv's packages")


@pytest.fixture
def share():
    """A directory both uids can traverse (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="fillmask-perm-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def exported(tiny_model_dir, share, dir_mode=0o755, file_modes=None):
    """A copy of the model owned by the exporter uid, with the given modes."""
    model = share / "models" / "m"
    shutil.copytree(tiny_model_dir, model)
    (share / "models").chmod(0o755)
    for path in [model, *model.iterdir()]:
        os.chown(path, EXPORTER, EXPORTER)
        path.chmod(0o644)
    for name, mode in (file_modes or {}).items():
        (model / name).chmod(mode)
    model.chmod(dir_mode)
    return model


CASES = {
    # what export_onnx.py used to leave (tempfile.mkdtemp): nobody else may list or enter it
    "directory 0700": (0o700, {}, "fp32", "m/manifest.json"),
    "manifest 0600": (0o755, {"manifest.json": 0o600}, "fp32", "m/manifest.json"),
    "model.onnx 0600": (0o755, {"model.onnx": 0o600}, "fp32", "m/model.onnx"),
    "model.int8.onnx 0600": (0o755, {"model.int8.onnx": 0o600}, "int8", "m/model.int8.onnx"),
    "tokenizer.json 0600": (0o755, {"tokenizer.json": 0o600}, "fp32", "m/tokenizer.json"),
}


def assert_one_line_refusal(result, model, named, uid):
    """Exit non-zero, one 'cannot start' line naming the path and the uid, no traceback."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output and "PermissionError" not in output, output
    lines = [line for line in output.splitlines() if "cannot start" in line]
    assert len(lines) == 1, output
    line = lines[0]
    assert f"{model.parent}/{named}" in line, line
    assert f"permission denied for {who(uid)};" in line, line
    assert f"chmod -R a+rX {model}" in line, line


def service_env(share, uid, model, precision, **extra):
    """What a service started by its uid sees: its own HOME, the model, one small worker."""
    home = share / "home"
    home.mkdir(exist_ok=True)
    os.chown(home, uid, uid)
    return dict(
        HOME=str(home),
        MODEL_DIR=str(model),
        MODEL_PRECISION=precision,
        WORKERS="1",
        ORT_THREADS="1",
        **extra,
    )


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_worker_boot_refuses_an_unreadable_model_in_one_line(tiny_model_dir, share, case):
    dir_mode, file_modes, precision, named = CASES[case]
    uid = SERVICE_UIDS[0]  # the image's: no name
    model = exported(tiny_model_dir, share, dir_mode, file_modes)
    command, env = as_service(uid, "-c", "import app; app.app")
    env.update(service_env(share, uid, model, precision))
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert_one_line_refusal(result, model, named, uid)
    assert result.returncode == 3  # Gunicorn's WORKER_BOOT_ERROR: the master stops, no re-fork


@pytest.mark.live
@pytest.mark.parametrize("case", sorted(CASES))
def test_the_gunicorn_master_refuses_an_unreadable_model_in_one_line(tiny_model_dir, share, case):
    dir_mode, file_modes, precision, named = CASES[case]
    model = exported(tiny_model_dir, share, dir_mode, file_modes)
    uid = SERVICE_UIDS[-1]  # nobody, when the machine has it: a named account
    command, env = as_service(
        uid, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "app:app"
    )
    env.update(service_env(share, uid, model, precision, BIND=f"127.0.0.1:{free_port()}"))
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert_one_line_refusal(result, model, named, uid)
    assert "Booting worker" not in result.stdout + result.stderr  # refused before any fork


def test_the_same_model_readable_by_all_serves(tiny_model_dir, share):
    """The control: the exporter's files with a+rX load as the service uid."""
    model = exported(tiny_model_dir, share)
    code = (
        "from fillmask.model_files import open_model_dir;"
        f"print(open_model_dir({str(model)!r}, 'int8', verify='sha256').name)"
    )
    command, env = as_service(SERVICE_UIDS[0], "-c", code)
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "tiny-random-bert", result.stderr


@pytest.mark.live
def test_a_metrics_dir_the_service_cannot_write_stops_the_start_in_one_line(tiny_model_dir, share):
    """METRICS_DIR made by root for a service that runs as another user."""
    model = exported(tiny_model_dir, share)
    metrics = share / "metrics"
    metrics.mkdir(mode=0o755)
    uid = SERVICE_UIDS[-1]
    command, env = as_service(
        uid, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "app:app"
    )
    env.update(
        service_env(
            share, uid, model, "fp32", BIND=f"127.0.0.1:{free_port()}", METRICS_DIR=str(metrics)
        )
    )
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Traceback" not in output, output
    (line,) = [line for line in output.splitlines() if "cannot start" in line]
    assert f"METRICS_DIR={metrics} cannot be used: Permission denied" in line, line
