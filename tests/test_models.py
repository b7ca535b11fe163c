"""Issue 20 §2: several models at once — MODEL_DIR lists directories, requests pick one by name.

Two random models of different shapes and seeds, each exported by the real exporter; every
answer is checked against PyTorch on the weights of the model that was asked for.
"""

import shutil

import pytest
from conftest import SEED, TINY_MAX_LENGTH, make_config
from reference import assert_top_k, mask_log_probs, offerable

from fillmask.config import ConfigError

SECOND = "tiny-second"
TEXT = "今天天气真[MASK]啊"


@pytest.fixture(scope="module")
def second_source(tmp_path_factory):
    pytest.importorskip("torch")
    from fillmask.random_model import build_random_model

    source = tmp_path_factory.mktemp("second-src")
    build_random_model(
        source,
        hidden_size=48,
        num_layers=3,
        num_heads=4,
        intermediate_size=96,
        max_position_embeddings=TINY_MAX_LENGTH,
        seed=SEED + 101,
    )
    return source


@pytest.fixture(scope="module")
def second_dir(second_source, tmp_path_factory):
    import export_onnx

    out = tmp_path_factory.mktemp("second-model")
    args = ["--model", str(second_source), "--output", str(out), "--name", SECOND]
    assert export_onnx.main(args) == 0
    return out


@pytest.fixture(scope="module")
def second_torch(second_source):
    from transformers import BertForMaskedLM, BertTokenizerFast

    model = BertForMaskedLM.from_pretrained(second_source, attn_implementation="eager").eval()
    return model, BertTokenizerFast.from_pretrained(second_source)


@pytest.fixture(scope="module")
def both(tiny_model_dir, second_dir):
    from app import create_app

    return create_app(make_config(f"{tiny_model_dir},{second_dir}", cache_size=64))


def ids_scores(candidates, id_key="token_id"):
    return [(c[id_key], c["score"]) for c in candidates]


def test_each_model_answers_by_name_as_pytorch_does(both, tiny_torch, tiny_tokenizer, second_torch):
    client = both.test_client()
    references = {
        None: (tiny_torch, tiny_tokenizer, "tiny-random-bert"),
        "tiny-random-bert": (tiny_torch, tiny_tokenizer, "tiny-random-bert"),
        SECOND: (*second_torch, SECOND),
    }
    for name, (model, tokenizer, served) in references.items():
        (row,) = mask_log_probs(model, tokenizer, TEXT)
        allowed = offerable(tokenizer)
        asked = {} if name is None else {"model": name}
        body = client.post("/predict", json={"text": TEXT, "top_k": 5, **asked}).get_json()
        assert body["model"] == served
        assert_top_k(ids_scores(body["result"]), row, allowed, 5)
        hf = client.post("/fill-mask", json={"inputs": TEXT, **asked}).get_json()
        assert_top_k(ids_scores(hf, "token"), row, allowed, 5)
        tensor = {"name": "text", "datatype": "BYTES", "shape": [1], "data": [TEXT]}
        v2 = client.post(f"/v2/models/{served}/infer", json={"inputs": [tensor]}).get_json()
        ids, scores = v2["outputs"][1]["data"], v2["outputs"][2]["data"]
        assert v2["model_name"] == served
        assert_top_k(list(zip(ids, scores, strict=True)), row, allowed, 5)


def test_the_cache_keeps_the_models_apart(both):
    client = both.test_client()
    one = client.post("/predict", json={"text": TEXT}).get_json()["result"]
    two = client.post("/predict", json={"text": TEXT, "model": SECOND}).get_json()["result"]
    again = client.post("/predict", json={"text": TEXT}).get_json()["result"]
    assert one == again and one != two


def test_unknown_model_is_404_listing_the_served_ones(both):
    client = both.test_client()
    for path, body in (
        ("/predict", {"text": TEXT, "model": "nope"}),
        ("/fill-mask", {"inputs": TEXT, "model": "nope"}),
    ):
        r = client.post(path, json=body)
        assert r.status_code == 404 and r.get_json()["code"] == "unknown_model"
        assert "'tiny-random-bert'" in r.get_json()["error"] and SECOND in r.get_json()["error"]
    assert client.get("/v2/models/nope").status_code == 404


def test_health_lists_every_model_and_metrics_label_by_model(
    tiny_model_dir, second_dir, monkeypatch
):
    from app import create_app

    # In process, not another test's multiprocess directory (prepare_dir exports it).
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    client = create_app(make_config(f"{tiny_model_dir},{second_dir}")).test_client()
    health = client.get("/health").get_json()
    assert health["status"] == "ok" and health["model"] == "tiny-random-bert"
    assert [m["name"] for m in health["models"]] == ["tiny-random-bert", SECOND]
    assert all(m["ready"] and m["precision"] == "fp32" for m in health["models"])
    client.post("/predict", json={"text": "明天[MASK]好", "model": SECOND})
    text = client.get("/metrics").get_data(as_text=True)
    assert f'fillmask_batch_size_count{{model="{SECOND}"}}' in text
    assert f'fillmask_model_info{{model="{SECOND}",precision="fp32"}} 1.0' in text


