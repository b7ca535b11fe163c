"""Shared fixtures: a tiny random Chinese BERT, exported by the project's own exporter.

Set FILLMASK_TEST_MODEL_DIR to an already exported model directory to run the serving tests
without torch (the Raspberry Pi check does this under emulation). FILLMASK_TEST_SEED (an integer,
default 0) seeds the tiny model's random weights: every test must pass for any seed, since
expected values come from PyTorch or numpy on the same weights, never from one model's output.
"""

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

from fillmask.config import Config  # noqa: E402

TINY_MAX_LENGTH = 128
SEED = int(os.environ.get("FILLMASK_TEST_SEED", "0"))


def _build_tiny_source(base):
    """Build (once per session) the tiny random model's save_pretrained directory."""
    source = base / "tiny-src"
    if not (source / "config.json").exists():
        from fillmask.random_model import build_random_model

        build_random_model(source, max_position_embeddings=TINY_MAX_LENGTH, seed=SEED)
    return source


@pytest.fixture(scope="session")
def tiny_source(tmp_path_factory):
    """A save_pretrained directory of a tiny random BertForMaskedLM with a Chinese vocab.

    The same directory ``tiny_model_dir`` was exported from, so PyTorch references computed on
    it describe exactly the served model.
    """
    pytest.importorskip("torch")
    return _build_tiny_source(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny model exported (fp32 + int8) by export_onnx.py, as the service reads it."""
    given = os.environ.get("FILLMASK_TEST_MODEL_DIR")
    if given:
        return Path(given)
    pytest.importorskip("torch")
    source = _build_tiny_source(tmp_path_factory.getbasetemp())
    out = tmp_path_factory.mktemp("tiny-model")
    import export_onnx

    assert (
        export_onnx.main(
            ["--model", str(source), "--output", str(out), "--int8", "--name", "tiny-random-bert"]
        )
        == 0
    )
    return out


def make_config(model_dir, **overrides):
    """A test Config: no cache (so every request runs the model) unless asked."""
    values = dict(model_dir=str(model_dir), ort_threads=1, cache_size=0)
    values.update(overrides)
    return Config(**values)


def hold_first_run(monkeypatch, batcher, until, seconds=10):
    """Make the micro-batcher's next run wait until ``until(texts_in_run, jobs_queued)`` holds
    (or a deadline passes), so that concurrent requests are sure to meet in the next run."""
    real = batcher._run
    held = []

    def run(items):
        if not held:
            held.append(len(items))
            deadline = time.monotonic() + seconds
            while not until(len(items), batcher._queue.qsize()) and time.monotonic() < deadline:
                time.sleep(0.005)
        return real(items)

    monkeypatch.setattr(batcher, "_run", run)
    return held


@pytest.fixture(scope="session")
def app(tiny_model_dir):
    """The Flask app on the tiny model (batching on, as served)."""
    from app import create_app

    return create_app(make_config(tiny_model_dir))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def predictor(app):
    return app.extensions["fillmask"].predictor


@pytest.fixture(scope="session")
def tiny_torch(tiny_source):
    """The tiny model in PyTorch (eager attention), for reference computations."""
    from transformers import BertForMaskedLM

    return BertForMaskedLM.from_pretrained(tiny_source, attn_implementation="eager").eval()


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_source):
    """The tiny model's tokenizer as transformers loads it (independent of tokenizer.json)."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast.from_pretrained(tiny_source)


def pytest_report_header(config):
    """Name the seed, so a failure seen on one seed can be reproduced."""
    return f"tiny test model: FILLMASK_TEST_SEED={SEED}"


@pytest.fixture(scope="session")
def v2_server(tiny_model_dir):
    """One live Gunicorn (2 workers x 2 threads) on the tiny model for the v2 protocol's tests
    (tests/test_v2.py, tests/test_v2_binary.py): nothing there changes the server."""
    from live import GunicornServer

    with GunicornServer(tiny_model_dir, WORKERS=2, THREADS=2) as srv:
        yield srv


@pytest.fixture(scope="session")
def triton(v2_server):
    """tritonclient's HTTP client on ``v2_server``, with its defaults."""
    import tritonclient.http as httpclient

    return httpclient.InferenceServerClient(url=v2_server.url.removeprefix("http://"))
