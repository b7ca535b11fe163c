"""run.sh on the paths users take (issue 11 §4), run for real in a copy of the project.

Each test copies the project's files to a temporary directory, so the real .venv and models/ are
never touched. Installing for real would download gigabytes: instead ``PYTHON`` (which run.sh
uses to create its venvs) is a wrapper that creates a venv whose site-packages point, by a .pth
file, at this test run's own environment. pip then finds every requirement already satisfied
(``PIP_NO_INDEX=1``: it may not download anything), and the export runs the real exporter with
the real torch on the tiny model. Everything else - venv checks, stamps, the export and where
it lands, the start of Gunicorn - is run.sh itself.
"""

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import requests
from live import free_port

ROOT = Path(__file__).resolve().parents[1]
RUN_TIMEOUT = 600

pytestmark = pytest.mark.install

WRAPPER = """#!/bin/sh
# python for run.sh's venvs in tests: a venv that sees the test environment's packages.
set -e
[ "$1" = -m ] && [ "$2" = venv ] || exec "{python}" "$@"
"{python}" "$@" --without-pip
for dir; do :; done
echo "{site}" >"$dir/lib/python{version}/site-packages/test-env.pth"
cat >"$dir/bin/gunicorn" <<EOF
#!$dir/bin/python
import sys
from gunicorn.app.wsgiapp import run
sys.exit(run())
EOF
chmod +x "$dir/bin/gunicorn"
"""


def _project_files():
    """The files git would check out (tracked, and new files not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return [name.decode() for name in listed if name and (ROOT / name.decode()).is_file()]


@pytest.fixture
def project(tmp_path):
    """A copy of the project, and a run(*args, **env) that runs its run.sh."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the project's git checkout to know its files")
    copy = tmp_path / "fillmask"
    for name in _project_files():
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, copy / name)
    python = tmp_path / "python-wrapper"
    python.write_text(
        WRAPPER.format(
            python=sys.executable,
            site=sysconfig.get_paths()["purelib"],
            version=sysconfig.get_python_version(),
        )
    )
    python.chmod(0o755)
    base_env = dict(
        os.environ,
        PYTHON=str(python),
        TORCH_INDEX_URL="",
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        HF_HUB_OFFLINE="1",
    )
    for name in ("MODEL_DIR", "MODEL_SOURCE", "VENV", "EXPORT_VENV", "VIRTUAL_ENV"):
        base_env.pop(name, None)

    def run(*args, **env):
        result = subprocess.run(
            [str(copy / "run.sh"), *args],
            cwd=copy,
            env={**base_env, **env},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
        result.output = result.stdout + result.stderr
        return result

    run.root = copy
    run.env = base_env
    return run


def _assert_ok(result):
    assert result.returncode == 0, result.output


def _assert_export(model_dir):
    """An export in place: the manifest and the files it names, nothing nested."""
    assert (model_dir / "manifest.json").is_file()
    assert (model_dir / "model.onnx").is_file()
    leftovers = [p.name for p in model_dir.parent.iterdir() if ".export" in p.name]
    assert not leftovers
    # The one directory allowed: the shared weights (SHARE_WEIGHTS), made once it is served.
    nested = [p for p in model_dir.iterdir() if p.is_dir() and p.name != ".weights-cache"]
    assert not nested, list(model_dir.iterdir())


def _serve_until_healthy(project, *args, timeout=120):
    """Start ./run.sh (it execs Gunicorn), wait for /health 200, stop it; return /health."""
    port = free_port()
    env = {**project.env, "BIND": f"127.0.0.1:{port}", "WORKERS": "1", "ORT_THREADS": "1"}
    log = project.root / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(project.root / "run.sh"), *args],
            cwd=project.root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
                if answer.status_code == 200:
                    return answer.json()
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("run.sh did not serve /health in time:\n" + log.read_text())
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.mark.export
def test_hugging_face_folder_at_the_model_directory(project, tiny_source):
    """./run.sh models/bert-base-chinese, where that folder is the save_pretrained copy."""
    model_dir = project.root / "models" / "bert-base-chinese"
    shutil.copytree(tiny_source, model_dir)
    first = project("models/bert-base-chinese", "--prepare")
    _assert_ok(first)
    _assert_export(model_dir)
    kept = project.root / "models" / "bert-base-chinese-hf"
    assert (kept / "config.json").is_file(), first.output
    assert "bert-base-chinese-hf" in first.output  # says where the user's files went
    # The next start finds the model and serves it.
    health = _serve_until_healthy(project, "models/bert-base-chinese")
    assert health["status"] == "ok"


STUB_EXPORTER = """import shutil, sys
# Stands in for export_onnx.py: this test is about where run.sh puts an export, and the real
# exporter, run by run.sh, is test_hugging_face_folder_at_the_model_directory's.
out = sys.argv[sys.argv.index("--output") + 1]
shutil.copytree({model!r}, out)
"""


def test_model_dir_with_a_trailing_slash(project, tiny_source, tiny_model_dir):
    """MODEL_DIR=models/tiny/ exports once into models/tiny, and the next run finds it."""
    (project.root / "export_onnx.py").write_text(STUB_EXPORTER.format(model=str(tiny_model_dir)))
    first = project(str(tiny_source), "--prepare", MODEL_DIR="models/tiny/")
    _assert_ok(first)
    _assert_export(project.root / "models" / "tiny")
    again = project(str(tiny_source), "--prepare", MODEL_DIR="models/tiny/")
    _assert_ok(again)
    assert "models/tiny present" in again.output
    assert "export " not in again.output


def test_venv_with_a_dangling_python_is_recreated(project, tiny_model_dir):
    """A .venv whose bin/python points nowhere (Python upgraded) is rebuilt, not used."""
    shutil.copytree(tiny_model_dir, project.root / "models" / "bert-base-chinese")
    venv = project.root / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/local/bin\nversion = 3.9.2\n")
    (venv / "bin" / "python").symlink_to("/nonexistent/python3.9")
    (venv / ".requirements.sha256").write_text("stale\n")
    result = project("--prepare")
    _assert_ok(result)
    assert "recreating" in result.output
    assert subprocess.run([venv / "bin" / "python", "-c", "import flask"]).returncode == 0
    again = project("--prepare")
    _assert_ok(again)
    assert ".venv up to date" in again.output


def test_a_directory_that_is_not_a_venv_is_left_alone(project):
    """VENV pointing at someone's files: run.sh refuses instead of clearing them."""
    other = project.root / "precious"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    result = project("--prepare", VENV="precious")
    assert result.returncode != 0
    assert "not a virtual environment" in result.output
    assert (other / "notes.txt").read_text() == "keep me"
