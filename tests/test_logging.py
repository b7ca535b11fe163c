"""One log format under Gunicorn: its own lines, the access log and the app's, with time and pid.

A live Gunicorn; its output is read line by line. The config used is the real one, plus a hook
that logs through two of the app's module loggers the way fillmask/*.py do.
"""

import re

import pytest
import requests
from live import ROOT, GunicornServer

pytestmark = pytest.mark.live

# Gunicorn's own format: "[2026-12-01 10:54:35 +0000] [19504] [INFO] message"
LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[(\d+)\] \[([A-Z]+)\] (.*)$")

PROBE_CONFIG = """
import logging

__file__ = {real!r}
exec(compile(open(__file__, encoding="utf-8").read(), __file__, "exec"))
_ready = post_worker_init


def post_worker_init(worker):
    _ready(worker)
    logging.getLogger("fillmask.predictor").info("probe info from a module logger")
    logging.getLogger("fillmask.batcher").debug("probe debug below LOG_LEVEL")
    logging.getLogger("fillmask").warning("probe warning from the app logger")
"""


# onnxruntime's native code writes these straight to stderr, past Python's logging (seen under
# qemu in the emulated Pi check, where /sys/devices/system/cpu is not there): not ours to format.
NATIVE = re.compile(r"^(Error in cpuinfo: |onnxruntime (cpuid_info )?warning: )")


def parsed(output):
    """(pid, level, message) for every line; a line in another format fails the test."""
    lines = [line for line in output.splitlines() if line.strip() and not NATIVE.match(line)]
    odd = [line for line in lines if not LINE.match(line)]
    assert not odd, "lines in another format:\n" + "\n".join(odd)
    return [(int(m[1]), m[2], m[3]) for m in map(LINE.match, lines)]


def test_gunicorn_access_and_app_lines_share_one_format(tiny_model_dir, tmp_path):
    config = tmp_path / "probe.conf.py"
    config.write_text(PROBE_CONFIG.format(real=str(ROOT / "gunicorn.conf.py")), encoding="utf-8")
    with GunicornServer(
        tiny_model_dir, config=config, WORKERS="1", ACCESS_LOG="1", LOG_LEVEL="info"
    ) as server:
        (worker,) = server.worker_pids()
        master = server.proc.pid
        assert requests.post(server.url + "/predict", json={"text": "好[MASK]"}).ok
    lines = parsed(server.output())

    def one(words):
        found = [line for line in lines if words in line[2]]
        assert len(found) == 1, (words, lines)
        return found[0]

    assert one("Listening at")[:2] == (master, "INFO")  # Gunicorn's master
    assert one("Booting worker")[:2] == (worker, "INFO")  # Gunicorn, just after the fork
    assert one(f"worker {worker} ready")[:2] == (worker, "INFO")  # Gunicorn's worker log
    assert one("tiny-random-bert (fp32) loaded")[:2] == (worker, "INFO")  # the app's logger
    assert one("probe info from a module logger")[:2] == (worker, "INFO")
    assert one("probe warning from the app logger")[:2] == (worker, "WARNING")
    assert one('"POST /predict HTTP/1.1" 200')[:2] == (worker, "INFO")  # the access log
    assert not [line for line in lines if "probe debug" in line[2]]


def test_access_log_off_leaves_only_the_access_lines_out(tiny_model_dir):
    with GunicornServer(tiny_model_dir, WORKERS="1", ACCESS_LOG="0") as server:
        assert requests.post(server.url + "/predict", json={"text": "好[MASK]"}).ok
    messages = [message for _, _, message in parsed(server.output())]
    assert not [m for m in messages if "POST /predict" in m]
    assert [m for m in messages if "loaded from" in m]
