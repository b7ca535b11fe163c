"""The Open Inference Protocol (KServe v2 REST): a real tritonclient against a live Gunicorn,
answers checked against PyTorch on the same weights, and every v2 response against the
protocol's official OpenAPI file (tests/open_inference_rest.yaml, through tests/v2_protocol.py).

Binary tensor data (tritonclient's defaults) is tested in tests/test_v2_binary.py; here the
tensors go as JSON."""

import json
import re

import numpy as np
import pytest
import requests
from conftest import make_config
from v2_protocol import check, conforms

MODEL = "tiny-random-bert"


def request_body(texts, **parameters):
    body = {
        "id": "req-1",
        "inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}],
    }
    if parameters:
        body["parameters"] = parameters
    return conforms(body, "inference_request")


def reference(model, tokenizer, text, top_k, target_words=None):
    """Per mask, the top-k (token id, probability) by PyTorch over the offerable vocabulary."""
    import torch

    words = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = re.compile(r"\[[^\]]*\]|##.*|<S>|<T>|\s*")  # [CLS], [unused3], ##子, blanks
    allowed = np.array([not special.fullmatch(w) for w in words])
    if target_words:
        allowed = np.isin(words, target_words)
    ids = tokenizer(text.replace("［MASK］", "[MASK]"))["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    probs = torch.softmax(logits, dim=-1).numpy()
    out = []
    for pos in [i for i, t in enumerate(ids) if t == tokenizer.mask_token_id]:
        row = np.where(allowed, probs[pos], -1.0)
        best = np.argsort(-row, kind="stable")[:top_k]
        out.append([(int(i), float(probs[pos][i])) for i in best if allowed[i]])
    return out


def infer(triton, texts, parameters=None, outputs=("candidates", "token_ids", "scores")):
    import tritonclient.http as httpclient

    tensor = httpclient.InferInput("text", [len(texts)], "BYTES")
    tensor.set_data_from_numpy(np.array(texts, dtype=object), binary_data=False)
    wanted = [httpclient.InferRequestedOutput(name, binary_data=False) for name in outputs]
    return triton.infer(MODEL, [tensor], outputs=wanted, parameters=parameters, request_id="r7")


@pytest.mark.live
def test_health_and_metadata_through_tritonclient(v2_server, triton):
    assert triton.is_server_live() and triton.is_server_ready()
    assert triton.is_model_ready(MODEL)
    assert triton.get_server_metadata()["name"] == "fillmask"
    meta = triton.get_model_metadata(MODEL)
    assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
        ("candidates", "BYTES"),
        ("token_ids", "INT64"),
        ("scores", "FP32"),
    ]
    conforms(requests.get(v2_server.url + "/v2", timeout=10).json(), "metadata_server_response")
    r = requests.get(v2_server.url + f"/v2/models/{MODEL}", timeout=10)
    conforms(r.json(), "metadata_model_response")
    assert requests.get(v2_server.url + "/v2/health/live", timeout=10).json() == {"live": True}


@pytest.mark.live
def test_infer_equals_pytorch(v2_server, triton, tiny_torch, tiny_tokenizer):
    texts = ["今天天气真[MASK]啊", "[MASK]前明月光，疑是地上［MASK］。"]
    result = infer(triton, texts, {"top_k": 3})
    response = conforms(result.get_response(), "inference_response")
    assert response["model_name"] == MODEL and response["id"] == "r7"
    ids, scores = result.as_numpy("token_ids"), result.as_numpy("scores")
    assert ids.shape == scores.shape == (2, 2, 3)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    candidates = [json.loads(item) for item in result.as_numpy("candidates")]
    for t, text in enumerate(texts):
        want = reference(tiny_torch, tiny_tokenizer, text, 3)
        for m, mask in enumerate(want):
            assert ids[t, m].tolist() == [i for i, _ in mask]
            np.testing.assert_allclose(scores[t, m], [p for _, p in mask], rtol=1e-4)
            words = tiny_tokenizer.convert_ids_to_tokens([i for i, _ in mask])
            assert [c["word"] for c in candidates[t][m]] == words
            assert [c["token_id"] for c in candidates[t][m]] == ids[t, m].tolist()
    # The first text has one mask: its second row is padding.
    assert ids[0, 1].tolist() == [-1, -1, -1] and scores[0, 1].tolist() == [0, 0, 0]
    assert len(candidates[0]) == 1
    assert candidates[0][0][0]["sequence"] == "今天天气真" + candidates[0][0][0]["word"] + "啊"


