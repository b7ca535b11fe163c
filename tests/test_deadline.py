"""REQUEST_TIMEOUT: a request that waits too long for the model gets a JSON 504, not a hang-up.

The model is made slow with stubs that block on an Event; the deadline is short, and every
margin is derived from a normal request timed in the same test.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import make_config

from fillmask import deadline
from fillmask.batcher import MicroBatcher

TIMEOUT = 0.5


def baseline(client, body):
    """Median seconds of a normal request (the margin every timing check below allows)."""
    times = []
    for _ in range(5):
        start = time.monotonic()
        assert client.post("/predict", json=body).status_code == 200
        times.append(time.monotonic() - start)
    return sorted(times)[2]


def margin(base):
    return 1.0 + 10 * base


# -- the batcher alone ---------------------------------------------------------------------------


def test_submit_waits_at_most_the_deadline_and_drops_the_queued_job():
    release, started, ran = threading.Event(), threading.Event(), []

    def run(items):
        ran.append(list(items))
        if "slow" in items:
            started.set()
            release.wait(30)
        return list(items)

    batcher = MicroBatcher(run, max_batch=1)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(lambda: (deadline.start(TIMEOUT), batcher.submit(["slow"])))
        assert started.wait(10)  # the slow job is running
        start = time.monotonic()
        deadline.start(TIMEOUT)
        try:
            with pytest.raises(deadline.DeadlineExceeded) as err:
                batcher.submit(["queued"])  # waits behind the slow run
        finally:
            deadline.clear()
        waited = time.monotonic() - start
        with pytest.raises(deadline.DeadlineExceeded):
            first.result(10)
        release.set()
        assert batcher.submit(["later"]) == ["later"]  # the batcher still serves
    assert err.value.status == 504 and err.value.code == "timeout"
    assert TIMEOUT <= waited < TIMEOUT + 1.0
    assert ["queued"] not in ran  # given up by its request before it ran: never run
    assert batcher.dropped == 1


def test_submit_outside_a_request_uses_the_batcher_timeout():
    release = threading.Event()
    batcher = MicroBatcher(lambda items: release.wait(30) and list(items), timeout=TIMEOUT)
    with pytest.raises(deadline.DeadlineExceeded):
        batcher.submit(["x"])
    release.set()


# -- over HTTP -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_app(tiny_model_dir):
    from app import create_app

    return create_app(make_config(tiny_model_dir, request_timeout=TIMEOUT))


def test_a_request_stuck_behind_the_model_gets_a_json_504(slow_app, monkeypatch):
    client = slow_app.test_client()
    base = baseline(client, {"text": "今天天气真[MASK]啊"})
    batcher = slow_app.extensions["fillmask"].predictor.infer.__self__
    real_run, release = batcher._run, threading.Event()

    def stuck(items):
        if any("卡住" in item.text for item in items):
            release.wait(30)
        return real_run(items)

    monkeypatch.setattr(batcher, "_run", stuck)
    start = time.monotonic()
    response = client.post("/predict", json={"text": "卡住[MASK]了"})
    elapsed = time.monotonic() - start
    release.set()
    assert response.status_code == 504
    body = response.get_json()
    assert body["success"] is False and body["code"] == "timeout"
    assert "REQUEST_TIMEOUT" in body["error"]
    assert TIMEOUT <= elapsed < TIMEOUT + margin(base)
    # The worker is fine afterwards.
    assert client.post("/predict", json={"text": "今天天气真[MASK]啊"}).status_code == 200


@pytest.mark.parametrize("batching", [False, True])
def test_whole_word_decoding_stops_between_runs_at_the_deadline(
    tiny_model_dir, monkeypatch, batching
):
    from app import create_app

    app = create_app(make_config(tiny_model_dir, request_timeout=TIMEOUT, batching=batching))
    client = app.test_client()
    text = "[MASK][MASK][MASK][MASK][MASK][MASK]是一个成语。"
    base = baseline(client, {"text": "今天天气真[MASK]啊"})
    predictor = app.extensions["fillmask"].predictor
    real_infer, calls, pause = predictor.infer, [], threading.Event()

    def slow(items):
        calls.append(len(items))
        pause.wait(TIMEOUT / 3)  # never set: each run takes a third of the deadline
        return real_infer(items)

    monkeypatch.setattr(predictor, "infer", slow)
    start = time.monotonic()
    response = client.post("/predict", json={"text": text, "joint": True})
    elapsed = time.monotonic() - start
    assert response.status_code == 504 and response.get_json()["code"] == "timeout"
    assert elapsed < TIMEOUT + margin(base)
    assert len(calls) < 6  # six steps without a deadline; it stopped between runs
    monkeypatch.setattr(predictor, "infer", real_infer)
    assert client.post("/predict", json={"text": text, "joint": True}).status_code == 200


# -- the hung-run watch --------------------------------------------------------------------------


def test_run_watch_reports_a_run_older_than_its_limit_once():
    from fillmask.watchdog import RunWatch

    reported, release = [], threading.Event()
    called = threading.Event()
    watch = RunWatch(0.3, lambda age: (reported.append(age), called.set()), interval=0.05)
    quick = watch.track(lambda: "done")
    stuck = watch.track(lambda: release.wait(30))
    assert quick() == "done" and watch.oldest() == 0.0
    with ThreadPoolExecutor(1) as pool:
        pool.submit(stuck)
        assert called.wait(10)
        release.set()
    assert len(reported) == 1 and reported[0] > 0.3
