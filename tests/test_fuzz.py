"""Fuzzing: hypothesis against the request handler, schemathesis against a live Gunicorn.

Whatever arrives, the answer is never a 5xx, is JSON, and matches the OpenAPI document.
FUZZ_EXAMPLES (default 150) bounds the hypothesis examples per fuzz test, SCHEMATHESIS_EXAMPLES
(default 40) the examples per operation of the live run: small enough for the fast tests; the
test command's whole-suite run (scripts/test.sh, and so CI) asks for 400 and 100.
"""

import collections
import json
import os
import re

import pytest
import schemathesis
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from openapi_check import SpecChecker

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
MASKS = [
    "[MASK]",
    "[mask]",
    "［MASK］",
    "[Mask]",
    "［mask］",
    "[ MASK ]",
    "[MASK",
    "MASK]",
    "[[MASK]]",
]
# Characters that break naive text handling: controls, bidi and zero-width marks, combining
# accents, emoji (astral, with joiners and variation selectors), full-width and CJK.
AWKWARD = [
    "\x00",
    "\x07",
    "\t",
    "\n",
    "\r",
    "\x1b",
    "\x7f",
    "\u0085",
    "\u200b",
    "\u200d",
    "\u200e",
    "\u200f",
    "\u202a",
    "\u202e",
    "\u2066",
    "\u2069",
    "\u0301",
    "\ufeff",
    "\ufffd",
    "\ufe0f",
    "😀",
    "👩‍👩‍👧",
    "🇨🇳",
    "𠀀",
    "\U0010ffff",
    "ｈ",
    "。",
    "，",
    "好",
    "天",
    "中",
    "a",
    " ",
    "\u3000",
    "#",
    "##",
    "[",
    "]",
    "［",
    "］",
    "[CLS]",
    "[SEP]",
    "[UNK]",
    "[PAD]",
    "\\",
    '"',
    "\ud800",
    "\udfff",
    "\ud83d",
]
any_char = st.characters(codec=None, exclude_categories=())  # surrogates included
piece = st.one_of(st.sampled_from(MASKS), st.sampled_from(AWKWARD), st.text(any_char, max_size=8))
masked_text = st.lists(piece, max_size=30).map("".join)
json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(any_char, max_size=20),
    masked_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
top_k = st.one_of(st.integers(-3, 60), json_value)
words = st.lists(
    st.one_of(st.sampled_from(["好", "天气", "添足", "[MASK]", "", " "]), masked_text), max_size=25
)
# Mostly-valid bodies reach the model, joint decoding and candidate scoring (at least one mask).
valid_text = st.tuples(
    st.lists(piece, max_size=12), st.sampled_from(MASKS[:6]), st.lists(piece, max_size=12)
).map(lambda t: "".join(t[0]) + t[1] + "".join(t[2]))
known_words = st.lists(
    st.sampled_from(["好", "天", "花", "雨", "好天", "花雨", "天天好"]), min_size=1, max_size=6
)
options = st.fixed_dictionaries({}, optional={"top_k": st.integers(1, 50), "joint": st.booleans()})
choice = st.one_of(
    st.just({}),
    known_words.map(lambda w: {"targets": w}),
    known_words.map(lambda w: {"candidates": w}),
)
valid_predict = st.builds(
    lambda texts, opts, extra: {**texts, **opts, **extra},
    st.one_of(
        valid_text.map(lambda t: {"text": t}),
        st.lists(valid_text, min_size=1, max_size=4).map(lambda ts: {"texts": ts}),
    ),
    options,
    choice,
)
wild_predict = st.fixed_dictionaries(
    {},
    optional={
        "text": st.one_of(masked_text, json_value),
        "texts": st.one_of(st.lists(masked_text, max_size=6), json_value),
        "top_k": top_k,
        "targets": st.one_of(words, json_value),
        "joint": st.one_of(st.booleans(), json_value),
        "candidates": st.one_of(words, json_value),
        "extra": json_value,
    },
)
predict_body = st.one_of(valid_predict, wild_predict)
hf_body = st.fixed_dictionaries(
    {},
    optional={
        "inputs": st.one_of(valid_text, st.lists(valid_text, max_size=6), masked_text, json_value),
        "parameters": st.one_of(
            st.fixed_dictionaries({}, optional={"top_k": top_k, "targets": words}), json_value
        ),
    },
)


