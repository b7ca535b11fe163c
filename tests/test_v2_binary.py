"""The v2 binary tensor data extension (Triton's docs/protocol/extension_binary_data.md).

tritonclient with its defaults (binary inputs, binary outputs: its binary_data flag is never
set in this file) against a live Gunicorn, with and without ``model_version``; answers
equal to /predict's and to PyTorch's on the same weights (tests/reference.py). Hand-made bodies
for every malformed case, each a 400 in the protocol's error shape; every response checked
against the protocol's official file (tests/v2_protocol.py), binary outputs decoded there with
numpy and struct, independently of the server.
"""

import json
import struct

import numpy as np
import pytest
import requests
from conftest import make_config
from reference import assert_top_k, mask_log_probs, offerable
from v2_protocol import HEADER, check

MODEL = "tiny-random-bert"
INFER = f"/v2/models/{MODEL}/infer"
TEXTS = ["今天天气真[MASK]啊", "[MASK]前明月光，疑是地上［MASK］。", "春眠不觉[MASK]，处处闻啼鸟。"]


def bytes_elements(*elements):
    """BYTES binary data as the extension has it: per element a 4-byte LE length + bytes."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def framed_body(header, tail=b""):
    """A request body: the JSON header then the binary data; and its header length."""
    raw = json.dumps(header, ensure_ascii=False).encode()
    return raw + tail, {HEADER: str(len(raw))}


def binary_request(texts, tail=None, size=None, shape=None, **more):
    """A hand-made binary request for ``texts`` (``tail``/``size``/``shape`` to spoil it)."""
    tail = bytes_elements(*(t.encode() for t in texts)) if tail is None else tail
    tensor = {"name": "text", "datatype": "BYTES", "shape": shape or [len(texts) or 1]}
    tensor["parameters"] = {"binary_data_size": len(tail) if size is None else size}
    return framed_body({"inputs": [tensor], **more}, tail)


@pytest.mark.live
@pytest.mark.parametrize("version", ["", "1"])
@pytest.mark.parametrize("outputs", [None, ("candidates", "token_ids", "scores")])
def test_tritonclient_defaults_give_predicts_and_pytorchs_words(
    v2_server, triton, tiny_torch, tiny_tokenizer, version, outputs
):
    """Binary BYTES in, binary INT64 / FP32 / BYTES out, exactly as tritonclient does by default
    (outputs=None: ``binary_data_output`` request-wide; named outputs: ``binary_data`` each)."""
    import tritonclient.http as httpclient

    tensor = httpclient.InferInput("text", [len(TEXTS)], "BYTES")
    tensor.set_data_from_numpy(np.array([t.encode() for t in TEXTS], dtype=object))
    assert tensor._get_tensor()["parameters"]["binary_data_size"] > 0  # really binary
    wanted = None if outputs is None else [httpclient.InferRequestedOutput(o) for o in outputs]
    result = triton.infer(
        MODEL, [tensor], model_version=version, outputs=wanted, parameters={"top_k": 4}
    )
    response = result.get_response()
    assert response["model_name"] == MODEL and response["model_version"] == "1"
    assert all(
        "data" not in o and o["parameters"]["binary_data_size"] > 0 for o in response["outputs"]
    )
    ids, scores = result.as_numpy("token_ids"), result.as_numpy("scores")
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    assert ids.shape == scores.shape == (len(TEXTS), 2, 4)
    candidates = [json.loads(c.decode("utf-8")) for c in result.as_numpy("candidates")]

    predict = requests.post(
        v2_server.url + "/predict", json={"texts": TEXTS, "top_k": 4}, timeout=30
    ).json()
    allowed = offerable(tiny_tokenizer)
    for t, text in enumerate(TEXTS):
        assert candidates[t] == [m["candidates"] for m in predict["results"][t]["masks"]]
        rows = mask_log_probs(tiny_torch, tiny_tokenizer, text.replace("［MASK］", "[MASK]"))
        for m, row in enumerate(rows):
            got = list(zip(ids[t, m].tolist(), scores[t, m].tolist(), strict=True))
            assert_top_k(got, row, allowed, 4)
            assert [c["token_id"] for c in candidates[t][m]] == ids[t, m].tolist()
        if len(rows) == 1:  # padding of a text with fewer masks than the longest
            assert ids[t, 1].tolist() == [-1] * 4 and scores[t, 1].tolist() == [0.0] * 4
    assert candidates[0][0][0]["sequence"] == "今天天气真" + candidates[0][0][0]["word"] + "啊"


@pytest.mark.live
def test_the_wire_format_of_a_binary_response(v2_server):
    """What tritonclient parses, checked by hand: octet-stream, the header length, the sizes;
    the decoded data equal to the JSON answer to the same request."""
    path = f"/v2/models/{MODEL}/versions/1/infer"
    body, headers = binary_request(TEXTS[:2], parameters={"binary_data_output": True, "top_k": 3})
    r = requests.post(v2_server.url + path, data=body, headers=headers, timeout=30)
    assert r.status_code == 200
    got, binary = check(path, "POST", 200, r.headers, r.content)
    assert binary == {"candidates", "token_ids", "scores"}
    assert int(r.headers[HEADER]) < len(r.content) == int(r.headers["Content-Length"])
    tensor = {"name": "text", "datatype": "BYTES", "shape": [2], "data": TEXTS[:2]}
    plain = requests.post(
        v2_server.url + path, json={"inputs": [tensor], "parameters": {"top_k": 3}}, timeout=30
    )
    want, none = check(path, "POST", 200, plain.headers, plain.content)
    assert none == set() and HEADER not in plain.headers
    for g, w in zip(got["outputs"], want["outputs"], strict=True):
        assert g["shape"] == w["shape"] and g["datatype"] == w["datatype"]
        if g["name"] == "scores":  # FP32 on the wire
            assert g["data"] == np.asarray(w["data"], np.float32).tolist()
        else:
            assert g["data"] == w["data"]


def post(client, body, headers=None, path=INFER):
    """POST a raw body; the response checked against the protocol's file."""
    r = client.post(path, data=body, headers=headers or {})
    obj, binary = check(path, "POST", r.status_code, r.headers, r.data)
    return r, obj, binary


