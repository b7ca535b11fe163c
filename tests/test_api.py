"""The JSON API on the tiny exported model: fields, masks, batches, targets, errors."""

import json
import time

import pytest
from reference import assert_ranked, assert_top_k, mask_log_probs, offerable


def post(client, body, path="/predict"):
    return client.post(path, json=body)


def pairs(candidates):
    """(token_id, score) of /predict candidates, for the reference checks."""
    return [(c["token_id"], c["score"]) for c in candidates]


def fill_nth(text, n, word):
    """``text`` with its ``n``-th [MASK] replaced by ``word``, the others kept."""
    parts = text.split("[MASK]")
    return "".join(
        p + ("" if i == len(parts) - 1 else word if i == n else "[MASK]")
        for i, p in enumerate(parts)
    )


@pytest.fixture(scope="module")
def torch_ref(tiny_torch, tiny_tokenizer):
    """``torch_ref(text)``: PyTorch's log-prob rows at the masks of ``text`` (spelt [MASK])."""
    return lambda text: mask_log_probs(tiny_torch, tiny_tokenizer, text)


@pytest.fixture(scope="module")
def allowed(tiny_tokenizer):
    return offerable(tiny_tokenizer)


def test_single_mask_fields(client, torch_ref, allowed, tiny_tokenizer):
    started = time.perf_counter()
    r = post(client, {"text": "今天天气真[MASK]啊", "top_k": 3})
    wall_ms = (time.perf_counter() - started) * 1000
    assert r.status_code == 200
    body = r.get_json()
    assert list(body) == ["success", "result", "masks", "model", "precision", "elapsed_ms"]
    assert body["success"] is True
    assert body["model"] == "tiny-random-bert" and body["precision"] == "fp32"
    # The server's own clock, inside the client's: a model run takes some time, never more.
    assert 0 < body["elapsed_ms"] <= wall_ms + 1
    assert len(body["result"]) == 3 and body["result"] == body["masks"][0]["candidates"]
    assert body["masks"] == [{"index": 0, "candidates": body["result"]}]
    (row,) = torch_ref("今天天气真[MASK]啊")
    assert_top_k(pairs(body["result"]), row, allowed, 3)
    for c in body["result"]:
        assert list(c) == ["word", "probability", "score", "token_id", "sequence"]
        assert c["probability"] == round(c["score"] * 100, 2)
        assert tiny_tokenizer.convert_ids_to_tokens(c["token_id"]) == c["word"]
        assert c["sequence"] == "今天天气真" + c["word"] + "啊"


def test_json_carries_real_characters(client):
    r = post(client, {"text": "今天天气真[MASK]啊"})
    raw = r.get_data(as_text=True)
    assert "今天天气真" in raw and "\\u" not in raw


@pytest.mark.parametrize("top_k", [1, 5, 50])
def test_scores_equal_the_model_output(client, torch_ref, allowed, top_k):
    """Default top_k is 5; every candidate's id and score is PyTorch's on the same weights."""
    body = {"text": "床前明月[MASK]，疑是地上霜。"} | ({"top_k": top_k} if top_k != 5 else {})
    got = post(client, body).get_json()["result"]
    (row,) = torch_ref("床前明月[MASK]，疑是地上霜。")
    assert_top_k(pairs(got), row, allowed, top_k)


def test_every_mask_equals_the_model_output(client, torch_ref, allowed):
    text = "[MASK]前明月光，疑是地上[MASK]。"
    body = post(client, {"text": text, "top_k": 4}).get_json()
    rows = torch_ref(text)
    assert [m["index"] for m in body["masks"]] == list(range(len(rows))) == [0, 1]
    for mask, row in zip(body["masks"], rows, strict=True):
        assert_top_k(pairs(mask["candidates"]), row, allowed, 4)


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


