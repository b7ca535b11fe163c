"""GET /openapi.json: a valid OpenAPI 3.1 document that real responses, good and bad, match."""

import re
from pathlib import Path

import pytest
from conftest import make_config
from openapi_check import SpecChecker
from openapi_spec_validator import validate

from fillmask.openapi import ERROR_CODES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def spec(client):
    return client.get("/openapi.json").get_json()


@pytest.fixture(scope="module")
def checker(spec):
    return SpecChecker(spec)


@pytest.fixture(scope="module")
def client(app):
    return app.test_client()


def test_document_is_valid_openapi(client, spec):
    r = client.get("/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    validate(spec)
    assert spec["openapi"] == "3.1.0"


def openapi_path(rule):
    """A Flask rule in OpenAPI's spelling: ``/v2/models/<name>`` → ``/v2/models/{name}``."""
    return re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)


def test_every_route_is_documented(app, spec):
    routes = {openapi_path(rule) for rule in app.url_map.iter_rules() if rule.endpoint != "static"}
    assert routes == set(spec["paths"])
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        documented = set(spec["paths"][openapi_path(rule)])
        assert documented == {m.lower() for m in rule.methods} - {"head", "options"}


def test_every_error_code_in_the_code_is_documented():
    """Codes raised anywhere in the service appear in the spec, and nothing is made up."""
    used = set()
    for path in [ROOT / "app.py", *sorted((ROOT / "fillmask").glob("*.py"))]:
        used |= set(re.findall(r'code="([a-z_]+)"', path.read_text(encoding="utf-8")))
        used |= set(re.findall(r'"(\w+)",\s*40[13],?\s*\)', path.read_text(encoding="utf-8")))
    used -= {"bad_request", "config"}  # defaults/config errors never reach a client
    documented = {code for codes in ERROR_CODES.values() for code in codes}
    # Werkzeug's HTTP errors are named by the app's handler from their titles.
    werkzeug = {"not_found", "method_not_allowed", "request_entity_too_large", "internal_error"}
    assert used - documented == set()
    assert documented - used - werkzeug <= {"invalid_blank", "invalid_candidates"}


def test_limits_follow_the_config(tiny_model_dir):
    from app import create_app

    custom = create_app(make_config(tiny_model_dir, max_top_k=7, max_texts=3, max_targets=4))
    schemas = custom.test_client().get("/openapi.json").get_json()["components"]["schemas"]
    props = schemas["PredictRequest"]["properties"]
    assert props["top_k"]["maximum"] == 7
    assert props["texts"]["maxItems"] == 3
    assert props["targets"]["oneOf"][1]["maxItems"] == 4


@pytest.mark.parametrize(
    "body",
    [
        {"text": "今天天气真[MASK]啊"},
        {"text": "今天天气真[MASK]啊", "top_k": 1},
        {"text": "[MASK]前明月光，疑是地上［MASK］。", "top_k": 3},
        {"texts": ["今天天气真[MASK]啊", "画蛇[MASK][MASK]，多此一举。"], "top_k": 2},
        {"text": "今天天气真[MASK]啊", "targets": ["好", "花"]},
        {"text": "今天天气真[MASK]啊", "targets": "好"},
        {"text": "画蛇[MASK][MASK]，多此一举。", "joint": True, "top_k": 3},
        {"texts": ["画蛇[MASK][MASK]。", "好[MASK]"], "joint": True},
        {"text": "画蛇[MASK][MASK]，多此一举。", "candidates": ["好天", "花雨", "好"]},
    ],
)
def test_predict_200_matches(client, checker, body):
    r = client.post("/predict", json=body)
    assert r.status_code == 200, r.get_json()
    got = checker.check(r, "/predict")
    assert got["success"] is True


@pytest.mark.parametrize(
    "body",
    [
        {"inputs": "今天天气真[MASK]啊"},
        {"inputs": "[MASK]天天气真[MASK]啊", "parameters": {"top_k": 2}},
        {"inputs": ["今天天气真[MASK]啊", "[MASK]前[MASK]"]},
        {"inputs": "今天天气真[MASK]啊", "parameters": {"targets": ["好"]}},
    ],
)
def test_fill_mask_200_matches(client, checker, body):
    r = client.post("/fill-mask", json=body)
    assert r.status_code == 200
    checker.check(r, "/fill-mask")


def test_get_endpoints_match(client, checker):
    checker.check(client.get("/health"), "/health", "GET")
    checker.check(client.get("/openapi.json"), "/openapi.json", "GET")
    page = client.get("/")
    assert page.status_code == 200
    checker.check(page, "/", "GET")


@pytest.mark.parametrize(
    "path,kwargs,status,code",
    [
        ("/predict", {"data": "{", "content_type": "application/json"}, 400, "invalid_json"),
        ("/predict", {"json": {"text": "没有掩码"}}, 400, "no_mask"),
        ("/predict", {"json": {"text": "[MASK]", "top_k": 0}}, 400, "invalid_top_k"),
        ("/fill-mask", {"json": {"inputs": 5}}, 400, "invalid_type"),
        ("/fill-mask", {"json": {}}, 400, "missing_text"),
        ("/predict", {"data": "text=[MASK]"}, 415, "unsupported_media_type"),
        ("/fill-mask", {"data": "x", "content_type": "text/plain"}, 415, "unsupported_media_type"),
        (
            "/predict",
            {
                "data": '{"text": "' + "好" * 400_000 + '[MASK]"}',
                "content_type": "application/json",
            },
            413,
            "request_entity_too_large",
        ),
    ],
)
def test_errors_match(client, checker, path, kwargs, status, code):
    r = client.post(path, **kwargs)
    assert r.status_code == status
    assert checker.check(r, path)["code"] == code


def test_404_and_405_match(client, checker):
    r = client.get("/no/such/page")
    assert r.status_code == 404 and checker.check(r, "/no/such/page", "GET")["code"] == "not_found"
    r = client.get("/predict")
    assert r.status_code == 405
    assert checker.check(r, "/predict", "GET")["code"] == "method_not_allowed"


def test_401_and_403_match(tiny_model_dir, checker):
    from app import create_app

    locked = create_app(
        make_config(tiny_model_dir, api_token="t0ken", cors_origins="http://ok.example")
    ).test_client()
    r = locked.post("/predict", json={"text": "好[MASK]"})
    assert r.status_code == 401 and checker.check(r, "/predict")["code"] == "unauthorized"
    r = locked.options(
        "/predict",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert r.status_code == 403
    assert checker.check(r, "/predict", "OPTIONS")["code"] == "origin_not_allowed"


def test_500_matches(app, checker, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["fillmask"].predictor, "predict", boom)
    r = app.test_client().post("/predict", json={"text": "好[MASK]"})
    assert r.status_code == 500 and checker.check(r, "/predict")["code"] == "internal_error"


def test_503_matches(tmp_path, checker):
    from app import create_app

    broken = create_app(make_config(tmp_path / "missing", strict=False))
    c = broken.test_client()
    r = c.post("/predict", json={"text": "好[MASK]"})
    assert r.status_code == 503 and checker.check(r, "/predict")["code"] == "model_unavailable"
    h = c.get("/health")
    assert h.status_code == 503 and checker.check(h, "/health", "GET")["status"] == "error"
    # Still loading (no error recorded yet): model_not_ready, and /health says "loading".
    broken.extensions["fillmask"].error = None
    r = c.post("/fill-mask", json={"inputs": "好[MASK]"})
    assert r.status_code == 503 and checker.check(r, "/fill-mask")["code"] == "model_not_ready"
    assert checker.check(c.get("/health"), "/health", "GET")["status"] == "loading"
