"""Micro-batching: batched answers equal unbatched ones, errors stay per request, runs merge."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import hold_first_run
from reference import assert_top_k, mask_log_probs, offerable

from fillmask.batcher import MicroBatcher

TEXTS = [
    "今天天气真[MASK]啊",
    "床前明月[MASK]，疑是地上霜。",
    "[MASK]",
    "我爱北京天安[MASK]。",
    "[MASK]前明月光，疑是地上[MASK]。",
    "春眠不觉晓，处处闻啼[MASK]。夜来风雨声，花落知多少。",
]


class GatedRun:
    """A fake ``run``: records each batch, and holds the first one until ``release()``.

    While the first batch is held, later submissions pile up in the queue, so what the next
    batch contains is decided by the batcher alone, not by thread timing.
    """

    def __init__(self, fail_on=None):
        self.batches = []
        self.fail_on = fail_on
        self.started = threading.Event()
        self.gate = threading.Event()

    def __call__(self, items):
        self.started.set()
        self.gate.wait(10)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError(f"cannot run {self.fail_on!r}")
        self.batches.append(list(items))
        return [f"row:{item}" for item in items]

    def release(self):
        self.gate.set()


def submit_while_held(batcher, run, first, others):
    """Submit ``first``, then ``others`` (each a list of items) while the first run is held.

    Returns one (result or exception) per submission, in submission order.
    """
    outcomes = [None] * (1 + len(others))

    def call(index, items):
        try:
            outcomes[index] = batcher.submit(items)
        except Exception as exc:  # the error is the outcome under test
            outcomes[index] = exc

    threads = [threading.Thread(target=call, args=(0, first))]
    threads[0].start()
    assert run.started.wait(10)
    for index, items in enumerate(others, start=1):
        threads.append(threading.Thread(target=call, args=(index, items)))
        threads[-1].start()
    deadline = time.monotonic() + 10
    while batcher._queue.qsize() < len(others) and time.monotonic() < deadline:
        time.sleep(0.005)
    run.release()
    for thread in threads:
        thread.join(10)
    return outcomes


def test_concurrent_requests_merge_into_one_run():
    run = GatedRun()
    batcher = MicroBatcher(run, max_batch=16)
    outcomes = submit_while_held(batcher, run, ["a"], [["b"], ["c", "d"], ["e"]])
    assert run.batches == [["a"], ["b", "c", "d", "e"]]
    assert outcomes == [["row:a"], ["row:b"], ["row:c", "row:d"], ["row:e"]]
    assert (batcher.batches, batcher.items) == (2, 5)


def test_batch_size_is_capped_and_order_kept():
    run = GatedRun()
    batcher = MicroBatcher(run, max_batch=3)
    others = [["b"], ["c"], ["d", "e"], ["f"], ["g"], ["h"]]
    outcomes = submit_while_held(batcher, run, ["a"], others)
    # ["d", "e"] does not fit after b, c: it starts the next batch instead of being split.
    assert run.batches == [["a"], ["b", "c"], ["d", "e", "f"], ["g", "h"]]
    assert outcomes[3] == ["row:d", "row:e"] and outcomes[6] == ["row:h"]


def test_one_failing_request_does_not_fail_the_others():
    run = GatedRun(fail_on="bad")
    batcher = MicroBatcher(run, max_batch=16)
    outcomes = submit_while_held(batcher, run, ["a"], [["b"], ["bad"], ["c"]])
    assert outcomes[0] == ["row:a"] and outcomes[1] == ["row:b"] and outcomes[3] == ["row:c"]
    assert isinstance(outcomes[2], ValueError) and "bad" in str(outcomes[2])
    # The merged run failed, then each request was rerun alone.
    assert run.batches == [["a"], ["b"], ["c"]]


def test_a_failure_for_everyone_reaches_everyone_and_the_thread_survives():
    def broken(items):
        raise RuntimeError("session gone")

    batcher = MicroBatcher(broken)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="session gone"):
            batcher.submit(["x"])
    assert batcher._thread.is_alive()


def in_thread(call):
    """Start ``call()`` in a thread; return (thread, outcome list it appends to)."""
    outcome = []
    thread = threading.Thread(target=lambda: outcome.append(call()), daemon=True)
    thread.start()
    return thread, outcome


def test_idle_request_runs_without_waiting_for_the_window():
    # A window of a minute: a request that waited for it would miss the 20 s deadline below,
    # one that did not takes milliseconds.
    batcher = MicroBatcher(lambda items: list(items), window_ms=60_000)
    for item in ("x", "y"):  # idle; then busy but alone: still no wait for a partner
        thread, outcome = in_thread(lambda item=item: batcher.submit([item]))
        thread.join(20)
        assert outcome == [[item]], "the request waited for the batching window"


def test_busy_batcher_waits_for_the_clients_of_the_last_batch():
    run = GatedRun()
    # A minute of window and of "busy": what is batched is decided by arrivals, not by timing.
    batcher = MicroBatcher(run, max_batch=16, window_ms=60_000, busy_ms=60_000)
    submit_while_held(batcher, run, ["a"], [["b"], ["c"]])
    assert run.batches == [["a"], ["b", "c"]]
    # The last batch had 2 texts: a request arriving right after waits for a second one.
    first, results = in_thread(lambda: batcher.submit(["d"]))
    deadline = time.monotonic() + 10
    while batcher._queue.qsize() and time.monotonic() < deadline:
        time.sleep(0.005)  # until the batcher has taken "d" and waits for a partner
    assert not batcher._queue.qsize()
    assert first.is_alive(), "d ran alone instead of waiting for the window"
    assert batcher.submit(["e"]) == ["row:e"]
    first.join(10)
    assert run.batches[-1] == ["d", "e"] and results == [["row:d"]]


def test_batched_rows_equal_unbatched(predictor):
    prepared = [predictor.prepare(t) for t in TEXTS]
    together = predictor.log_probs(prepared)
    for item, rows in zip(prepared, together, strict=True):
        (alone,) = predictor.log_probs([item])
        assert rows.shape == (item.num_masks, len(predictor.words))
        np.testing.assert_allclose(rows, alone, atol=1e-4)
        assert (rows.argmax(axis=1) == alone.argmax(axis=1)).all()


def answer_of(body):
    """Words and scores of every mask of one /predict text result."""
    words = [[c["word"] for c in m["candidates"]] for m in body["masks"]]
    scores = [c["score"] for m in body["masks"] for c in m["candidates"]]
    return words, scores


def assert_same_answer(got, expected):
    assert got[0] == expected[0]
    np.testing.assert_allclose(got[1], expected[1], atol=1e-5)


def test_concurrent_http_requests_get_their_own_answers(
    app, predictor, monkeypatch, tiny_torch, tiny_tokenizer
):
    batcher = predictor.infer.__self__
    allowed = offerable(tiny_tokenizer)
    # The first run waits until all twelve texts are in it or queued behind it.
    held = hold_first_run(monkeypatch, batcher, lambda running, queued: running + queued >= 12)
    bad = {"text": "没有面具"}  # no [MASK]: a 400 of its own
    bodies = [{"text": t} for t in TEXTS * 2] + [bad]
    before = (batcher.batches, batcher.items)
    barrier = threading.Barrier(len(bodies))

    def call(body):
        client = app.test_client()
        barrier.wait(10)
        return client.post("/predict", json=body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(call, bodies))
    for body, response in zip(bodies, responses, strict=True):
        if body is bad:
            assert response.status_code == 400 and response.get_json()["code"] == "no_mask"
            continue
        assert response.status_code == 200
        masks = response.get_json()["masks"]
        rows = mask_log_probs(tiny_torch, tiny_tokenizer, body["text"])
        assert len(masks) == len(rows)
        for mask, row in zip(masks, rows, strict=True):
            got = [(c["token_id"], c["score"]) for c in mask["candidates"]]
            assert_top_k(got, row, allowed, 5)
    runs, items = batcher.batches - before[0], batcher.items - before[1]
    assert items == len(TEXTS) * 2
    # The held run, then at most one more (16 texts fit in one): the requests shared runs.
    assert held and runs <= 2


def test_batch_of_texts_equals_single_requests(client):
    together = client.post("/predict", json={"texts": TEXTS}).get_json()["results"]
    for text, result in zip(TEXTS, together, strict=True):
        alone = client.post("/predict", json={"text": text}).get_json()
        assert_same_answer(answer_of(result), answer_of(alone))


# -- settings: BATCH_MAX and BATCHING=0 --------------------------------------------------------


class CountingSession:
    """Wraps an onnxruntime session: records the rows (texts) of every ``run``."""

    def __init__(self, session):
        self.session, self.runs = session, []

    def run(self, outputs, feeds):
        self.runs.append(len(feeds["input_ids"]))
        return self.session.run(outputs, feeds)


def recording(monkeypatch, predictor):
    """The list of texts per session.run of ``predictor`` from now on."""
    counting = CountingSession(predictor.session)
    monkeypatch.setattr(predictor, "session", counting)
    return counting.runs


def answers_equal_the_model(results, texts, tiny_torch, tiny_tokenizer, top_k=5):
    allowed = offerable(tiny_tokenizer)
    for text, result in zip(texts, results, strict=True):
        rows = mask_log_probs(tiny_torch, tiny_tokenizer, text)
        assert len(result["masks"]) == len(rows)
        for mask, row in zip(result["masks"], rows, strict=True):
            got = [(c["token_id"], c["score"]) for c in mask["candidates"]]
            assert_top_k(got, row, allowed, top_k)


@pytest.mark.parametrize("batching", [True, False])
def test_batch_max_caps_a_request_of_32_texts(
    tiny_model_dir, monkeypatch, tiny_torch, tiny_tokenizer, batching
):
    from conftest import make_config

    from app import create_app

    app = create_app(make_config(tiny_model_dir, batch_max=5, batching=batching))
    predictor = app.extensions["fillmask"].predictor
    runs = recording(monkeypatch, predictor)
    texts = [TEXTS[i % len(TEXTS)] + "。" * (i // len(TEXTS)) for i in range(32)]
    body = app.test_client().post("/predict", json={"texts": texts}).get_json()
    assert body["success"] is True and len(body["results"]) == 32
    assert sum(runs) == 32 and max(runs) <= 5 and len(runs) >= 7, runs
    answers_equal_the_model(body["results"], texts, tiny_torch, tiny_tokenizer)


def test_batching_off_serves_without_a_batcher(
    tiny_model_dir, monkeypatch, tiny_torch, tiny_tokenizer
):
    """BATCHING=0: every request runs the session itself, concurrent ones too, correctly."""
    from conftest import make_config

    from app import create_app

    app = create_app(make_config(tiny_model_dir, batching=False))
    predictor = app.extensions["fillmask"].predictor
    assert not isinstance(getattr(predictor.infer, "__self__", None), MicroBatcher)
    runs = recording(monkeypatch, predictor)
    bodies = [{"text": t} for t in TEXTS] + [{"texts": TEXTS[:3], "top_k": 3}]

    def call(body):
        return app.test_client().post("/predict", json=body).get_json()

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(call, bodies))
    assert sorted(runs) == sorted([1] * len(TEXTS) + [3])  # one run per request, none shared
    for body, answer in zip(bodies, answers, strict=True):
        assert answer["success"] is True
        if "texts" in body:
            answers_equal_the_model(answer["results"], body["texts"], tiny_torch, tiny_tokenizer, 3)
        else:
            answers_equal_the_model([answer], [body["text"]], tiny_torch, tiny_tokenizer)