def test_candidates_exclude_special_unused_and_subwords(client, torch_ref, allowed):
    """The top 50 of the offerable words only: ids 0-105 and ## pieces never, "[" may."""
    body = post(client, {"text": "[MASK][MASK][MASK]", "top_k": 50}).get_json()
    for mask, row in zip(body["masks"], torch_ref("[MASK][MASK][MASK]"), strict=True):
        assert_top_k(pairs(mask["candidates"]), row, allowed, 50)
        for c in mask["candidates"]:
            assert c["token_id"] > 105 and not c["word"].startswith("##"), c["word"]


def test_batch_equals_the_model_per_text(client, torch_ref, allowed):
    texts = ["今天天气真[MASK]啊", "画蛇[MASK][MASK]，多此一举。", "我们是好朋[MASK]。"]
    batch = post(client, {"texts": texts, "top_k": 4}).get_json()
    assert list(batch) == ["success", "results", "model", "precision", "elapsed_ms"]
    assert batch["success"] is True and len(batch["results"]) == 3
    for text, got in zip(texts, batch["results"], strict=True):
        rows = torch_ref(text)
        assert list(got) == ["result", "masks"] and len(got["masks"]) == len(rows)
        assert got["result"] == got["masks"][0]["candidates"]
        for mask, row in zip(got["masks"], rows, strict=True):
            assert_top_k(pairs(mask["candidates"]), row, allowed, 4)
            for c in mask["candidates"]:
                assert c["sequence"] == fill_nth(text, mask["index"], c["word"])


def test_targets_rank_only_those(client, torch_ref, tiny_tokenizer):
    body = post(client, {"text": "今天天气真[MASK]啊", "targets": ["好", "花", "雨"]}).get_json()
    (row,) = torch_ref("今天天气真[MASK]啊")
    assert_ranked(
        pairs(body["result"]), row, tiny_tokenizer.convert_tokens_to_ids(["好", "花", "雨"])
    )
    assert sorted(c["word"] for c in body["result"]) == ["好", "花", "雨"]


@pytest.mark.parametrize(
    "targets,top_k,words",
    [
        (["A", "b", "B", "a"], 5, ["a", "b"]),  # lower-cased, then duplicates dropped
        (["好", "好", " 好 "], 5, ["好"]),  # spaces around a target are not part of it
        (["好", "花", "雨", "风", "天"], 2, ["好", "花", "雨", "风", "天"]),  # the best 2 of 5
    ],
)
def test_targets_are_lower_cased_deduplicated_and_cut_to_top_k(
    client, torch_ref, tiny_tokenizer, targets, top_k, words
):
    body = post(client, {"text": "今天天气真[MASK]啊", "targets": targets, "top_k": top_k})
    got = pairs(body.get_json()["result"])
    (row,) = torch_ref("今天天气真[MASK]啊")
    ids = tiny_tokenizer.convert_tokens_to_ids(words)
    kept = [i for i, _ in got]
    assert len(kept) == min(top_k, len(ids)) and set(kept) <= set(ids)
    assert_ranked(got, row, kept)
    # The cut keeps the best: nothing left out beats the last one kept (float tolerance).
    assert all(row[i] <= row[kept].min() + 1e-4 for i in set(ids) - set(kept))


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


def test_window_equals_the_model_on_the_window(client, predictor, torch_ref, allowed):
    """A 403-character text: the model sees the 64-token window centred on the mask."""
    text = "我" * 200 + "爱[MASK]京" + "好" * 200
    item = predictor.prepare(text)
    assert len(item.input_ids) == predictor.max_length == 64
    assert item.input_ids[0] == 101 and item.input_ids[-1] == 102
    assert item.input_ids[item.mask_positions[0]] == predictor.mask_id
    got = pairs(post(client, {"text": text}).get_json()["result"])
    # 62 tokens besides [CLS] and [SEP]: 30 or 31 of them on each side of the mask.
    windows = ["我" * a + "爱[MASK]京" + "好" * (59 - a) for a in (29, 30)]
    failures = []
    for window in windows:
        try:
            assert_top_k(got, torch_ref(window)[0], allowed, 5)
            return
        except AssertionError as exc:
            failures.append(exc)
    raise AssertionError(f"the answer is not the model's on a centred window: {failures}")