def test_binary_in_json_out_and_json_in_binary_out_agree(client):
    """Binary input with JSON outputs, and JSON input with one output binary (per-output
    binary_data overriding binary_data_output), give the same answer as all-JSON."""
    tensor = {"name": "text", "datatype": "BYTES", "shape": [2], "data": TEXTS[:2]}
    _, plain, _ = post(
        client, json.dumps({"inputs": [tensor]}), {"Content-Type": "application/json"}
    )
    _, from_binary, binary = post(client, *binary_request(TEXTS[:2]))
    assert binary == set() and from_binary == plain
    outputs = [
        {"name": "token_ids", "parameters": {"binary_data": True}},
        {"name": "candidates", "parameters": {"binary_data": False}},
        {"name": "scores"},
    ]
    body = {"inputs": [tensor], "outputs": outputs, "parameters": {"binary_data_output": False}}
    r, mixed, binary = post(client, json.dumps(body))
    assert binary == {"token_ids"} and r.mimetype == "application/octet-stream"
    assert [o["data"] for o in mixed["outputs"]] == [plain["outputs"][i]["data"] for i in (1, 0, 2)]
    body["parameters"]["binary_data_output"] = True  # scores now binary: it has no own choice
    _, _, binary = post(client, json.dumps(body))
    assert binary == {"token_ids", "scores"}


def test_chinese_round_trips_exactly_through_bytes(client):
    text = "「𠀋」是[MASK]字，é 与 ｅ"
    _, obj, _ = post(client, *binary_request([text], parameters={"binary_data_output": True}))
    (candidates,) = [o for o in obj["outputs"] if o["name"] == "candidates"]
    first = json.loads(candidates["data"][0])[0][0]
    assert first["sequence"] == text.replace("[MASK]", first["word"])


