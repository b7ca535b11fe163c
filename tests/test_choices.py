"""Multiple-choice scoring (pseudo-log-likelihood) against a PyTorch reference, and its errors."""

import numpy as np
import pytest
from conftest import make_config
from reference import pll

from fillmask import choices
from fillmask.errors import FillMaskError

# Idioms whose characters are all in the tiny model's generated vocabulary.
IDIOMS = ["添足", "弹琴", "成功", "补牢", "生巧"]


@pytest.mark.parametrize(
    "text,candidates",
    [
        ("画蛇[MASK][MASK]，多此一举。", IDIOMS),
        ("画蛇[MASK]，多此一举。", ["添足", "足", "添足了"]),  # blank expanded per word
        ("[MASK][MASK][MASK][MASK]是一个成语。", ["守株待兔", "画蛇添足", "马到成功", "亡羊补牢"]),
    ],
)
def test_scores_equal_the_pytorch_reference(client, tiny_torch, tiny_tokenizer, text, candidates):
    body = client.post("/predict", json={"text": text, "candidates": candidates}).get_json()
    got = body["choices"]
    want = {w: pll(tiny_torch, tiny_tokenizer, text, w) for w in candidates}
    ranked = sorted(candidates, key=lambda w: -want[w])
    assert sorted(c["word"] for c in got) == sorted(candidates)
    for c in got:
        assert c["log_likelihood"] == pytest.approx(want[c["word"]], abs=1e-3)
    # Best first; two candidates within float error of each other may come in either order.
    assert all(
        want[a["word"]] >= want[b["word"]] - 1e-3 for a, b in zip(got, got[1:], strict=False)
    )
    lls = np.array([want[w] for w in ranked])
    expected = np.exp(lls - lls.max()) / np.exp(lls - lls.max()).sum()
    assert [c["score"] for c in got] == pytest.approx(expected.tolist(), abs=1e-3)
    assert sum(c["score"] for c in got) == pytest.approx(1.0, abs=1e-9)


def test_response_shape(client):
    text = "画蛇[MASK][MASK]，多此一举。"
    plain = client.post("/predict", json={"text": text, "top_k": 2}).get_json()
    body = client.post("/predict", json={"text": text, "top_k": 2, "candidates": IDIOMS}).get_json()
    assert body["success"] is True
    assert body["result"] == plain["result"] and body["masks"] == plain["masks"]
    assert "blanks" not in body
    assert sorted(c["word"] for c in body["choices"]) == sorted(IDIOMS)
    for c in body["choices"]:
        assert list(c) == ["word", "score", "probability", "log_likelihood", "sequence"]
        assert c["probability"] == round(c["score"] * 100, 2)
        assert c["sequence"] == "画蛇" + c["word"] + "，多此一举。"
        assert c["log_likelihood"] < 0
    lls = [c["log_likelihood"] for c in body["choices"]]
    assert lls == sorted(lls, reverse=True)


def test_candidates_with_texts_and_joint(client, tiny_torch, tiny_tokenizer):
    texts = ["画蛇[MASK][MASK]。", "他[MASK][MASK]了。"]
    body = client.post(
        "/predict", json={"texts": texts, "candidates": ["添足", "成功"], "joint": True}
    ).get_json()
    assert body["success"] is True
    for text, result in zip(texts, body["results"], strict=True):
        assert {c["word"] for c in result["choices"]} == {"添足", "成功"}
        for c in result["choices"]:
            assert c["sequence"] == text.replace("[MASK][MASK]", c["word"])
            want = pll(tiny_torch, tiny_tokenizer, text, c["word"])
            assert c["log_likelihood"] == pytest.approx(want, abs=1e-3)
        assert result["blanks"][0]["masks"] == [0, 1]


def test_repeated_and_padded_candidates_are_merged(client):
    body = client.post(
        "/predict", json={"text": "画蛇[MASK][MASK]", "candidates": ["添足", " 添足 ", "成功"]}
    ).get_json()
    assert sorted(c["word"] for c in body["choices"]) == ["成功", "添足"]


def test_cost_is_one_row_per_candidate_character(predictor, monkeypatch):
    calls = []
    run = predictor.infer
    monkeypatch.setattr(predictor, "infer", lambda items: calls.append(len(items)) or run(items))
    item = predictor.prepare("画蛇[MASK][MASK]。")
    words = ["添足", "守株待兔", "足", "马到成功了"]
    monkeypatch.setattr(predictor, "batch_max", 4)  # BATCH_MAX: windows per run
    choices.score(predictor, [item], words, ["text"])
    assert sum(calls) == sum(len(w) for w in words) == 12
    assert calls == [4, 4, 4]


def test_every_row_has_exactly_one_mask(predictor, monkeypatch):
    seen = []
    run = predictor.infer
    monkeypatch.setattr(predictor, "infer", lambda items: seen.extend(items) or run(items))
    choices.score(predictor, [predictor.prepare("[MASK]前明月光")], ["床", "床前"], ["text"])
    assert [w.num_masks for w in seen] == [1, 1, 1]
    bed, front = predictor.word_ids["床"], predictor.word_ids["前"]
    assert list(seen[1].input_ids[1:3]) == [predictor.mask_id, front]  # "床前": 床 masked
    assert list(seen[2].input_ids[1:3]) == [bed, predictor.mask_id]  # "床前": 前 masked


# -- errors -------------------------------------------------------------------------------------
def error(client, body):
    r = client.post("/predict", json=body)
    assert r.status_code == 400, r.get_json()
    out = r.get_json()
    assert out["success"] is False and set(out) == {"success", "error", "code"}
    return out


