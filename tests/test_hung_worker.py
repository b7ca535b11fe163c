"""A model run that never returns: the worker turns unhealthy and Gunicorn replaces it.

The hang is made inside a real Gunicorn worker by a test-only config file that loads the real
gunicorn.conf.py and adds a ``post_fork`` hook wrapping ``Predictor.run``: a text holding
the magic word blocks for ever. Nothing in the production code knows about it.
"""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from live import ROOT, GunicornServer

pytestmark = pytest.mark.live

MAGIC = "卡死"
REQUEST_TIMEOUT = 1.0
HUNG_RUN_SECONDS = 1.5  # above REQUEST_TIMEOUT, as gunicorn.conf.py requires
HANGING_CONFIG = """
import pathlib
import threading

__file__ = {real!r}
exec(compile(open(__file__, encoding="utf-8").read(), __file__, "exec"))


def post_fork(server, worker):
    from fillmask.predictor import Predictor

    real = Predictor.run
    never = threading.Event()

    def run(self, prepared):
        if any({magic!r} in item.text for item in prepared):
            pathlib.Path({flag!r}).touch()  # tells the test the run now hangs
            never.wait()
        return real(self, prepared)

    Predictor.run = run
"""


def health(url):
    """(status code, body) of /health, or (None, None) while nothing answers."""
    try:
        r = requests.get(url + "/health", timeout=2)
    except requests.RequestException:
        return None, None
    return r.status_code, r.json()


@pytest.mark.parametrize("batching", ["1", "0"])
def test_a_hung_model_run_gets_the_worker_replaced(tiny_model_dir, tmp_path, batching):
    config, flag = tmp_path / "hanging.conf.py", tmp_path / "hanging"
    config.write_text(
        HANGING_CONFIG.format(real=str(ROOT / "gunicorn.conf.py"), magic=MAGIC, flag=str(flag)),
        encoding="utf-8",
    )
    with GunicornServer(
        tiny_model_dir,
        config=config,
        WORKERS="1",
        THREADS="4",
        CACHE_SIZE="0",
        BATCHING=batching,
        REQUEST_TIMEOUT=str(REQUEST_TIMEOUT),
        HUNG_RUN_SECONDS=str(HUNG_RUN_SECONDS),
    ) as server:
        (old_pid,) = server.worker_pids()
        start = time.monotonic()
        assert requests.post(server.url + "/predict", json={"text": "好[MASK]"}).ok
        normal = time.monotonic() - start
        with ThreadPoolExecutor(2) as pool:
            hung = pool.submit(
                requests.post,
                server.url + "/predict",
                json={"text": f"{MAGIC}[MASK]了"},
                timeout=60,
            )
            until = time.monotonic() + 30
            while not flag.exists() and time.monotonic() < until:
                time.sleep(0.01)
            assert flag.exists(), server.output()
            # A request queued meanwhile is answered too, not left hanging with the worker.
            waiting = pool.submit(
                requests.post, server.url + "/predict", json={"text": "好[MASK]"}, timeout=60
            )
            # Until it is replaced the worker reports itself unhealthy (or no longer answers).
            seen_unhealthy = False
            deadline = time.monotonic() + HUNG_RUN_SECONDS + 30
            new_pid = None
            while time.monotonic() < deadline:
                code, body = health(server.url)
                seen_unhealthy |= code == 503 and body["status"] == "error"
                if code == 200 and body["pid"] != old_pid:
                    new_pid = body["pid"]
                    break
                time.sleep(0.05)
            answers = [hung.result(60), waiting.result(60)]
        assert new_pid is not None, server.output()
        assert server.proc.poll() is None, "the master died"
        assert old_pid not in server.worker_pids()
        # The hung request gets its JSON 504 at the deadline, in both modes.
        assert answers[0].status_code == 504 and answers[0].json()["code"] == "timeout"
        assert answers[0].elapsed.total_seconds() < REQUEST_TIMEOUT + 1 + 10 * normal
        # The other one waited behind the hung batch (504), or ran beside it unbatched (200).
        assert answers[1].status_code == (504 if batching == "1" else 200), answers[1].text
        # The replacement serves.
        assert requests.post(server.url + "/predict", json={"text": "好[MASK]"}).ok
        assert "hung" in server.output()