@pytest.fixture(scope="module")
def checker(app):
    return SpecChecker(app.test_client().get("/openapi.json").get_json())


def post(client, path, data, content_type="application/json"):
    return client.post(path, data=data, content_type=content_type)


def assert_sound(checker, response, path, sent=None):
    """No 5xx; the answer matches the spec; a body the server accepted matches it too."""
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    body = checker.check(response, path)
    event(f"{response.status_code} {body.get('code', '') if isinstance(body, dict) else ''}")
    if response.status_code == 200 and sent is not None:
        checker.validate_request(path, "POST", sent)


def encode(body):
    # ensure_ascii: lone surrogates travel as \ud800 escapes, as a browser's JSON.stringify sends
    return json.dumps(body, ensure_ascii=True, allow_nan=True)


@FUZZ
@given(body=predict_body)
@example(body={"text": "[MASK]" * 16, "top_k": 50, "joint": True})
@example(body={"text": "[MASK]" * 17})
@example(body={"text": "[MASK]"})
@example(body={"text": "[MASK]好[MASK]", "candidates": ["好"]})
@example(body={"text": "好[MASK][MASK]", "candidates": ["添足", "好", "天气好"], "joint": True})
@example(body={"text": "ab[MASK]cd[mask]ef", "joint": True})
@example(body={"texts": ["\u202e[MASK]\u202c", "😀[MASK]😀", "\x00[MASK]\x00"]})
@example(body={"text": "\ud800[MASK]\udfff"})
def test_fuzz_predict(client, checker, body):
    assert_sound(checker, post(client, "/predict", encode(body)), "/predict", body)


@FUZZ
@given(body=hf_body)
def test_fuzz_fill_mask(client, checker, body):
    assert_sound(checker, post(client, "/fill-mask", encode(body)), "/fill-mask", body)


@FUZZ
@given(
    data=st.one_of(
        st.binary(max_size=200),
        st.text(any_char, max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
    ),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/x-www-form-urlencoded",
            None,
        ]
    ),
    path=st.sampled_from(["/predict", "/fill-mask"]),
)
def test_fuzz_raw_bytes(client, checker, data, content_type, path):
    assert_sound(checker, post(client, path, data, content_type), path)


@pytest.mark.parametrize(
    "text,code",
    [
        pytest.param("好" * 100_000 + "[MASK]", None, id="mask_at_end"),
        pytest.param("[MASK]" + "好" * 100_000, None, id="mask_at_start"),
        pytest.param("好" * 50_000 + "[MASK]" + "好" * 50_000, None, id="mask_in_middle"),
        pytest.param("a" * 100_000 + "[MASK]", None, id="one_latin_word"),
        pytest.param(
            "好" * 50_000 + "[MASK]" + "好" * 50_000 + "[MASK]",
            "masks_too_far_apart",
            id="masks_far_apart",
        ),
        pytest.param("[MASK]" + "\u200f" * 100_000, None, id="rtl_marks"),
        pytest.param("😀" * 100_000 + "[MASK]", None, id="emoji"),
    ],
)
def test_100k_character_texts(client, checker, long_client, text, code):
    # Refused by default (MAX_TEXT_CHARS), before tokenising.
    r = post(client, "/predict", json.dumps({"text": text}, ensure_ascii=False).encode("utf-8"))
    body = checker.check(r, "/predict")
    assert r.status_code == 400 and body["code"] == "text_too_long"
    # Allowed by an operator who raised the limits: one mask anywhere is answered (the window
    # moves to it), every sequence is the whole text with the mask filled; two masks further
    # apart than the window are refused with their own code.
    r = post(long_client, "/predict", json.dumps({"text": text}, ensure_ascii=False).encode())
    body = checker.check(r, "/predict")
    if code is not None:
        assert r.status_code == 400 and body["code"] == code
        return
    assert r.status_code == 200, body
    assert len(body["result"]) == 5
    start = text.index("[MASK]")
    for c in body["result"]:
        assert c["sequence"] == text[:start] + c["word"] + text[start + 6 :]


