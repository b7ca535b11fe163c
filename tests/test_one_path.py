"""Issue 18: the seams of one request's path — chunked bodies, MAX_TOP_K below the default,
/fill-mask's one-element list, the page's context, unknown fields, □ blanks and hanzi_only."""

import http.client
import json

import numpy as np
import pytest
from conftest import make_config
from live import GunicornServer
from reference import assert_top_k, mask_log_probs, offerable

from fillmask.text import is_hanzi

MIB = 1 << 20


def chunked_post(url, path, chunks):
    """POST ``chunks`` with Transfer-Encoding: chunked (no Content-Length): (status, JSON body)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for chunk in chunks:
            conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.live
def test_chunked_bodies_over_the_limit_are_413_like_content_length_ones(tiny_model_dir):
    """A chunked body is not cut at MAX_BODY_BYTES and served: the whole body is refused."""
    prefix = b'{"text":"a[MASK]"}'
    padded = [prefix, b" " * (MIB - len(prefix)), b"junk that is not JSON"]
    long_text = [b'{"text":"' + "好".encode() * 370_000 + b'[MASK]"}']  # 1.1 MB
    with GunicornServer(tiny_model_dir, WORKERS="1") as server:
        for chunks in (padded, long_text):
            status, body = chunked_post(server.url, "/predict", chunks)
            assert status == 413 and body["code"] == "request_entity_too_large", body
        # Under the limit, chunked works as any body does.
        status, body = chunked_post(
            server.url, "/predict", [b'{"text": "', "好[MASK]".encode(), b'"}']
        )
        assert status == 200 and body["success"] is True
        status, body = chunked_post(server.url, "/v2/models/tiny-random-bert/infer", padded)
        assert status == 413


def test_max_top_k_below_five_serves_requests_without_top_k(tiny_model_dir):
    from app import create_app

    app = create_app(make_config(tiny_model_dir, max_top_k=3))
    client = app.test_client()
    r = client.post("/predict", json={"text": "今天[MASK]好"})
    assert r.status_code == 200 and len(r.get_json()["result"]) == 3
    r = client.post("/fill-mask", json={"inputs": "今天[MASK]好"})
    assert r.status_code == 200 and len(r.get_json()) == 3
    v2 = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["今天[MASK]好"]}]}
    r = client.post("/v2/models/tiny-random-bert/infer", json=v2)
    assert r.status_code == 200 and r.get_json()["outputs"][1]["shape"] == [1, 1, 3]
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    top_k = schemas["PredictRequest"]["properties"]["top_k"]
    assert top_k["default"] == 3 <= top_k["maximum"] == 3


def test_a_one_element_inputs_list_answers_as_the_pipeline_does(client, tiny_torch, tiny_tokenizer):
    """transformers' FillMaskPipeline unwraps a list of one text; a list of two stays a list."""
    from transformers import pipeline

    fill = pipeline("fill-mask", model=tiny_torch, tokenizer=tiny_tokenizer, device="cpu")
    for inputs in (["今天天气真[MASK]啊"], ["今天[MASK]好", "我[MASK]你"]):
        want = fill(inputs, top_k=5)
        got = client.post("/fill-mask", json={"inputs": inputs}).get_json()
        assert isinstance(got, list) and len(got) == len(want)
        if len(inputs) == 1:
            assert all(isinstance(c, dict) for c in got)  # [...], not [[...]]
            assert [c["token"] for c in got][:1] == [c["token"] for c in want][:1]
        else:
            assert all(isinstance(t, list) for t in got)


def test_the_page_is_given_what_it_shows_not_the_config(tiny_model_dir):
    from flask import template_rendered

    from app import create_app

    app = create_app(make_config(tiny_model_dir, api_token="page-must-not-see-this"))
    seen = []
    with template_rendered.connected_to(
        lambda sender, template, context: seen.append(context), app
    ):
        html = app.test_client().get("/").get_data(as_text=True)
    assert "page-must-not-see-this" not in html
    (context,) = seen
    assert "config" not in context  # Flask's own template variable stays Flask's config
    assert context["limits"] == {"max_masks": 16, "max_top_k": 50}
    assert context["models"] == ["tiny-random-bert"] and context["fast"] == "tiny-random-bert"


@pytest.mark.parametrize(
    "path,body,named",
    [
        ("/predict", {"text": "今天[MASK]好", "topk": 3}, "'topk'"),
        ("/fill-mask", {"inputs": "今天[MASK]好", "top_k": 3}, "'top_k'"),
        ("/fill-mask", {"inputs": "今天[MASK]好", "parameters": {"topk": 3}}, "'topk'"),
    ],
)
def test_unknown_fields_are_refused_naming_them_and_the_accepted_ones(client, path, body, named):
    r = client.post(path, json=body)
    got = r.get_json()
    assert r.status_code == 400 and got["code"] == "unknown_field"
    assert named in got["error"] and "accepted: " in got["error"] and "top_k" in got["error"]


