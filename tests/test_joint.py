"""Joint decoding of whole-word blanks against a straightforward PyTorch reference."""

import numpy as np
import pytest
from reference import assert_same_ranking

from fillmask import joint

TEXTS = [
    "画蛇[MASK][MASK]，多此一举。",
    "[MASK][MASK][MASK][MASK]是一个成语。",
    "今天[MASK][MASK]真好，我们去[MASK][MASK]吧。",
    "我爱[MASK]京天安门，[MASK][MASK][MASK]。",
]

BEAM = 5  # JOINT_BEAM's default (fillmask/config.py)


def reference_decode(model, tokenizer, text, excluded, top_k, beam):
    """The decoding rule written plainly: one PyTorch forward per state, no batching."""
    import torch

    ids = tokenizer(text)["input_ids"]
    positions = [i for i, t in enumerate(ids) if t == tokenizer.mask_token_id]
    runs = []
    for p in positions:
        if runs and runs[-1][-1] == p - 1:
            runs[-1].append(p)
        else:
            runs.append([p])

    def log_probs(filled):
        row_ids = list(ids)
        for p, t in filled.items():
            row_ids[p] = t
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([row_ids])).logits[0].double()
        out = torch.log_softmax(logits, dim=-1).numpy()
        out[:, excluded] = -np.inf
        return out

    blanks = []
    for run in runs:
        states = [(0.0, {})]
        for step in range(len(run)):
            width = top_k if step == len(run) - 1 else beam
            expanded = []
            for score, filled in states:
                out = log_probs(filled)
                open_positions = [p for p in run if p not in filled]
                best = max(open_positions, key=lambda p: out[p].max())
                for t in np.argsort(-out[best], kind="stable")[:width]:
                    expanded.append((score + out[best][t], {**filled, best: int(t)}))
            unique = {}
            for score, filled in expanded:
                key = frozenset(filled.items())
                if key not in unique or score > unique[key][0]:
                    unique[key] = (score, filled)
            states = sorted(unique.values(), key=lambda s: -s[0])[:width]
        blanks.append(
            [
                ("".join(tokenizer.convert_ids_to_tokens([f[p] for p in run])), float(np.exp(s)))
                for s, f in states
            ]
        )
    return blanks


@pytest.mark.parametrize("text", TEXTS)
def test_joint_decoding_equals_the_pytorch_reference(predictor, tiny_torch, tiny_tokenizer, text):
    (got,) = joint.decode(predictor, [predictor.prepare(text)], top_k=5, beam=BEAM)
    want = reference_decode(tiny_torch, tiny_tokenizer, text, predictor.excluded, 5, BEAM)
    assert len(got) == len(want)
    for blank, expected in zip(got, want, strict=True):
        assert_same_ranking([(w.word, w.score) for w in blank.words], expected)


def test_one_call_per_step_with_the_beam_batched(predictor, monkeypatch):
    calls = []
    run = predictor.infer

    def counting(items):
        calls.append(len(items))
        return run(items)

    monkeypatch.setattr(predictor, "infer", counting)
    joint.decode(
        predictor, [predictor.prepare("[MASK][MASK][MASK][MASK]是一个成语。")], top_k=3, beam=BEAM
    )
    assert len(calls) == 4  # one call per character
    assert calls[0] == 1 and all(1 < n <= BEAM for n in calls[1:])


def test_blanks_of_several_texts_share_each_step(predictor, monkeypatch):
    calls = []
    run = predictor.infer
    monkeypatch.setattr(predictor, "infer", lambda items: calls.append(len(items)) or run(items))
    prepared = [predictor.prepare(t) for t in ("画蛇[MASK][MASK]。", "[MASK]前明月光[MASK][MASK]")]
    joint.decode(predictor, prepared, top_k=3, beam=BEAM)
    assert calls[0] == 3 and len(calls) == 2  # 3 blanks, longest has 2 masks


def test_chunk_caps_the_windows_per_run(predictor, monkeypatch):
    calls = []
    run = predictor.infer
    monkeypatch.setattr(predictor, "infer", lambda items: calls.append(len(items)) or run(items))
    monkeypatch.setattr(predictor, "batch_max", 2)  # BATCH_MAX: windows per run
    joint.decode(predictor, [predictor.prepare("[MASK][MASK][MASK]。")], top_k=2, beam=5)
    assert max(calls) <= 2 and sum(calls) == 1 + 5 + 5


def test_words_are_distinct_ranked_and_rebuild_the_text(predictor):
    text = "[MASK]前明月光，疑是[MASK][MASK]霜。"
    (blanks,) = joint.decode(predictor, [predictor.prepare(text)], top_k=10, beam=BEAM)
    assert [b.masks for b in blanks] == [(0,), (1, 2)]
    for blank in blanks:
        words = [w.word for w in blank.words]
        scores = [w.score for w in blank.words]
        assert len(words) == 10 and len(set(words)) == 10
        assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1
    assert all(w.sequence == "[MASK]前明月光，疑是" + w.word + "霜。" for w in blanks[1].words)
    assert all(w.sequence == w.word + "前明月光，疑是[MASK][MASK]霜。" for w in blanks[0].words)
    for w in blanks[1].words:
        assert all(not predictor.excluded[t] for t in w.token_ids)
        assert "".join(predictor.words[t] for t in w.token_ids) == w.word


