"""Deployment files: the systemd unit, its environment file, the nginx site, and run.sh's logic."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fillmask.config import Config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "fillmask.service"
ENV_FILE = DEPLOY / "fillmask.env"
NGINX_SITE = DEPLOY / "nginx-fillmask.conf"
INSTALL_DIR = "/opt/fillmask"


def unit_entries():
    """(section, key, value) for every setting of the unit, in order (keys may repeat)."""
    entries, section = [], None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        entries.append((section, key, value))
    return entries


def unit_value(section, key):
    values = [v for s, k, v in unit_entries() if s == section and k == key]
    assert len(values) == 1, f"{key} in [{section}]: {values}"
    return values[0]


def env_file():
    """The example environment file as a dict (systemd's KEY=value lines)."""
    pairs = [
        line.split("=", 1)
        for line in ENV_FILE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return {key: value for key, value in pairs}


def gunicorn_knobs():
    """Environment variables gunicorn.conf.py reads."""
    return set(
        re.findall(
            r'os\.environ\.(?:get|setdefault)\("(\w+)"', (ROOT / "gunicorn.conf.py").read_text()
        )
    )


# -- systemd unit --------------------------------------------------------------------------------


def test_unit_restarts_runs_unprivileged_reads_env_file_after_network():
    assert unit_value("Service", "Restart") == "on-failure"
    assert unit_value("Service", "User") not in ("", "root")
    assert unit_value("Service", "EnvironmentFile").lstrip("-") == "/etc/default/fillmask"
    assert "network-online.target" in unit_value("Unit", "After").split()
    assert "network-online.target" in unit_value("Unit", "Wants").split()
    assert unit_value("Install", "WantedBy") == "multi-user.target"
    assert unit_value("Service", "WorkingDirectory") == INSTALL_DIR
    assert unit_value("Service", "ExecStart") == (
        f"{INSTALL_DIR}/.venv/bin/gunicorn -c gunicorn.conf.py app:app"
    )


def test_unit_stop_timeout_outlasts_gunicorns_graceful_timeout():
    stop = int(unit_value("Service", "TimeoutStopSec"))
    graceful = int(env_file().get("GRACEFUL_TIMEOUT", "30"))
    assert stop > graceful


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    # verify checks that ExecStart exists: point the unit at a stand-in install directory.
    install = tmp_path / "fillmask"
    gunicorn = install / ".venv" / "bin" / "gunicorn"
    gunicorn.parent.mkdir(parents=True)
    gunicorn.write_text("#!/bin/sh\n")
    gunicorn.chmod(0o755)
    unit = tmp_path / "fillmask.service"
    unit.write_text(UNIT.read_text().replace(INSTALL_DIR, str(install)))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    # verify exits 0 on unknown keys or bad values and only warns: any output is a failure.
    mentions = [line for line in (result.stdout + result.stderr).splitlines() if "fillmask" in line]
    assert result.returncode == 0 and not mentions, result.stdout + result.stderr


# -- environment file ----------------------------------------------------------------------------


def test_env_file_sets_only_knobs_the_service_reads():
    known = {name.upper() for name in Config.model_fields} | gunicorn_knobs()
    assert set(env_file()) - known == set()


def test_env_file_values_are_valid_and_fill_four_cores():
    env = env_file()
    config = Config.from_env(env)  # raises on a value of the wrong type
    assert config.model_precision in ("fp32", "int8")
    assert int(env["WORKERS"]) * config.ort_threads == 4
    assert config.model_dir == f"{INSTALL_DIR}/models/bert-base-chinese"


PI_CORES = 4  # the env file's values are the defaults a Raspberry Pi 4B gets
# Values that differ from the defaults on purpose, and why.
DELIBERATE = {
    "BIND": "loopback only: nginx is in front",
    "MODEL_DIR": "the install directory's model, an absolute path for systemd",
}


def gunicorn_defaults():
    """{variable: default} for the settings gunicorn.conf.py reads with a literal default."""
    text = (ROOT / "gunicorn.conf.py").read_text()
    return dict(re.findall(r'os\.environ\.(?:get|setdefault)\("(\w+)", "([^"]*)"\)', text))


def test_env_file_values_are_the_defaults_on_a_pi(monkeypatch):
    """A line of the env file states a default; it must not contradict the code's."""
    monkeypatch.setattr(os, "cpu_count", lambda: PI_CORES)  # ORT_THREADS' default depends on it
    knobs, base = gunicorn_defaults(), Config.from_env({})
    assert {"THREADS", "WORKERS", "TIMEOUT"} <= set(knobs)  # the regex still finds them
    differ = {}
    for key, value in env_file().items():
        if key in DELIBERATE:
            continue
        if key in knobs:
            same = value == knobs[key]
        else:
            same = Config.from_env({key: value}) == base
        if not same:
            differ[key] = (value, knobs.get(key))
    assert differ == {}


def test_env_file_binds_where_nginx_proxies():
    upstream = re.search(r"upstream fillmask \{\s*server ([\d.:]+);", NGINX_SITE.read_text())
    assert upstream and upstream.group(1) == env_file()["BIND"]


# -- nginx site ----------------------------------------------------------------------------------


def test_nginx_accepts_the_site(tmp_path):
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if not nginx:
        pytest.skip("nginx not installed (apt-get install nginx-light)")
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{\n  access_log off;\n  include {NGINX_SITE};\n}}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("site", ["nginx-fillmask.conf", "nginx-fleet.conf"])
def test_nginx_closes_idle_upstream_connections_before_gunicorn(site):
    """keepalive_timeout in the upstream below Gunicorn's KEEPALIVE; a POST may be resent."""
    text = (DEPLOY / site).read_text()
    upstream = re.search(r"upstream \w+ \{(.*?)\}", text, re.S).group(1)
    idle = re.search(r"^\s*keepalive_timeout (\d+)s;", upstream, re.M)
    assert idle and int(idle.group(1)) < int(gunicorn_defaults()["KEEPALIVE"])
    retry = re.search(r"proxy_next_upstream ([^;]+);", text).group(1).split()
    assert {"error", "non_idempotent"} <= set(retry)


# -- run.sh --------------------------------------------------------------------------------------


def run_sh(tmp_path, *args, **env):
    """``run.sh --check`` with its venvs and model directory in ``tmp_path``."""
    environ = dict(
        os.environ,
        VENV=str(tmp_path / "venv"),
        EXPORT_VENV=str(tmp_path / "venv-export"),
        MODEL_DIR=str(tmp_path / "models" / "m"),
        BIND="127.0.0.1:5999",
        PYTHON=sys.executable,
    )
    for name in ("MODEL_SOURCE", "TORCH_INDEX_URL", "MODEL_PRECISION"):
        environ.pop(name, None)
    environ.update(env)
    return subprocess.run(
        ["bash", str(ROOT / "run.sh"), *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
    )


def fake_venv(path, *requirements):
    """A venv run.sh takes as installed: a working bin/python and a matching stamp."""
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "python").symlink_to(sys.executable)
    digest = hashlib.sha256(b"".join((ROOT / r).read_bytes() for r in requirements))
    (path / ".requirements.sha256").write_text(digest.hexdigest() + "\n")


def test_run_sh_check_on_a_fresh_machine_plans_everything_and_changes_nothing(tmp_path):
    result = run_sh(tmp_path, "--check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"venv: install requirements.txt into {tmp_path}/venv",
        f"model: export google-bert/bert-base-chinese to {tmp_path}/models/m "
        f"(torch in {tmp_path}/venv-export; a few minutes, 2.5 GB of memory)",
        "export venv: install torch==2.13.0 and requirements-export.txt into "
        f"{tmp_path}/venv-export",
        f"serve: gunicorn -c gunicorn.conf.py app:app (BIND=127.0.0.1:5999, "
        f"MODEL_DIR={tmp_path}/models/m, MODEL_PRECISION=fp32)",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_run_sh_second_start_installs_and_exports_nothing(tmp_path):
    fake_venv(tmp_path / "venv", "requirements.txt", "constraints.txt")
    model = tmp_path / "models" / "m"
    model.mkdir(parents=True)
    (model / "manifest.json").write_text("{}")
    result = run_sh(tmp_path, "--check", MODEL_PRECISION="int8")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"venv: {tmp_path}/venv up to date",
        f"model: {model} present",
        f"serve: gunicorn -c gunicorn.conf.py app:app (BIND=127.0.0.1:5999, MODEL_DIR={model}, "
        "MODEL_PRECISION=int8)",
    ]


def test_run_sh_reinstalls_when_requirements_change(tmp_path):
    fake_venv(tmp_path / "venv", "requirements.txt", "constraints.txt")
    (tmp_path / "venv" / ".requirements.sha256").write_text("0" * 64 + "\n")
    result = run_sh(tmp_path, "--check")
    assert f"venv: install requirements.txt into {tmp_path}/venv" in result.stdout


def test_run_sh_exports_from_a_local_copy_with_a_ready_export_venv(tmp_path):
    fake_venv(tmp_path / "venv", "requirements.txt", "constraints.txt")
    fake_venv(
        tmp_path / "venv-export", "requirements-export.txt", "requirements.txt", "constraints.txt"
    )
    result = run_sh(tmp_path, "--check", "./bert-base-chinese")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].startswith(f"model: export ./bert-base-chinese to {tmp_path}/models/m ")
    assert lines[2] == f"export venv: {tmp_path}/venv-export up to date"


