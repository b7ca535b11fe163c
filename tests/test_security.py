"""Hardening: security headers, CORS per origin, the optional API token, no debug mode, and
model files checked against the manifest."""

import hmac
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import make_config

from fillmask.security import CONTENT_SECURITY_POLICY

ROOT = Path(__file__).resolve().parents[1]
GOOD = {"text": "今天天气真[MASK]啊"}


def build(model_dir, strict=True, **overrides):
    from app import create_app

    return create_app(make_config(model_dir, **overrides), strict=strict)


@pytest.fixture(scope="module")
def locked(tiny_model_dir):
    """An app with an API token and one allowed origin."""
    return build(
        tiny_model_dir,
        api_token="s3cret-tok3n",
        cors_origins="http://ok.example, http://also.example",
    ).test_client()


def preflight(client, origin, path="/predict"):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )


# -- headers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method,path,body,status",
    [
        ("get", "/", None, 200),
        ("get", "/health", None, 200),
        ("get", "/openapi.json", None, 200),
        ("post", "/predict", GOOD, 200),
        ("post", "/predict", {"text": "no mask"}, 400),
        ("post", "/fill-mask", {"inputs": "好[MASK]"}, 200),
        ("get", "/nope", None, 404),
        ("get", "/predict", None, 405),
    ],
)
def test_security_headers_everywhere(client, method, path, body, status):
    r = getattr(client, method)(path, json=body) if body else getattr(client, method)(path)
    assert r.status_code == status
    assert r.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("get", "/predict", {"POST", "OPTIONS"}),
        ("put", "/fill-mask", {"POST", "OPTIONS"}),
        ("post", "/health", {"GET", "HEAD", "OPTIONS"}),
    ],
)
def test_405_names_the_allowed_methods(client, method, path, allowed):
    r = getattr(client, method)(path)
    assert r.status_code == 405 and r.get_json()["code"] == "method_not_allowed"
    assert {m.strip() for m in r.headers["Allow"].split(",")} == allowed


def test_csp_forbids_inline_script():
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["script-src"] == "'self'"
    assert "unsafe" not in CONTENT_SECURITY_POLICY
    assert directives["frame-ancestors"] == "'none'"


def test_page_has_no_inline_script_or_style(client):
    """The CSP would block them: every script and style must come from /static."""
    html = client.get("/").get_data(as_text=True)
    for tag in re.findall(r"<script\b[^>]*>", html):
        assert "src=" in tag, tag
    assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), "inline script body"
    assert "<style" not in html
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "inline style attribute"
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "resource from another origin"