def test_the_cache_keeps_the_binary_choice(tiny_model_dir):
    """The same request asked as JSON and as binary gets each its own cached body."""
    from app import create_app

    app = create_app(make_config(tiny_model_dir, cache_size=64))
    client, fill = app.test_client(), app.extensions["fillmask"]
    text = ["天[MASK]地"]
    as_binary, headers = binary_request(text, parameters={"binary_data_output": True})
    as_json, json_headers = binary_request(text)
    first = client.post(INFER, data=as_binary, headers=headers)
    hits = fill.cache.hits
    again = client.post(INFER, data=as_binary, headers=headers)
    assert fill.cache.hits == hits + 1
    assert again.data == first.data and again.headers[HEADER] == first.headers[HEADER]
    misses = fill.cache.misses
    plain = client.post(INFER, data=as_json, headers=json_headers)
    assert (fill.cache.hits, fill.cache.misses) == (hits + 1, misses + 1)  # not the binary body
    assert client.post(INFER, data=as_json, headers=json_headers).data == plain.data
    assert fill.cache.hits == hits + 2
    assert HEADER not in plain.headers and plain.mimetype == "application/json"
    check(INFER, "POST", 200, again.headers, again.data)
    check(INFER, "POST", 200, plain.headers, plain.data)


GOOD = bytes_elements("好[MASK]".encode())
MALFORMED = [
    ("a header length past the body", binary_request(["好[MASK]"]), 10_000, HEADER),
    ("a header length that is no number", binary_request(["好[MASK]"]), "12a", HEADER),
    ("a header length in superscript digits", binary_request(["好[MASK]"]), "\u00b2", HEADER),
    ("a negative header length", binary_request(["好[MASK]"]), "-5", HEADER),
    ("a header length of 5000 digits", binary_request(["好[MASK]"]), "9" * 5000, HEADER),
    ("a raw binary request (no JSON header)", binary_request(["好[MASK]"]), 0, HEADER),
    (
        "a binary_data_size past the body",
        binary_request(["好[MASK]"], size=len(GOOD) + 1),
        None,
        "binary_data_size",
    ),
    (
        "a binary_data_size short of the body",
        binary_request(["好[MASK]"], size=len(GOOD) - 1),
        None,
        "binary_data_size",
    ),
    (
        "an element length past its data",
        binary_request([], tail=struct.pack("<I", 99) + b"ab", shape=[1]),
        None,
        "ends inside element 0",
    ),
    (
        "a length cut in two",
        binary_request([], tail=GOOD + b"\x01\x00", shape=[2]),
        None,
        "ends inside element 1",
    ),
    (
        "an element not UTF-8",
        binary_request([], tail=bytes_elements(b"\xff[MASK]")),
        None,
        "not UTF-8",
    ),
    (
        "a lone surrogate in UTF-8",
        binary_request([], tail=bytes_elements(b"\xed\xa0\x80[MASK]")),
        None,
        "not UTF-8",
    ),
    (
        "a shape larger than the data",
        binary_request([], tail=GOOD, shape=[2]),
        None,
        "ends inside element 1",
    ),
    (
        "a shape smaller than the data",
        binary_request([], tail=GOOD + GOOD, shape=[1]),
        None,
        "left after",
    ),
    ("a shape of two dimensions", binary_request([], tail=GOOD, shape=[1, 1]), None, "shape"),
    ("binary_data_size on a JSON input", None, None, "either data or parameters.binary_data_size"),
    ("binary bytes after a JSON input", None, None, "binary_data_size"),
    (
        "no data at all",
        framed_body({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1]}]}),
        None,
        "either data or parameters.binary_data_size",
    ),
    (
        "binary_data_output not a boolean",
        binary_request(["好[MASK]"], parameters={"binary_data_output": 1}),
        None,
        "binary_data_output",
    ),
    (
        "binary_data not a boolean",
        binary_request(
            ["好[MASK]"], outputs=[{"name": "scores", "parameters": {"binary_data": "yes"}}]
        ),
        None,
        "binary_data",
    ),
    (
        "a negative binary_data_size",
        binary_request(["好[MASK]"], size=-1),
        None,
        "binary_data_size",
    ),
    ("an unknown input parameter", None, None, "shared_memory_region"),
    ("a header that is not JSON", (b"{nope" + GOOD, {HEADER: "5"}), None, "not valid JSON"),
]


def json_input_with(tail, **parameters):
    tensor = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["好[MASK]"]}
    if parameters:
        tensor["parameters"] = parameters
    return framed_body({"inputs": [tensor]}, tail)