def hf_pairs(candidates):
    return [(c["token"], c["score"]) for c in candidates]


def test_hf_shape_equals_the_model(client, torch_ref, allowed, tiny_tokenizer):
    one = post(
        client, {"inputs": "今天天气真[MASK]啊", "parameters": {"top_k": 2}}, "/fill-mask"
    ).get_json()
    assert isinstance(one, list) and len(one) == 2
    assert all(list(c) == ["score", "token", "token_str", "sequence"] for c in one)
    assert_top_k(hf_pairs(one), torch_ref("今天天气真[MASK]啊")[0], allowed, 2)
    assert [c["token_str"] for c in one] == tiny_tokenizer.convert_ids_to_tokens(
        [c["token"] for c in one]
    )
    assert [c["sequence"] for c in one] == [f"今天天气真{c['token_str']}啊" for c in one]
    two = post(client, {"inputs": "[MASK]天天气真[MASK]啊"}, "/fill-mask").get_json()
    assert isinstance(two, list) and len(two) == 2
    for n, (mask, row) in enumerate(zip(two, torch_ref("[MASK]天天气真[MASK]啊"), strict=True)):
        assert_top_k(hf_pairs(mask), row, allowed, 5)
        for c in mask:
            assert c["sequence"] == fill_nth("[MASK]天天气真[MASK]啊", n, c["token_str"])


def test_hf_batch_equals_the_model(client, torch_ref, allowed):
    """``inputs`` as a list: one answer per text, each in the single-input shape."""
    texts = ["今天天气真[MASK]啊", "[MASK]前明月光，疑是地上[MASK]。", "我们是好朋[MASK]。"]
    got = post(client, {"inputs": texts, "parameters": {"top_k": 3}}, "/fill-mask").get_json()
    assert isinstance(got, list) and len(got) == 3
    for text, answer in zip(texts, got, strict=True):
        rows = torch_ref(text)
        masks = [answer] if len(rows) == 1 else answer
        assert len(masks) == len(rows)
        for n, (mask, row) in enumerate(zip(masks, rows, strict=True)):
            assert_top_k(hf_pairs(mask), row, allowed, 3)
            assert all(c["sequence"] == fill_nth(text, n, c["token_str"]) for c in mask)


def test_hf_targets_equal_the_model(client, torch_ref, tiny_tokenizer):
    body = {"inputs": "今天天气真[MASK]啊", "parameters": {"targets": ["雨", "好", "花"]}}
    got = post(client, body, "/fill-mask").get_json()
    ids = tiny_tokenizer.convert_tokens_to_ids(["雨", "好", "花"])
    assert_ranked(hf_pairs(got), torch_ref("今天天气真[MASK]啊")[0], ids)


def test_health(client):
    import os

    body = client.get("/health").get_json()
    assert body == {
        "status": "ok",
        "model": "tiny-random-bert",
        "precision": "fp32",
        "max_length": 64,
        "pid": os.getpid(),  # the test client serves in this process
        "models": [
            {"name": "tiny-random-bert", "precision": "fp32", "max_length": 64, "ready": True}
        ],
    }


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

    c = create_app(make_config(tmp_path / "none"), strict=False).test_client()
    r = post(c, {"text": "[MASK]"})
    assert r.status_code == 503 and r.get_json()["code"] == "model_unavailable"
    h = c.get("/health")
    assert h.status_code == 503 and h.get_json()["status"] == "error"


def test_internal_error_is_generic_500(app, monkeypatch):
    predictor = app.extensions["fillmask"].predictor

    def boom(*a, **k):
        raise RuntimeError("secret /internal/path detail")

    monkeypatch.setattr(predictor, "candidates", boom)
    r = app.test_client().post("/predict", json={"text": "好[MASK]"})
    assert r.status_code == 500
    assert r.get_json() == {
        "success": False,
        "error": "internal server error",
        "code": "internal_error",
    }
