"""A non-ASCII API_TOKEN: sent as raw UTF-8 bytes in the header, it matches; others do not."""

import http.client
import json

import pytest
from conftest import make_config
from live import GunicornServer

TOKEN = "令牌-秘密-🔑"


def latin1(text):
    """A header value as a WSGI server hands it over: the UTF-8 bytes decoded as latin-1."""
    return text.encode("utf-8").decode("latin-1")


@pytest.fixture(scope="module")
def locked(tiny_model_dir):
    from app import create_app

    return create_app(make_config(tiny_model_dir, api_token=TOKEN)).test_client()


@pytest.mark.parametrize(
    "sent, status",
    [
        (TOKEN, 200),
        ("令牌-秘密-🔐", 401),  # same length in characters, one differs
        ("令牌-秘密", 401),
        (TOKEN.encode("utf-8").decode("latin-1"), 401),  # mojibake of the right token
    ],
)
def test_utf8_token_in_the_wsgi_environ(locked, sent, status):
    response = locked.post(
        "/predict",
        json={"text": "好[MASK]"},
        environ_overrides={"HTTP_AUTHORIZATION": latin1(f"Bearer {sent}")},
    )
    assert response.status_code == status
    if status == 401:
        assert response.get_json()["code"] == "unauthorized"


def post(server, token_bytes):
    """POST /predict with ``Authorization: Bearer <raw bytes>``: (status, JSON body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = json.dumps({"text": "好[MASK]"}).encode()
    conn.request(
        "POST",
        "/predict",
        body,
        {"Content-Type": "application/json", "Authorization": b"Bearer " + token_bytes},
    )
    response = conn.getresponse()
    result = response.status, json.loads(response.read())
    conn.close()
    return result


@pytest.mark.live
def test_utf8_token_against_a_real_server(tiny_model_dir):
    with GunicornServer(tiny_model_dir, WORKERS="1", API_TOKEN=TOKEN) as server:
        status, body = post(server, TOKEN.encode("utf-8"))
        assert status == 200 and body["success"] is True
        status, body = post(server, "令牌-秘密-🔐".encode())
        assert status == 401 and body["code"] == "unauthorized"
        status, body = post(server, TOKEN.encode("utf-8")[:-1])
        assert status == 401