@pytest.mark.parametrize("case, request_, header, words", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_binary_is_a_400_in_the_protocols_shape(client, case, request_, header, words):
    if case == "binary_data_size on a JSON input":
        request_ = json_input_with(GOOD, binary_data_size=len(GOOD))
    elif case == "binary bytes after a JSON input":
        request_ = json_input_with(GOOD)
    elif case == "an unknown input parameter":
        request_ = json_input_with(b"", shared_memory_region="r0")
    body, headers = request_
    if header is not None:
        headers = {HEADER: str(header)}
    r, obj, _ = post(client, body, headers)
    assert r.status_code == 400, obj
    assert words in obj["error"], obj
    assert set(obj) == {"error"}


def test_the_limits_hold_before_decoding(client, app):
    """MAX_TEXTS from the shape before any element is read, each element's byte length
    before it is decoded, then the same character limit as JSON; MAX_BODY_BYTES on the whole
    body (Content-Length and chunked)."""
    cfg = app.extensions["fillmask"].config
    garbage = b"\xff" * 64  # not BYTES elements at all: refused for the count first
    _, obj, _ = post(client, *binary_request([], tail=garbage, shape=[cfg.max_texts + 1]))
    assert "MAX_TEXTS" in obj["error"]
    too_long = b"\xff" * (4 * cfg.max_text_chars + 1)  # not UTF-8 either: never decoded
    _, obj, _ = post(client, *binary_request([], tail=bytes_elements(too_long)))
    assert "MAX_TEXT_CHARS" in obj["error"] and "data[0]" in obj["error"]
    just_over = ("好" * cfg.max_text_chars + "[MASK]").encode()  # decodable, too many characters
    _, obj, _ = post(client, *binary_request([], tail=bytes_elements(just_over)))
    assert "MAX_TEXT_CHARS" in obj["error"]
    big = bytes_elements(b"x" * cfg.max_body_bytes)
    r, obj, _ = post(client, *binary_request([], tail=big))
    assert r.status_code == 413


@pytest.mark.live
def test_a_chunked_binary_body_over_max_body_bytes_is_413(v2_server):
    """No Content-Length: the whole chunked body counts, in the protocol's error shape."""
    import http.client

    body, headers = binary_request([], tail=bytes_elements(b"x" * (1 << 20)))
    host, port = v2_server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", INFER)
        conn.putheader(HEADER, headers[HEADER])
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for i in range(0, len(body), 65536):
            chunk = body[i : i + 65536]
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
        r = conn.getresponse()
        status, got = r.status, r.read()
        assert status == 413
        check(INFER, "POST", 413, dict(r.getheaders()), got)
    finally:
        conn.close()


def test_the_server_says_it_has_the_extension(client):
    assert "binary_tensor_data" in client.get("/v2").get_json()["extensions"]


def test_binary_needs_the_api_token_too(tiny_model_dir):
    from app import create_app

    c = create_app(make_config(tiny_model_dir, api_token="t0k")).test_client()
    body, headers = binary_request(["好[MASK]"])
    assert c.post(INFER, data=body, headers=headers).status_code == 401
    headers["Authorization"] = "Bearer t0k"
    assert c.post(INFER, data=body, headers=headers).status_code == 200


def test_spoiled_binary_bodies_are_never_a_500(client):
    """Valid binary bodies cut short, with bytes flipped or a wrong header length: 200 or a
    400 in the protocol's shape, never a 500 (a fixed seed: the same bodies every run)."""
    rng = np.random.default_rng(22)
    body, headers = binary_request(TEXTS, parameters={"binary_data_output": True})
    length = int(headers[HEADER])
    for _ in range(150):
        spoiled, n = bytearray(body), length
        kind = rng.integers(3)
        if kind == 0:  # cut inside the binary part
            spoiled = spoiled[: rng.integers(length, len(body))]
        elif kind == 1:  # a few bytes of the binary part changed
            for at in rng.integers(length, len(body), size=3):
                spoiled[at] = rng.integers(256)
        else:  # a header length that is off
            n = int(rng.integers(1, len(body)))
        r, obj, _ = post(client, bytes(spoiled), {HEADER: str(n)})
        assert r.status_code in (200, 400), (r.status_code, obj)