def test_a_single_mask_blank_equals_the_per_mask_candidates(predictor):
    text = "今天天气真[MASK]啊"
    item = predictor.prepare(text)
    (blanks,) = joint.decode(predictor, [item], top_k=5, beam=BEAM)
    (per_mask,) = predictor.candidates(item, predictor.log_probs([item])[0], top_k=5)
    assert [w.word for w in blanks[0].words] == [c.word for c in per_mask]
    assert [w.score for w in blanks[0].words] == pytest.approx(
        [c.score for c in per_mask], rel=1e-6
    )


def test_the_score_is_the_product_along_the_path(predictor):
    item = predictor.prepare("画蛇[MASK][MASK]。")
    (blanks,) = joint.decode(predictor, [item], top_k=1, beam=BEAM)
    best = blanks[0].words[0]
    (first_rows,) = predictor.log_probs([item])
    scored = first_rows + predictor.exclusion_bias
    first = int(np.argmax(scored.max(axis=1)))  # the more confident position
    other = 1 - first
    (second_rows,) = predictor.log_probs([item.with_tokens({first: best.token_ids[first]})])
    expected = np.exp(
        first_rows[first][best.token_ids[first]] + second_rows[0][best.token_ids[other]]
    )
    assert best.score == pytest.approx(float(expected), rel=1e-5)


# -- through the API ----------------------------------------------------------------------------
def test_api_joint_adds_blanks_and_keeps_masks(client):
    text = "画蛇[MASK][MASK]，多此一举，[MASK]。"
    plain = client.post("/predict", json={"text": text, "top_k": 3}).get_json()
    body = client.post("/predict", json={"text": text, "top_k": 3, "joint": True}).get_json()
    assert body["success"] is True
    assert body["result"] == plain["result"] and body["masks"] == plain["masks"]
    assert "blanks" not in plain
    assert [(b["index"], b["masks"]) for b in body["blanks"]] == [(0, [0, 1]), (1, [2])]
    for blank in body["blanks"]:
        assert len(blank["words"]) == 3
        for w in blank["words"]:
            assert w["probability"] == round(w["score"] * 100, 2)
    first = body["blanks"][0]["words"][0]
    assert first["sequence"] == "画蛇" + first["word"] + "，多此一举，[MASK]。"
    assert len(first["word"]) == 2
    assert [c["word"] for c in body["blanks"][1]["words"]] == [
        c["word"] for c in body["masks"][2]["candidates"]
    ]


def test_api_joint_with_texts(client, predictor, tiny_torch, tiny_tokenizer):
    texts = ["画蛇[MASK][MASK]。", "[MASK]前明月光"]
    body = client.post("/predict", json={"texts": texts, "joint": True, "top_k": 2}).get_json()
    assert [len(r["blanks"]) for r in body["results"]] == [1, 1]
    assert body["results"][0]["blanks"][0]["masks"] == [0, 1]
    assert body["results"][1]["blanks"][0]["masks"] == [0]
    for text, result in zip(texts, body["results"], strict=True):
        (want,) = reference_decode(tiny_torch, tiny_tokenizer, text, predictor.excluded, 2, BEAM)
        words = result["blanks"][0]["words"]
        assert_same_ranking([(w["word"], w["score"]) for w in words], want)


def test_api_joint_false_is_the_default_shape(client):
    body = client.post("/predict", json={"text": "画蛇[MASK][MASK]", "joint": False}).get_json()
    assert body["success"] and "blanks" not in body and "choices" not in body


@pytest.mark.parametrize("value", ["yes", 1, 0, "false", [True], {"on": True}])
def test_api_joint_must_be_a_boolean(client, value):
    r = client.post("/predict", json={"text": "画蛇[MASK][MASK]", "joint": value})
    assert r.status_code == 400
    body = r.get_json()
    assert body["success"] is False and body["code"] == "invalid_type"
    assert "joint" in body["error"]


def test_concurrent_requests_batch_together_and_answer_the_same(app, predictor, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from conftest import hold_first_run

    bodies = [
        {"text": "画蛇[MASK][MASK]，多此一举。", "joint": True},
        {"text": "[MASK][MASK][MASK][MASK]是一个很长很长的成语。", "joint": True},
        {"text": "他[MASK][MASK]了。", "candidates": ["添足", "成功", "生巧"]},
        {"texts": ["[MASK]前明月光", "守株[MASK][MASK]"], "joint": True, "top_k": 2},
    ]

    def ask(body):
        body = app.test_client().post("/predict", json=body).get_json()
        body.pop("elapsed_ms")
        return body

    batcher = predictor.infer.__self__
    start = batcher.batches
    serial = [ask(b) for b in bodies]
    runs_alone = batcher.batches - start  # one after the other: nothing to share a run with
    # The first concurrent run waits until two more requests' runs are queued behind it.
    held = hold_first_run(monkeypatch, batcher, lambda running, queued: queued >= 2)
    start = batcher.batches
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, bodies * 4))
    assert held
    # Four times the requests in fewer than four times the runs: runs were shared.
    assert batcher.batches - start < 4 * runs_alone
    for i, body in enumerate(together):
        assert_close(body, serial[i % len(bodies)])


def assert_close(got, want):
    """Equal structure and strings; numbers within 1e-5 (padding in a shared batch may move the
    last float digits)."""
    if isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-5)
    elif isinstance(want, dict):
        assert list(got) == list(want)
        for key in want:
            if key != "probability":  # rounded from score: may differ by 0.01
                assert_close(got[key], want[key])
    elif isinstance(want, list):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert_close(g, w)
    else:
        assert got == want
