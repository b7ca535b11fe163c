"""GET /openapi.json: a valid OpenAPI 3.1 document that real responses, good and bad, match."""

import re
from pathlib import Path

import pytest
from conftest import make_config
from openapi_check import SpecChecker
from openapi_spec_validator import validate

from fillmask.errors import ERROR_CODES
from fillmask.refusal import FIELD_CODES, TYPE_CODES

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
    # The codes a refused field gets (fillmask/requests.py's tables).
    used |= set(FIELD_CODES.values()) | set(TYPE_CODES.values())
    documented = {code for codes in ERROR_CODES.values() for code in codes}
    # Werkzeug's HTTP errors are named by the app's handler from their titles.
    werkzeug = {"not_found", "method_not_allowed", "request_entity_too_large", "internal_error"}
    assert used - documented == set()
    assert documented - used - werkzeug <= set()


def test_limits_follow_the_config(tiny_model_dir):
    """The document states the configured limits, and the server enforces the same ones."""
    from app import create_app

    custom = create_app(make_config(tiny_model_dir, max_top_k=7, max_texts=3, max_targets=4))
    client = custom.test_client()
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    props = schemas["PredictRequest"]["properties"]
    assert props["top_k"]["maximum"] == 7
    assert props["texts"]["maxItems"] == 3
    (listed,) = [t for t in props["targets"]["anyOf"] if t.get("type") == "array"]
    assert listed["maxItems"] == 4
    words = ["好", "花", "雨", "风", "天"]
    cases = [
        ({"text": "好[MASK]", "top_k": 7}, 200, None),
        ({"text": "好[MASK]", "top_k": 8}, 400, "invalid_top_k"),
        ({"texts": ["好[MASK]"] * 3}, 200, None),
        ({"texts": ["好[MASK]"] * 4}, 400, "batch_too_large"),
        ({"text": "好[MASK]", "targets": words[:4]}, 200, None),
        ({"text": "好[MASK]", "targets": words}, 400, "invalid_targets"),
    ]
    for body, status, code in cases:
        r = client.post("/predict", json=body)
        assert r.status_code == status, (body, r.get_json())
        assert r.get_json().get("code") == code
