"""The service as deployed: real Gunicorn workers, the HF client, and a torch-free process."""

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import ROOT
from live import GunicornServer

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    # One thread per worker: a busy worker leaves new connections to the other one.
    with GunicornServer(tiny_model_dir, WORKERS=2, THREADS=1) as srv:
        yield srv


def test_two_workers_answer_concurrent_requests(server):
    import psutil

    texts = [f"今天天气真[MASK]啊{i}" + "春眠不觉晓，处处闻啼鸟。" * 4 for i in range(120)]
    workers = [psutil.Process(pid) for pid in server.worker_pids()]
    cpu_before = [sum(w.cpu_times()[:2]) for w in workers]

    def ask(text):
        r = requests.post(server.url + "/predict", json={"text": text, "top_k": 2}, timeout=30)
        return r.status_code, r.json()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(ask, texts))
    cpu = [sum(w.cpu_times()[:2]) - b for w, b in zip(workers, cpu_before, strict=True)]
    assert all(status == 200 and body["success"] for status, body in results)
    for text, (_, body) in zip(texts, results, strict=True):
        assert body["result"][0]["sequence"] == text.replace("[MASK]", body["result"][0]["word"])
    # Both workers served the /predict calls (only they ran meanwhile): each did a real share
    # of the model work, not the near-zero CPU of an idle worker.
    assert len(workers) == 2 and min(cpu) >= 0.15 * sum(cpu), cpu


def test_utf8_json_on_the_wire(server):
    r = requests.post(server.url + "/predict", json={"text": "画蛇添[MASK]"}, timeout=30)
    assert r.headers["Content-Type"].startswith("application/json")
    assert "画蛇添" in r.content.decode("utf-8") and b"\\u" not in r.content


def test_hugging_face_client_round_trip(server, monkeypatch):
    from huggingface_hub import InferenceClient, constants

    # Offline mode (set for the tests) also blocks this loopback URL; the server is local.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    client = InferenceClient(model=server.url + "/fill-mask")
    out = client.fill_mask("今天天气真[MASK]啊", top_k=3)
    assert len(out) == 3
    direct = requests.post(
        server.url + "/predict", json={"text": "今天天气真[MASK]啊", "top_k": 3}, timeout=30
    ).json()
    assert [o.token for o in out] == [c["token_id"] for c in direct["result"]]
    assert [o.token_str for o in out] == [c["word"] for c in direct["result"]]
    assert out[0].sequence == direct["result"][0]["sequence"]
    assert out[0].score == pytest.approx(direct["result"][0]["score"], rel=1e-6)


def test_missing_model_stops_the_server_with_one_line(tmp_path):
    with pytest.raises(RuntimeError) as info:
        GunicornServer(tmp_path / "no-model", startup_timeout=30).start()
    message = str(info.value)
    assert "exited with 1" in message
    assert "cannot start" in message and "export_onnx.py" in message
    assert "Traceback" not in message and message.count("Booting worker") == 0


def test_serving_process_imports_neither_torch_nor_transformers(tiny_model_dir):
    code = (
        "import sys, json\n"
        "from app import create_app\n"
        f"app = create_app({{'model_dir': {str(tiny_model_dir)!r}, }})\n"
        "r = app.test_client().post('/predict', json={'text': '好[MASK]'})\n"
        "assert r.status_code == 200, r.data\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'onnx', 'onnxscript'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_worker_warms_the_model_before_its_first_request(tiny_model_dir, monkeypatch):
    from conftest import make_config

    from app import create_app
    from fillmask.predictor import Predictor

    calls = []
    original = Predictor.run
    monkeypatch.setattr(
        Predictor,
        "run",
        lambda self, items: calls.append(len(items)) or original(self, items),
    )
    create_app(make_config(tiny_model_dir))
    assert calls == [1]  # one run at load, before any request arrives


# -- MODEL_PRECISION=int8 and a bad setting ------------------------------------------------------


def assert_int8_answer(body, tiny_model_dir, tiny_tokenizer, text, top_k=5):
    """``body`` (a /predict answer) ranks like a plain onnxruntime run of model.int8.onnx."""
    from reference import assert_top_k, offerable, onnx_mask_log_probs

    assert body["model"] == "tiny-random-bert" and body["precision"] == "int8"
    rows = onnx_mask_log_probs(tiny_model_dir / "model.int8.onnx", tiny_tokenizer, text)
    allowed = offerable(tiny_tokenizer)
    assert len(body["masks"]) == len(rows)
    for mask, row in zip(body["masks"], rows, strict=True):
        got = [(c["token_id"], c["score"]) for c in mask["candidates"]]
        assert_top_k(got, row, allowed, top_k)


def test_int8_through_create_app(tiny_model_dir, tiny_tokenizer):
    from conftest import make_config

    from app import create_app

    client = create_app(make_config(tiny_model_dir, model_precision="int8")).test_client()
    health = client.get("/health").get_json()
    assert health["status"] == "ok" and health["precision"] == "int8"
    text = "床前明月[MASK]，疑是地上[MASK]。"
    body = client.post("/predict", json={"text": text}).get_json()
    assert_int8_answer(body, tiny_model_dir, tiny_tokenizer, text)


def test_int8_through_gunicorn(tiny_model_dir, tiny_tokenizer):
    with GunicornServer(tiny_model_dir, WORKERS=1, MODEL_PRECISION="int8") as server:
        assert requests.get(server.url + "/health", timeout=10).json()["precision"] == "int8"
        text = "今天天气真[MASK]啊"
        body = requests.post(server.url + "/predict", json={"text": text}, timeout=30).json()
    assert_int8_answer(body, tiny_model_dir, tiny_tokenizer, text)
    assert "model tiny-random-bert (int8)" in server.output()


@pytest.mark.parametrize(
    "env,named",
    [
        ({"MAX_LENGTH": "lots"}, "MAX_LENGTH='lots'"),
        ({"BATCHING": "maybe"}, "BATCHING='maybe'"),
        ({"MODEL_PRECISION": "fp16"}, "MODEL_PRECISION"),
    ],
)
def test_a_bad_setting_stops_the_server_with_one_line(tiny_model_dir, env, named):
    server = GunicornServer(tiny_model_dir, startup_timeout=30, **env)
    with pytest.raises(RuntimeError) as info:
        server.start()
    server.stop()
    assert server.proc.returncode not in (0, None)
    assert "gunicorn exited with" in str(info.value)
    lines = [line for line in server.output().splitlines() if "cannot start" in line]
    assert len(lines) == 1 and named in lines[0], server.output()
    assert "Traceback" not in server.output()
    assert "Booting worker" not in server.output()