@pytest.mark.parametrize(
    "text",
    [
        "[MASK]前明月光，疑是地上[MASK]。",
        "画蛇[MASK] [MASK]",  # a space splits the run
        "[MASK][MASK]前[MASK]",
    ],
)
def test_more_than_one_blank_is_refused(client, text):
    out = error(client, {"text": text, "candidates": ["添足"]})
    assert out["code"] == "invalid_blank" and "exactly one blank" in out["error"]


def test_the_bad_text_of_a_batch_is_named(client):
    out = error(client, {"texts": ["画蛇[MASK][MASK]", "[MASK]和[MASK]"], "candidates": ["添足"]})
    assert out["code"] == "invalid_blank" and out["error"].startswith("texts[1] ")


@pytest.mark.parametrize(
    "value",
    [
        "添足",
        [],
        {},
        3,
        [1],
        [None],
        [""],
        ["   "],
        ["添足", ["点睛"]],
        ["一二三四五六七八九"],
        [f"词{i}" for i in range(21)],
    ],
)
def test_malformed_candidates(client, value):
    out = error(client, {"text": "画蛇[MASK][MASK]", "candidates": value})
    assert out["code"] == "invalid_candidates" and "1 to 20" in out["error"]


def test_characters_outside_the_vocabulary(client):
    out = error(client, {"text": "画蛇[MASK][MASK]", "candidates": ["添足", "龘龘"]})
    assert out["code"] == "invalid_candidates"
    assert "'龘龘'" in out["error"] and "'龘'" in out["error"]


def test_candidates_and_targets_conflict(client):
    out = error(client, {"text": "画蛇[MASK][MASK]", "candidates": ["添足"], "targets": ["添"]})
    assert out["code"] == "conflicting_fields"


def test_limits_are_inclusive(client):
    twenty = [IDIOMS[i % 5][0] + IDIOMS[i // 5][1] for i in range(20)]
    assert len(set(twenty)) == 20
    body = client.post(
        "/predict", json={"text": "画蛇[MASK][MASK]", "candidates": twenty}
    ).get_json()
    assert len(body["choices"]) == 20
    body = client.post(
        "/predict", json={"text": "画蛇[MASK]", "candidates": ["画蛇添足一石二鸟"]}
    ).get_json()
    assert body["choices"][0]["score"] == 1.0


def test_scorer_refuses_unknown_characters_before_running(predictor, monkeypatch):
    monkeypatch.setattr(predictor, "infer", lambda items: pytest.fail("model was run"))
    with pytest.raises(FillMaskError) as exc:
        choices.score(predictor, [predictor.prepare("画蛇[MASK]")], ["龘"], ["text"])
    assert exc.value.code == "invalid_candidates"


def test_cache_key_includes_the_new_fields(tiny_model_dir):
    from app import create_app

    client = create_app(make_config(tiny_model_dir, cache_size=8)).test_client()
    text = "画蛇[MASK][MASK]"
    first = client.post("/predict", json={"text": text}).get_json()
    joint = client.post("/predict", json={"text": text, "joint": True}).get_json()
    one = client.post("/predict", json={"text": text, "candidates": ["添足"]}).get_json()
    two = client.post("/predict", json={"text": text, "candidates": ["成功"]}).get_json()
    assert "blanks" not in first and "blanks" in joint and "choices" not in joint
    assert [c["word"] for c in one["choices"]] == ["添足"]
    assert [c["word"] for c in two["choices"]] == ["成功"]


@pytest.mark.parametrize(
    "body,rows",
    [
        (
            {
                "texts": ["画蛇[MASK][MASK]"] * 2,
                "candidates": [f"画蛇添足一石{i:02d}" for i in range(20)],
            },
            2 * 20 * 8,
        ),
        ({"texts": ["[MASK]" * 16] * 4, "joint": True}, 4 * 76),
        (
            {
                "texts": ["[MASK][MASK]"] * 8,
                "joint": True,
                "candidates": ["画蛇添足"] + [f"一石二鸟{i:02d}" for i in range(4)],
            },
            8 * (4 + 4 * 6) + 8 * 6,
        ),
    ],
)
def test_requests_costing_too_many_rows_are_refused(client, predictor, monkeypatch, body, rows):
    monkeypatch.setattr(predictor, "infer", lambda items: pytest.fail("model was run"))
    out = error(client, body)
    assert out["code"] == "batch_too_large"
    assert f"need {rows} model rows; at most 256" in out["error"]


def test_a_single_text_at_every_limit_fits_the_budget(client):
    r = client.post(
        "/predict",
        json={
            "text": "[MASK]" * 16,
            "joint": True,
            "top_k": 50,
            "candidates": [f"画蛇添足一石{i:02d}" for i in range(20)],
        },
    )
    assert r.status_code == 200
    body = r.get_json()
    assert len(body["choices"]) == 20 and len(body["blanks"][0]["words"]) == 50
    assert all(len(w["word"]) == 16 for w in body["blanks"][0]["words"])


@pytest.mark.live
def test_live_gunicorn_serves_both_modes(tiny_model_dir):
    import requests
    from live import GunicornServer

    with GunicornServer(tiny_model_dir, WORKERS="1") as server:
        r = requests.post(
            f"{server.url}/predict",
            timeout=30,
            json={"text": "画蛇[MASK][MASK]，多此一举。", "joint": True, "candidates": IDIOMS},
        )
        bad = requests.post(
            f"{server.url}/predict",
            timeout=30,
            json={"text": "[MASK]和[MASK]", "candidates": IDIOMS},
        )
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert "画蛇" in r.text and len(body["blanks"][0]["words"]) == 5
    assert sorted(c["word"] for c in body["choices"]) == sorted(IDIOMS)
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_blank"