@pytest.mark.parametrize("given", ["", "https://mirror.example/whl"])
def test_torch_index_is_the_one_given(given):
    """TORCH_INDEX_URL set (even empty: the default index, PyPI) is used as it is, unprobed."""
    result = subprocess.run(
        ["bash", "-c", ". scripts/venv.sh; torch_index"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, TORCH_INDEX_URL=given, PYTHON=sys.executable),
        timeout=30,
    )
    assert result.returncode == 0 and result.stdout == given and result.stderr == ""


def test_run_sh_prepare_stops_before_serving(tmp_path):
    fake_venv(tmp_path / "venv", "requirements.txt", "constraints.txt")
    (tmp_path / "models" / "m").mkdir(parents=True)
    (tmp_path / "models" / "m" / "manifest.json").write_text("{}")
    result = run_sh(tmp_path, "--prepare")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "prepared: start with ./run.sh or the systemd unit"


def test_run_sh_rejects_unknown_options(tmp_path):
    result = run_sh(tmp_path, "--frobnicate")
    assert result.returncode == 2
    assert "unknown option --frobnicate" in result.stderr


@pytest.mark.parametrize("script", ["run.sh", "scripts/pi-check.sh"])
def test_shell_scripts_parse_and_are_executable(script):
    path = ROOT / script
    assert os.access(path, os.X_OK)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