@pytest.mark.live
def test_targets_parameter(v2_server, triton, tiny_torch, tiny_tokenizer):
    text = "今天天气真[MASK]啊"
    result = infer(triton, [text], {"top_k": 5, "targets": "好 花"}, outputs=["token_ids"])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["token_ids"]
    want = reference(tiny_torch, tiny_tokenizer, text, 5, target_words=["好", "花"])
    assert result.as_numpy("token_ids")[0, 0].tolist() == [i for i, _ in want[0]]


@pytest.mark.live
def test_same_answer_as_predict(v2_server):
    texts = ["春眠不觉[MASK]，处处闻啼鸟。", "[MASK][MASK]是一个成语。"]
    v2 = requests.post(
        v2_server.url + f"/v2/models/{MODEL}/infer", json=request_body(texts, top_k=4), timeout=30
    ).json()
    predict = requests.post(
        v2_server.url + "/predict", json={"texts": texts, "top_k": 4}, timeout=30
    ).json()
    candidates = [json.loads(item) for item in v2["outputs"][0]["data"]]
    for got, result in zip(candidates, predict["results"], strict=True):
        assert got == [mask["candidates"] for mask in result["masks"]]


@pytest.mark.live
def test_binary_tensors_are_served_by_default(v2_server, triton):
    """tritonclient's defaults send binary tensor data (refused before issue 22); the same
    words come back as with JSON tensors. The full binary tests: tests/test_v2_binary.py."""
    import tritonclient.http as httpclient

    tensor = httpclient.InferInput("text", [1], "BYTES")
    tensor.set_data_from_numpy(np.array(["好[MASK]".encode()], dtype=object))
    binary = triton.infer(MODEL, [tensor])
    as_json = infer(triton, ["好[MASK]"])
    assert binary.as_numpy("token_ids").tolist() == as_json.as_numpy("token_ids").tolist()
    assert binary.as_numpy("candidates").tolist() == [
        c.encode() for c in as_json.as_numpy("candidates").tolist()
    ]


def one_input(**changes):
    tensor = {"name": "text", "shape": [1], "datatype": "BYTES", "data": ["好[MASK]"], **changes}
    return {"inputs": [tensor]}


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        (f"/v2/models/{MODEL}/infer", one_input(data=["没有掩码"]), 400, "[MASK]"),
        (f"/v2/models/{MODEL}/infer", one_input(datatype="INT64"), 400, "BYTES"),
        (f"/v2/models/{MODEL}/infer", one_input(name="input0"), 400, '"text"'),
        (f"/v2/models/{MODEL}/infer", one_input(shape=[2]), 400, "shape"),
        (f"/v2/models/{MODEL}/infer", one_input(data=[5]), 400, "string"),
        (
            f"/v2/models/{MODEL}/infer",
            one_input(shape=[33], data=["好[MASK]"] * 33),
            400,
            "at most",
        ),
        (
            f"/v2/models/{MODEL}/infer",
            {**one_input(), "parameters": {"top_k": 0}},
            400,
            "parameters.top_k must be an integer",
        ),
        (
            f"/v2/models/{MODEL}/infer",
            {**one_input(), "parameters": {"topk": 3}},
            400,
            "'topk' in parameters; accepted: top_k, targets, hanzi_only",
        ),
        (
            f"/v2/models/{MODEL}/infer",
            {**one_input(), "parameters": {"targets": ["好"]}},
            400,
            "separated by spaces",
        ),
        (f"/v2/models/{MODEL}/infer", {**one_input(), "id": 7}, 400, "id"),
        (f"/v2/models/{MODEL}/infer", {**one_input(), "outputs": [{"name": "x"}]}, 400, "outputs"),
        (f"/v2/models/{MODEL}/infer", {"inputs": []}, 400, "one tensor"),
        ("/v2/models/bert-large/infer", one_input(), 404, "bert-large"),
        # An unknown key of the body is named with the body's own fields.
        (
            f"/v2/models/{MODEL}/infer",
            {**one_input(), "topk": 3},
            400,
            "'topk' in the body; accepted: id, parameters, inputs, outputs",
        ),
    ],
)
def test_errors(client, path, body, status, words):
    r = client.post(path, json=body)
    assert r.status_code == status
    assert words in check(path, "POST", status, r.headers, r.data)[0]["error"]