def test_headers_on_500(app, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(app.extensions["fillmask"].predictor, "candidates", boom)
    r = app.test_client().post("/predict", json=GOOD)
    assert r.status_code == 500 and r.headers["X-Content-Type-Options"] == "nosniff"


# -- CORS ----------------------------------------------------------------------------------------


def test_cors_closed_by_default(client):
    r = client.post("/predict", json=GOOD, headers={"Origin": "http://other.example"})
    assert r.status_code == 200 and "Access-Control-Allow-Origin" not in r.headers
    p = preflight(client, "http://other.example")
    assert p.status_code == 403 and p.get_json()["code"] == "origin_not_allowed"
    assert p.get_json()["success"] is False and set(p.get_json()) == {"success", "error", "code"}
    assert "CORS_ORIGINS" in p.get_json()["error"]
    assert "Access-Control-Allow-Origin" not in p.headers


def test_cors_allowed_origin(locked):
    p = preflight(locked, "http://also.example")
    assert p.status_code == 204 and p.get_data() == b"" and "Content-Type" not in p.headers
    assert p.headers["Access-Control-Allow-Origin"] == "http://also.example"
    methods = {m.strip() for m in p.headers["Access-Control-Allow-Methods"].split(",")}
    assert methods == {"GET", "POST", "OPTIONS"}
    assert p.headers["Access-Control-Max-Age"] == "600"  # browsers cache the answer 10 minutes
    assert {"content-type", "authorization"} <= {
        h.strip().lower() for h in p.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert "Origin" in p.headers["Vary"]
    r = locked.post(
        "/predict",
        json=GOOD,
        headers={"Origin": "http://ok.example", "Authorization": "Bearer s3cret-tok3n"},
    )
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "http://ok.example"


def test_cors_other_origin_still_refused(locked):
    assert preflight(locked, "http://evil.example").status_code == 403
    r = locked.get("/health", headers={"Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers and "Origin" in r.headers["Vary"]


def test_cors_wildcard(tiny_model_dir):
    c = build(tiny_model_dir, cors_origins="*").test_client()
    assert preflight(c, "http://any.example").headers["Access-Control-Allow-Origin"] == "*"
    r = c.post("/predict", json=GOOD, headers={"Origin": "http://any.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("header", [None, "Bearer wrong"])
def test_cors_headers_on_a_401(locked, header):
    """An allowed page must be able to read the 401 (to ask for the token)."""
    headers = {"Origin": "http://ok.example"} | ({"Authorization": header} if header else {})
    r = locked.post("/predict", json=GOOD, headers=headers)
    assert r.status_code == 401
    assert r.headers["Access-Control-Allow-Origin"] == "http://ok.example"
    assert "Origin" in r.headers["Vary"]
    other = locked.post("/predict", json=GOOD, headers={"Origin": "http://evil.example"})
    assert other.status_code == 401 and "Access-Control-Allow-Origin" not in other.headers


def test_preflight_needs_no_token(locked):
    """Browsers never send Authorization on a preflight."""
    assert preflight(locked, "http://ok.example", "/fill-mask").status_code == 204


# -- API token -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header,hint",
    [
        (None, "requires an API token"),
        ("Bearer wrong", "wrong"),
        ("Bearer s3cret-tok3n-and-more", "wrong"),
        ("Bearer S3CRET-TOK3N", "wrong"),
        ("Basic czNjcmV0LXRvazNu", "requires an API token"),
        ("s3cret-tok3n", "requires an API token"),
        ("Bearer ", "requires an API token"),
        ("Bearer 秘密", "wrong"),
    ],
)
@pytest.mark.parametrize("path", ["/predict", "/fill-mask"])
def test_token_refused(locked, path, header, hint):
    headers = {"Authorization": header.encode("utf-8").decode("latin-1")} if header else {}
    body = GOOD if path == "/predict" else {"inputs": "好[MASK]"}
    r = locked.post(path, json=body, headers=headers)
    assert r.status_code == 401
    got = r.get_json()
    assert set(got) == {"success", "error", "code"} and got["success"] is False
    assert got["code"] == "unauthorized" and hint in got["error"] and "s3cret" not in got["error"]
    # RFC 6750: a wrong token is "invalid_token"; no token at all gets no error attribute.
    expected = 'Bearer realm="fillmask"' + (', error="invalid_token"' if hint == "wrong" else "")
    assert r.headers["WWW-Authenticate"] == expected


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_token_accepted(locked, scheme):
    r = locked.post("/predict", json=GOOD, headers={"Authorization": f"{scheme} s3cret-tok3n"})
    assert r.status_code == 200 and r.get_json()["success"] is True


@pytest.mark.parametrize(
    "path", ["/", "/health", "/openapi.json", "/static/page.css", "/static/page.js"]
)
def test_token_not_needed_outside_the_api(locked, path):
    assert locked.get(path).status_code == 200


def test_token_checked_before_the_body_is_read(locked):
    """An unauthenticated client cannot make the server parse a big body."""
    r = locked.post("/predict", data="{" * 100, content_type="application/json")
    assert r.status_code == 401


def test_token_compared_in_constant_time(locked, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    locked.post("/predict", json=GOOD, headers={"Authorization": "Bearer guess"})
    assert calls == [(b"guess", b"s3cret-tok3n")]


def test_settings_come_from_the_environment():
    from fillmask.config import Config

    cfg = Config.from_env({"API_TOKEN": "abc", "CORS_ORIGINS": "http://a.example,http://b.example"})
    assert cfg.api_token == "abc"
    assert cfg.allowed_origins == {"http://a.example", "http://b.example"}
    assert Config.from_env({}).api_token == "" and Config.from_env({}).allowed_origins == set()


# -- no debug mode -------------------------------------------------------------------------------


def test_no_debug_mode_even_if_asked(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")
    app = build(tiny_model_dir)
    assert app.debug is False and app.config["PROPAGATE_EXCEPTIONS"] is False


def test_no_debug_anywhere_in_the_code():
    sources = [ROOT / "app.py", ROOT / "gunicorn.conf.py", *(ROOT / "fillmask").rglob("*.py")]
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"debug\s*=\s*True|app\.run\(", text), path.name
    spec = importlib.util.spec_from_file_location("gconf", ROOT / "gunicorn.conf.py")
    gconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gconf)
    assert not getattr(gconf, "reload", False) and not getattr(gconf, "spew", False)
    # Gunicorn's own threaded worker: no subclass overriding its private methods.
    assert gconf.worker_class == "gthread"
    # Request line and header sizes: Gunicorn's own bounded defaults (not raised here).
    assert not hasattr(gconf, "limit_request_line") and not hasattr(
        gconf, "limit_request_field_size"
    )
    assert gconf.limit_request_fields <= 100


# -- model files against the manifest -----------------------------------------------------------


def tampered_copy(src, dst, name="model.onnx"):
    """Copy a model directory and flip one byte in ``name``: same size, different sha256."""
    shutil.copytree(src, dst)
    path = Path(dst) / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return Path(dst)


def test_sha256_mismatch_is_model_unavailable(tiny_model_dir, tmp_path):
    bad = tampered_copy(tiny_model_dir, tmp_path / "bad")
    # Same size: the per-worker size check passes, the sha256 check does not.
    assert build(bad, model_verify="size").extensions["fillmask"].predictor is not None
    app = build(bad, model_verify="sha256", strict=False)
    r = app.test_client().post("/predict", json=GOOD)
    assert r.status_code == 503 and r.get_json()["code"] == "model_unavailable"
    assert str(tmp_path) not in r.get_data(as_text=True)


def test_size_mismatch_is_model_unavailable(tiny_model_dir, tmp_path):
    bad = tmp_path / "short"
    shutil.copytree(tiny_model_dir, bad)
    with open(bad / "tokenizer.json", "a", encoding="utf-8") as handle:
        handle.write(" ")
    app = build(bad, strict=False)
    assert app.test_client().post("/predict", json=GOOD).status_code == 503


@pytest.mark.live
def test_gunicorn_refuses_a_tampered_model(tiny_model_dir, tmp_path):
    """The master hashes every file before forking: one clear line, non-zero exit."""
    from live import GunicornServer

    bad = tampered_copy(tiny_model_dir, tmp_path / "bad")
    server = GunicornServer(bad, startup_timeout=30)
    with pytest.raises(RuntimeError) as info:
        server.start()
    server.stop()
    assert "gunicorn exited with 1" in str(info.value)
    lines = [line for line in server.output().splitlines() if "cannot start" in line]
    assert len(lines) == 1 and "sha256" in lines[0] and "model.onnx" in lines[0]
    assert "Traceback" not in server.output()
    assert "worker" not in server.output().lower().replace("workers", "")


def model_error(directory, **kwargs):
    """The ModelFilesError message for opening ``directory``."""
    from fillmask.errors import ModelFilesError
    from fillmask.model_files import open_model_dir

    with pytest.raises(ModelFilesError) as info:
        open_model_dir(directory, **kwargs)
    return str(info.value)


def test_bad_precision_is_refused(tiny_model_dir):
    message = model_error(tiny_model_dir, precision="fp16")
    assert "MODEL_PRECISION" in message and "'fp16'" in message
    assert "fp32" in message and "int8" in message


def test_unreadable_manifest_is_refused(tiny_model_dir, tmp_path):
    bad = tmp_path / "m"
    shutil.copytree(tiny_model_dir, bad)
    (bad / "manifest.json").write_text("{not json", encoding="utf-8")
    message = model_error(bad)
    assert "manifest.json" in message and "unreadable" in message and "export_onnx.py" in message
    app = build(bad, strict=False)
    assert app.test_client().post("/predict", json=GOOD).status_code == 503


def test_file_not_in_the_manifest_is_refused(tiny_model_dir, tmp_path):
    bad = tmp_path / "m"
    shutil.copytree(tiny_model_dir, bad)
    manifest = json.loads((bad / "manifest.json").read_text(encoding="utf-8"))
    del manifest["files"]["tokenizer.json"]
    (bad / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    for verify in ("size", "sha256"):
        message = model_error(bad, verify=verify)
        assert "tokenizer.json is not listed in the manifest" in message


def test_missing_int8_file_names_the_export_option(tiny_model_dir, tmp_path):
    bad = tmp_path / "m"
    shutil.copytree(tiny_model_dir, bad)
    (bad / "model.int8.onnx").unlink()
    message = model_error(bad, precision="int8")
    assert "model.int8.onnx" in message and "--int8" in message
    assert build(bad).extensions["fillmask"].predictor is not None  # fp32 still loads


def test_model_verify_none_skips_the_comparison(tiny_model_dir, tmp_path):
    """MODEL_VERIFY=none loads files that no longer match the manifest (at the user's risk)."""
    bad = tmp_path / "m"
    shutil.copytree(tiny_model_dir, bad)
    with open(bad / "tokenizer.json", "a", encoding="utf-8") as handle:
        handle.write(" ")  # size and sha256 now differ
    assert "bytes" in model_error(bad, verify="size")
    assert "sha256" in model_error(bad, verify="sha256") or "bytes" in model_error(
        bad, verify="sha256"
    )
    app = build(bad, model_verify="none")
    r = app.test_client().post("/predict", json=GOOD)
    assert r.status_code == 200 and r.get_json()["success"] is True


def test_manifest_matches_the_files(tiny_model_dir):
    from fillmask.model_files import sha256_of

    manifest = json.loads((tiny_model_dir / "manifest.json").read_text(encoding="utf-8"))
    for name in ("model.onnx", "tokenizer.json"):
        assert manifest["files"][name]["sha256"] == sha256_of(tiny_model_dir / name)


# -- request limits in front of the app ---------------------------------------------------------


@pytest.mark.live
def test_gunicorn_refuses_oversized_requests(tiny_model_dir):
    """Request line, header count and header size limits answer 4xx; the server carries on."""
    import requests
    from live import GunicornServer

    with GunicornServer(tiny_model_dir, WORKERS="1") as server:
        url = server.url
        answers = {
            "long_request_line": requests.get(url + "/health?" + "a" * 5000, timeout=10),
            "too_many_headers": requests.get(
                url + "/health", timeout=10, headers={f"X-H{i}": "1" for i in range(60)}
            ),
            "huge_header": requests.get(url + "/health", headers={"X-Big": "a" * 9000}, timeout=10),
            "huge_body": requests.post(
                url + "/predict",
                data=b"{" + b" " * (2 << 20) + b"}",
                headers={"Content-Type": "application/json"},
                timeout=30,
            ),
        }
        for name, r in answers.items():
            assert 400 <= r.status_code < 500, (name, r.status_code)
            assert "Traceback" not in r.text and str(ROOT) not in r.text, name
        assert answers["huge_body"].status_code == 413
        assert answers["huge_body"].json()["code"] == "request_entity_too_large"
        ok = requests.post(url + "/predict", json=GOOD, timeout=10)
        assert ok.status_code == 200 and ok.json()["success"] is True