@pytest.fixture(scope="module")
def long_client(tiny_model_dir):
    """An app whose text and answer limits let 100 000-character texts through."""
    from conftest import make_config

    from app import create_app

    config = make_config(
        tiny_model_dir,
        max_text_chars=200_000,
        max_response_bytes=100_000_000,
        max_body_bytes=1 << 22,
    )
    return create_app(config).test_client()


@pytest.mark.parametrize("depth", [10, 500, 5_000, 100_000])
def test_deeply_nested_json(client, checker, depth):
    for path in ("/predict", "/fill-mask"):
        nested = '{"text": ' + "[" * depth + '"[MASK]"' + "]" * depth + "}"
        r = post(client, path, nested)
        assert r.status_code == 400
        assert checker.check(r, path)["code"] in (
            "invalid_json",
            "invalid_type",
            "missing_text",
            "unknown_field",
        )


@pytest.mark.parametrize(
    "text,sequence_of_first",
    [
        ("[MASK]", "{w}"),
        ("[MASK][MASK][MASK]", "{w}[MASK][MASK]"),
        ("ab[MASK]cd", "ab{w}cd"),
        ("中[mask]国", "中{w}国"),
        ("[MASK]好", "{w}好"),
        ("好［MASK］", "好{w}"),
        ("\u202e[MASK]\u202c", "\u202e{w}\u202c"),
        ("\x00[MASK]\x00", "\x00{w}\x00"),
        ("😀[MASK]👩‍👩‍👧", "😀{w}👩‍👩‍👧"),
    ],
)
def test_masks_at_edges_and_inside_words(client, checker, text, sequence_of_first):
    body = checker.check(post(client, "/predict", encode({"text": text})), "/predict")
    assert body["success"] is True
    for candidate in body["result"]:
        assert candidate["sequence"] == sequence_of_first.format(w=candidate["word"])


def test_lone_surrogates_come_back_as_replacement_characters(client, checker):
    r = post(client, "/predict", encode({"text": "\ud800[MASK]\udc00"}))
    body = checker.check(r, "/predict")
    word = body["result"][0]["word"]
    assert body["result"][0]["sequence"] == "\ufffd" + word + "\ufffd"


# -- schemathesis against a live Gunicorn -------------------------------------------------------


@pytest.fixture(scope="module")
def live_schema(tiny_model_dir):
    """The live server's own /openapi.json, loaded by schemathesis."""
    from live import GunicornServer

    with GunicornServer(
        tiny_model_dir, WORKERS="1", THREADS="4", CACHE_SIZE="0", ACCESS_LOG="1"
    ) as server:
        yield schemathesis.openapi.from_url(server.url + "/openapi.json")
        server.stop()
        log = server.output()
        statuses = re.findall(r'" (\d{3}) ', log)
        print(
            f"\nschemathesis: {len(statuses)} requests, statuses "
            f"{dict(sorted(collections.Counter(statuses).items()))}"
        )
        assert not [s for s in statuses if s.startswith("5")]
        assert "Traceback" not in log


live = schemathesis.pytest.from_fixture("live_schema")
LIVE_CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.negative_data_rejection,
]


@pytest.mark.live
@live.parametrize()
@settings(
    max_examples=int(os.environ.get("SCHEMATHESIS_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_schemathesis_live(case):
    case.call_and_validate(checks=LIVE_CHECKS, timeout=30)