def test_unknown_model_metadata_and_ready_are_404(client):
    for path in (f"/v2/models/x{MODEL}", f"/v2/models/x{MODEL}/ready"):
        r = client.get(path)
        assert r.status_code == 404
        check(path, "GET", 404, r.headers, r.data)


def test_not_loaded_is_503(tmp_path):
    from app import create_app

    c = create_app(make_config(tmp_path / "missing"), strict=False).test_client()
    assert c.get("/v2/health/live").status_code == 200
    assert c.get("/v2/health/ready").status_code == 503
    assert c.get(f"/v2/models/{MODEL}/ready").get_json() == {"name": MODEL, "ready": False}
    for path in ("/v2/health/ready", f"/v2/models/{MODEL}/ready", f"/v2/models/{MODEL}"):
        r = c.get(path)
        assert r.status_code == 503
        check(path, "GET", 503, r.headers, r.data)
    r = c.post(f"/v2/models/{MODEL}/infer", json=one_input())
    assert r.status_code == 503
    check(f"/v2/models/{MODEL}/infer", "POST", 503, r.headers, r.data)


def test_infer_needs_the_api_token(tiny_model_dir):
    from app import create_app

    c = create_app(make_config(tiny_model_dir, api_token="t0k")).test_client()
    assert c.post(f"/v2/models/{MODEL}/infer", json=one_input()).status_code == 401
    ok = c.post(
        f"/v2/models/{MODEL}/infer", json=one_input(), headers={"Authorization": "Bearer t0k"}
    )
    assert ok.status_code == 200
    assert c.get("/v2/health/ready").status_code == 200  # probes need no token


JSON_BODY = one_input()
EVERY_RESPONSE = [
    ("GET", "/v2", None, {}, 200),
    ("GET", "/v2/", None, {}, 200),
    ("GET", "/v2/health/live", None, {}, 200),
    ("GET", "/v2/health/ready", None, {}, 200),
    ("GET", f"/v2/models/{MODEL}", None, {}, 200),
    ("GET", f"/v2/models/{MODEL}/versions/1", None, {}, 200),
    ("GET", f"/v2/models/{MODEL}/versions/2", None, {}, 404),
    ("GET", "/v2/models/nope", None, {}, 404),
    ("GET", f"/v2/models/{MODEL}/ready", None, {}, 200),
    ("GET", f"/v2/models/{MODEL}/versions/1/ready", None, {}, 200),
    ("GET", f"/v2/models/{MODEL}/versions/7/ready", None, {}, 404),
    ("GET", "/v2/models/nope/ready", None, {}, 404),
    ("POST", f"/v2/models/{MODEL}/infer", JSON_BODY, {}, 200),
    ("POST", f"/v2/models/{MODEL}/versions/1/infer", JSON_BODY, {}, 200),
    ("POST", f"/v2/models/{MODEL}/versions/1/infer", {**JSON_BODY, "id": "a"}, {}, 200),
    ("POST", f"/v2/models/{MODEL}/versions/2/infer", JSON_BODY, {}, 404),
    ("POST", "/v2/models/nope/versions/1/infer", JSON_BODY, {}, 404),
    ("POST", f"/v2/models/{MODEL}/infer", {"inputs": []}, {}, 400),
    ("POST", f"/v2/models/{MODEL}/infer", b"{", {}, 400),
    ("POST", f"/v2/models/{MODEL}/infer", b"x" * (2 << 20), {}, 413),
    ("POST", f"/v2/models/{MODEL}/infer", b"{}", {"Content-Type": "text/plain"}, 415),
    (
        "POST",
        f"/v2/models/{MODEL}/infer",
        {**JSON_BODY, "outputs": [{"name": "scores", "parameters": {"binary_data": True}}]},
        {},
        200,
    ),
]