def test_two_directories_of_one_name_are_refused(tiny_model_dir, tmp_path):
    from app import create_app

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    with pytest.raises(ConfigError, match="two directories"):
        create_app(make_config(f"{tiny_model_dir},{copy}"))


def test_a_model_that_fails_leaves_the_others_serving(tiny_model_dir, tmp_path):
    from app import create_app

    app = create_app(make_config(f"{tiny_model_dir},{tmp_path / 'missing'}"), strict=False)
    client = app.test_client()
    assert client.post("/predict", json={"text": TEXT}).status_code == 200
    health = client.get("/health")
    assert health.status_code == 200 and health.get_json()["status"] == "degraded"
    failed = [m for m in health.get_json()["models"] if not m["ready"]]
    assert [m["name"] for m in failed] == ["missing"]
    r = client.post("/predict", json={"text": TEXT, "model": "missing"})
    assert r.status_code == 503 and r.get_json()["code"] == "model_unavailable"


@pytest.mark.live
def test_one_gunicorn_serves_both_by_name(tiny_model_dir, second_dir, second_torch):
    """Under Gunicorn too: the master checks both directories, every worker serves both."""
    import requests
    from live import GunicornServer

    model, tokenizer = second_torch
    (row,) = mask_log_probs(model, tokenizer, TEXT)
    with GunicornServer(f"{tiny_model_dir},{second_dir}", WORKERS="1") as server:
        health = requests.get(server.url + "/health", timeout=10).json()
        assert [m["name"] for m in health["models"]] == ["tiny-random-bert", SECOND]
        body = requests.post(
            server.url + "/predict", json={"text": TEXT, "model": SECOND}, timeout=30
        ).json()
        assert body["model"] == SECOND
        assert_top_k(ids_scores(body["result"]), row, offerable(tokenizer), 5)
        ready = requests.get(server.url + f"/v2/models/{SECOND}/ready", timeout=10)
        assert ready.status_code == 200
        assert "checked" in server.output() and SECOND in server.output()


@pytest.mark.live
def test_gunicorn_refuses_two_directories_of_one_name(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    from live import GunicornServer

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    server = GunicornServer(f"{tiny_model_dir},{copy}")
    run = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(server.config), "app:app"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    errors = [line for line in run.stderr.splitlines() if "[ERROR]" in line]
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert len(errors) == 1 and "two directories" in errors[0]


def test_readiness_says_why_a_model_cannot_answer():
    """Every branch of ``FillService.ready``: which status and code, and what the message says."""
    from fillmask.errors import FillMaskError
    from fillmask.service import FillService

    service = FillService(make_config("unused"))
    served = object()

    def refusal(name=None):
        with pytest.raises(FillMaskError) as caught:
            service.ready(name)
        return caught.value.status, caught.value.code, caught.value.message

    assert refusal() == (503, "model_not_ready", "the model is not loaded yet; try again shortly")
    assert refusal("a")[:2] == (404, "unknown_model")
    service.failed["broken"] = "no manifest"
    assert refusal() == (503, "model_unavailable", "the model failed to load; see the server log")
    assert refusal("broken") == (
        503,
        "model_unavailable",
        "the model 'broken' failed to load; see the server log",
    )
    service.models["ok"] = served
    assert service.ready() is served and service.ready("ok") is served
    # With a failed model an unknown name may be that one (its name is known only once loaded).
    assert refusal("other") == (
        503,
        "model_unavailable",
        "the model 'other' is not loaded (served: 'ok'); see the server log",
    )
    service.failed.clear()
    assert refusal("other") == (404, "unknown_model", "unknown model 'other'; served: 'ok'")
    service.error = "a model run hung; this worker is being replaced"
    assert refusal("ok") == (503, "model_unavailable", service.error)


@pytest.mark.live
def test_a_model_the_master_refuses_is_not_served_by_the_workers(
    tiny_model_dir, second_dir, tmp_path
):
    """The master's sha256 check refuses a same-size damaged second model ("not served"); the
    workers, which compare sizes only, must answer its requests with 503, not serve it."""
    import onnxruntime as ort
    import requests
    from live import GunicornServer

    damaged = tmp_path / "damaged"
    shutil.copytree(second_dir, damaged)
    onnx = damaged / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a weight byte: same size, still a loadable model
    onnx.write_bytes(bytes(data))
    ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])  # it would be served
    with GunicornServer(f"{tiny_model_dir},{damaged}", WORKERS="1") as server:
        assert "not served" in server.output() and "sha256" in server.output()
        health = requests.get(server.url + "/health", timeout=10).json()
        assert health["status"] == "degraded"
        assert [m["ready"] for m in health["models"]] == [True, False]
        r = requests.post(server.url + "/predict", json={"text": TEXT, "model": "damaged"})
        assert r.status_code == 503 and r.json()["code"] == "model_unavailable"
        r = requests.post(server.url + "/predict", json={"text": TEXT, "model": SECOND})
        assert r.status_code != 200  # not served under its own name either
        assert requests.post(server.url + "/predict", json={"text": TEXT}).status_code == 200
