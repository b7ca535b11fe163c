"""The JSON API on the tiny exported model: fields, masks, batches, targets, errors."""

import json

import numpy as np
import pytest


def post(client, body, path="/predict"):
    return client.post(path, json=body)


def test_single_mask_fields(client, predictor):
    r = post(client, {"text": "今天天气真[MASK]啊", "top_k": 3})
    assert r.status_code == 200
    body = r.get_json()
    assert body["success"] is True
    assert body["model"] == "tiny-random-bert" and body["precision"] == "fp32"
    assert body["elapsed_ms"] >= 0
    assert len(body["result"]) == 3 and body["result"] == body["masks"][0]["candidates"]
    scores = [c["score"] for c in body["result"]]
    assert scores == sorted(scores, reverse=True)
    for c in body["result"]:
        assert c["probability"] == round(c["score"] * 100, 2)
        assert predictor.words[c["token_id"]] == c["word"]
        assert c["sequence"] == "今天天气真" + c["word"] + "啊"


def test_json_carries_real_characters(client):
    r = post(client, {"text": "今天天气真[MASK]啊"})
    raw = r.get_data(as_text=True)
    assert "今天天气真" in raw and "\\u" not in raw


def test_scores_equal_the_model_output(client, predictor):
    item = predictor.prepare("床前明月[MASK]，疑是地上霜。")
    (rows,) = predictor.log_probs([item])
    row = rows[0] + predictor.exclusion_bias
    best = np.argsort(-row)[:5]
    body = post(client, {"text": "床前明月[MASK]，疑是地上霜。"}).get_json()
    assert [c["token_id"] for c in body["result"]] == best.tolist()
    assert body["result"][0]["score"] == pytest.approx(float(np.exp(row[best[0]])), rel=1e-5)


@pytest.mark.parametrize("spelling", ["[MASK]", "[mask]", "［MASK］", "[Mask]", "［mask］"])
def test_mask_spellings(client, spelling):
    body = post(client, {"text": f"我爱北京天安{spelling}。"}).get_json()
    assert body["success"]
    assert all(c["sequence"] == "我爱北京天安" + c["word"] + "。" for c in body["result"])


def test_several_masks_keep_the_others_in_the_sequence(client):
    text = "[MASK]前明月光，疑是地上［MASK］。"
    body = post(client, {"text": text, "top_k": 2}).get_json()
    assert [m["index"] for m in body["masks"]] == [0, 1]
    first, second = body["masks"][0]["candidates"], body["masks"][1]["candidates"]
    assert first[0]["sequence"] == first[0]["word"] + "前明月光，疑是地上［MASK］。"
    assert second[0]["sequence"] == "[MASK]前明月光，疑是地上" + second[0]["word"] + "。"


def test_spacing_and_case_kept(client):
    text = "Hello  World [MASK] 好"
    body = post(client, {"text": text}).get_json()
    assert all(c["sequence"] == "Hello  World " + c["word"] + " 好" for c in body["result"])


def test_excluded_ids_rule():
    from fillmask.predictor import excluded_ids

    words = ["[PAD]", "[unused7]", "[MASK]", "<S>", "<T>", "##er", "", "好", "[", "]", "a"]
    assert excluded_ids(words).tolist() == [
        True,
        True,
        True,
        True,
        True,
        True,
        True,
        False,
        False,
        False,
        False,
    ]


def test_candidates_exclude_special_unused_and_subwords(client, predictor):
    body = post(client, {"text": "[MASK][MASK][MASK]", "top_k": 50}).get_json()
    for mask in body["masks"]:
        for c in mask["candidates"]:
            assert not c["word"].startswith(("[", "##")), c["word"]


def test_batch_matches_single_requests(client):
    texts = ["今天天气真[MASK]啊", "画蛇[MASK][MASK]，多此一举。", "我们是好朋[MASK]。"]
    batch = post(client, {"texts": texts, "top_k": 4}).get_json()
    assert batch["success"] and len(batch["results"]) == 3
    for text, got in zip(texts, batch["results"], strict=True):
        alone = post(client, {"text": text, "top_k": 4}).get_json()
        assert [c["token_id"] for c in got["result"]] == [c["token_id"] for c in alone["result"]]
        for a, b in zip(got["masks"], alone["masks"], strict=True):
            for x, y in zip(a["candidates"], b["candidates"], strict=True):
                assert x["score"] == pytest.approx(y["score"], abs=1e-5)


def test_targets_rank_only_those(client):
    body = post(client, {"text": "今天天气真[MASK]啊", "targets": ["好", "花", "雨"]}).get_json()
    assert sorted(c["word"] for c in body["result"]) == ["好", "花", "雨"]
    scores = [c["score"] for c in body["result"]]
    assert scores == sorted(scores, reverse=True)
    top = post(client, {"text": "今天天气真[MASK]啊", "top_k": 50}).get_json()["result"]
    by_word = {c["word"]: c["score"] for c in top}
    for c in body["result"]:
        if c["word"] in by_word:
            assert c["score"] == pytest.approx(by_word[c["word"]], rel=1e-5)