@pytest.mark.parametrize("method, path, body, headers, status", EVERY_RESPONSE)
def test_every_v2_response_matches_the_protocols_file(client, method, path, body, headers, status):
    """Each v2 endpoint, with and without a version, good and bad: the file's schema for it."""
    if isinstance(body, dict):
        r = client.open(path, method=method, json=body, headers=headers)
    else:
        r = client.open(path, method=method, data=body, headers=headers)
    assert r.status_code == status, r.data[:300]
    obj, binary = check(path, method, status, r.headers, r.data)
    if path.endswith("/infer") and status == 200:
        assert obj["model_name"] == MODEL and obj["model_version"] == "1"
        assert binary == ({"scores"} if "outputs" in body else set())


def test_the_file_is_the_official_one():
    """The copy is kserve/open-inference-protocol's file, with its licence and source named."""
    from pathlib import Path

    import yaml

    text = (Path(__file__).parent / "open_inference_rest.yaml").read_text("utf-8")
    assert "github.com/kserve/open-inference-protocol" in text.split("\n", 1)[0]
    assert "Apache License, Version 2.0" in text
    spec = yaml.safe_load(text)
    assert spec["info"]["title"] == "Data Plane" and spec["info"]["version"] == "2.0"
    assert "/v2/models/${MODEL_NAME}/versions/${MODEL_VERSION}/infer" in spec["paths"]


INFER_PATH = f"/v2/models/{MODEL}/infer"
FRAMED_OUTPUT = {"name": "scores", "datatype": "FP32", "shape": [1], "data": [0.5]}
FRAMED_OUTPUT["parameters"] = {"binary_data_size": 4}  # and "data" too: not the extension


@pytest.mark.parametrize(
    "path, status, body, binary",
    [
        (f"/v2/models/{MODEL}", 200, {"name": MODEL, "versions": ["1"]}, None),  # no platform
        ("/v2", 200, {"name": "fillmask", "version": "1.0.0", "extensions": "none"}, None),
        (INFER_PATH, 200, {"outputs": []}, None),  # no model_name
        (INFER_PATH, 200, {"model_name": MODEL, "outputs": [{"name": "x", "shape": [1]}]}, None),
        (INFER_PATH, 200, {"model_name": MODEL, "outputs": [FRAMED_OUTPUT]}, b"\0\0\0?"),
        (INFER_PATH, 400, {"error": 5}, None),
        (INFER_PATH, 400, {"success": False, "error": "x", "code": "invalid_body"}, None),
        (f"/v2/models/{MODEL}/ready", 200, {"name": MODEL}, None),
    ],
)
def test_the_check_refuses_what_the_file_refuses(path, status, body, binary):
    """The checker can fail: bodies the protocol's file (or the extension) does not allow."""
    from v2_protocol import HEADER

    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if binary is not None:
        headers = {"Content-Type": "application/octet-stream", HEADER: str(len(raw))}
    method = "POST" if path.endswith("/infer") else "GET"
    with pytest.raises(Exception) as info:
        check(path, method, status, headers, raw + (binary or b""))
    assert info.type.__name__ in ("ValidationError", "AssertionError")