def test_v2_refuses_unknown_fields_in_the_protocols_shape(client):
    tensor = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["好[MASK]"], "x": 1}
    r = client.post("/v2/models/tiny-random-bert/infer", json={"inputs": [tensor]})
    assert r.status_code == 400 and set(r.get_json()) == {"error"}
    r = client.post(
        "/v2/models/tiny-random-bert/infer",
        json={"inputs": [{k: v for k, v in tensor.items() if k != "x"}], "parameters": {"topk": 3}},
    )
    assert r.status_code == 400 and "topk" in r.get_json()["error"]


def test_v2_paths_with_a_version_and_its_404s(client):
    tensor = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["好[MASK]"]}
    plain = client.post("/v2/models/tiny-random-bert/infer", json={"inputs": [tensor]})
    versioned = client.post(
        "/v2/models/tiny-random-bert/versions/1/infer", json={"inputs": [tensor]}
    )
    assert versioned.status_code == 200
    assert versioned.get_json()["outputs"] == plain.get_json()["outputs"]
    assert client.get("/v2/models/tiny-random-bert/versions/1/ready").status_code == 200
    assert client.get("/v2/models/tiny-random-bert/versions/1").get_json()["versions"] == ["1"]
    assert client.get("/v2/").get_json() == client.get("/v2").get_json()
    for path in ("/v2/models/tiny-random-bert/versions/2", "/v2/nope"):
        r = client.get(path)
        assert r.status_code == 404 and set(r.get_json()) == {"error"}


def test_a_square_blank_is_a_mask_only_when_asked(client):
    r = client.post("/predict", json={"text": "画蛇□□，多此一举"})
    assert r.status_code == 400 and r.get_json()["code"] == "no_mask"
    r = client.post("/predict", json={"text": "画蛇□□，多此一举", "blank": "□", "joint": True})
    body = r.get_json()
    assert r.status_code == 200 and len(body["masks"]) == 2
    first = body["masks"][0]["candidates"][0]
    assert first["sequence"] == "画蛇" + first["word"] + "□，多此一举"
    word = body["blanks"][0]["words"][0]
    assert word["sequence"] == "画蛇" + word["word"] + "，多此一举"
    r = client.post("/predict", json={"text": "画蛇□□", "blank": "*"})
    assert r.status_code == 400


@pytest.fixture(scope="module")
def hanzi(tiny_tokenizer):
    """Offerable tokens written in CJK ideographs only (unicodedata's names, independently)."""
    import unicodedata

    words = tiny_tokenizer.convert_ids_to_tokens(list(range(len(tiny_tokenizer))))
    ideograph = [all(unicodedata.name(c, "").startswith("CJK") for c in w) for w in words]
    allowed = offerable(tiny_tokenizer) & np.array(ideograph)
    assert (offerable(tiny_tokenizer) & ~allowed).sum() > 10  # the vocabulary has others too
    return allowed


@pytest.mark.parametrize("text", ["今天天气真[MASK]", "[MASK]", "我们[MASK]去看电影。"])
def test_hanzi_only_candidates_equal_pytorch_over_the_ideographs(
    client, tiny_torch, tiny_tokenizer, hanzi, text
):
    r = client.post("/predict", json={"text": text, "top_k": 10, "hanzi_only": True})
    (row,) = mask_log_probs(tiny_torch, tiny_tokenizer, text)
    got = [(c["token_id"], c["score"]) for c in r.get_json()["result"]]
    assert_top_k(got, row, hanzi, 10)
    assert all(is_hanzi(ch) for c in r.get_json()["result"] for ch in c["word"])


def test_hanzi_only_reaches_whole_words_choices_fill_mask_and_v2(client, tiny_tokenizer, hanzi):
    text = "画蛇[MASK][MASK]，多此一举。"
    body = {"text": text, "joint": True, "hanzi_only": True, "top_k": 10}
    words = client.post("/predict", json=body).get_json()["blanks"][0]["words"]
    assert words and all(is_hanzi(ch) for w in words for ch in w["word"])
    chars = tiny_tokenizer.convert_ids_to_tokens(np.flatnonzero(hanzi)[:4].tolist())
    latin = [t for t in tiny_tokenizer.get_vocab() if t.isascii() and t.isalnum()][:2]
    two = [chars[0] + chars[1], chars[2] + chars[3]]
    choice = {"text": text, "candidates": [two[0], "".join(latin), two[1]], "hanzi_only": True}
    answer = client.post("/predict", json=choice).get_json()
    assert "choices" in answer, answer
    ranked = answer["choices"]
    assert sorted(c["word"] for c in ranked) == sorted(two)
    hf = {"inputs": "今天[MASK]好", "parameters": {"hanzi_only": True, "top_k": 20}}
    assert all(is_hanzi(c["token_str"]) for c in client.post("/fill-mask", json=hf).get_json())
    tensor = {"name": "text", "datatype": "BYTES", "shape": [1], "data": ["今天[MASK]好"]}
    v2 = {"inputs": [tensor], "parameters": {"hanzi_only": True, "top_k": 20}}
    out = client.post("/v2/models/tiny-random-bert/infer", json=v2).get_json()["outputs"][0]
    (masks,) = [json.loads(t) for t in out["data"]]
    assert all(is_hanzi(c["word"]) for c in masks[0])