def test_long_text_is_windowed_around_the_masks(app, tiny_model_dir):
    from conftest import make_config

    from app import create_app

    short = create_app(make_config(tiny_model_dir, max_length=16)).test_client()
    text = "我" * 100 + "爱北京天安[MASK]。" + "好" * 100
    body = post(short, {"text": text}).get_json()
    assert body["success"]
    assert body["result"][0]["sequence"] == text.replace("[MASK]", body["result"][0]["word"])
    far = post(short, {"text": "[MASK]" + "我" * 40 + "[MASK]"}).get_json()
    assert far["code"] == "masks_too_far_apart"


def test_window_equals_the_model_on_the_window(predictor):
    text = "我" * 200 + "爱[MASK]京" + "好" * 200
    item = predictor.prepare(text)
    assert len(item.input_ids) == predictor.max_length
    assert item.input_ids[0] == 101 and item.input_ids[-1] == 102
    assert item.input_ids[item.mask_positions[0]] == predictor.mask_id
    # centred: as much context on each side
    left = item.mask_positions[0] - 1
    right = len(item.input_ids) - 2 - item.mask_positions[0]
    assert abs(left - right) <= 1


def test_hf_shape(client):
    one = post(
        client, {"inputs": "今天天气真[MASK]啊", "parameters": {"top_k": 2}}, "/fill-mask"
    ).get_json()
    assert isinstance(one, list) and len(one) == 2
    assert set(one[0]) == {"score", "token", "token_str", "sequence"}
    two = post(client, {"inputs": "[MASK]天天气真[MASK]啊"}, "/fill-mask").get_json()
    assert isinstance(two, list) and len(two) == 2 and isinstance(two[0], list)


def test_health(client):
    body = client.get("/health").get_json()
    assert body["status"] == "ok" and body["max_length"] == 64 and body["pid"] > 0


@pytest.mark.parametrize(
    "body,status,code",
    [
        ("{", 400, "invalid_json"),
        ("[1, 2]", 400, "invalid_body"),
        ('{"text": 5}', 400, "invalid_type"),
        ('{"text": ""}', 400, "empty_text"),
        ('{"text": "   "}', 400, "empty_text"),
        ("{}", 400, "missing_text"),
        ('{"text": "没有掩码"}', 400, "no_mask"),
        ('{"text": "[MASK]", "top_k": 0}', 400, "invalid_top_k"),
        ('{"text": "[MASK]", "top_k": 51}', 400, "invalid_top_k"),
        ('{"text": "[MASK]", "top_k": "5"}', 400, "invalid_top_k"),
        ('{"text": "[MASK]", "top_k": true}', 400, "invalid_top_k"),
        ('{"texts": []}', 400, "empty_batch"),
        ('{"texts": "[MASK]"}', 400, "invalid_type"),
        ('{"text": "[MASK]", "texts": ["[MASK]"]}', 400, "conflicting_fields"),
        ('{"text": "[MASK]", "targets": []}', 400, "invalid_targets"),
        ('{"text": "[MASK]", "targets": ["不在词表里的词"]}', 400, "invalid_target"),
        ('{"text": "' + "[MASK]" * 17 + '"}', 400, "too_many_masks"),
    ],
)
def test_bad_input(client, body, status, code):
    r = client.post("/predict", data=body, content_type="application/json")
    assert r.status_code == status
    got = r.get_json()
    assert got["success"] is False and got["code"] == code and len(got["error"]) > 10


def test_batch_too_large(client):
    r = post(client, {"texts": ["[MASK]"] * 33})
    assert r.status_code == 400 and r.get_json()["code"] == "batch_too_large"


def test_error_in_one_text_names_it(client):
    r = post(client, {"texts": ["好[MASK]", "no mask here"]})
    assert r.status_code == 400 and "texts[1]" in r.get_json()["error"]


def test_not_json_is_415(client):
    r = client.post("/predict", data="text=[MASK]")
    assert r.status_code == 415 and r.get_json()["code"] == "unsupported_media_type"


def test_body_over_limit_is_413(client, app):
    big = json.dumps({"text": "好" * (app.config["MAX_CONTENT_LENGTH"] // 2) + "[MASK]"})
    r = client.post("/predict", data=big, content_type="application/json")
    assert r.status_code == 413 and r.get_json()["code"] == "request_entity_too_large"


def test_404_and_405_are_json(client):
    assert client.get("/nope").get_json()["code"] == "not_found"
    r = client.get("/predict")
    assert r.status_code == 405 and r.get_json()["code"] == "method_not_allowed"


def test_missing_model_is_503(tmp_path):
    from conftest import make_config

    from app import create_app

    c = create_app(make_config(tmp_path / "none", strict=False)).test_client()
    r = post(c, {"text": "[MASK]"})
    assert r.status_code == 503 and r.get_json()["code"] == "model_unavailable"
    h = c.get("/health")
    assert h.status_code == 503 and h.get_json()["status"] == "error"


def test_internal_error_is_generic_500(app, monkeypatch):
    predictor = app.extensions["fillmask"].predictor

    def boom(*a, **k):
        raise RuntimeError("secret /internal/path detail")

    monkeypatch.setattr(predictor, "predict", boom)
    r = app.test_client().post("/predict", json={"text": "好[MASK]"})
    assert r.status_code == 500
    assert r.get_json() == {
        "success": False,
        "error": "internal server error",
        "code": "internal_error",
    }
