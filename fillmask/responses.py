"""Response shapes: a ``FillResult`` → the JSON bodies of /predict and /fill-mask (bytes).

Bodies are bytes, made once: the cache stores them as they are sent.
"""

import json

# -- what the bodies hold, for the OpenAPI document ---------------------------------------------
# Each response object as the list of its fields, typed by name (one name per concept: ``score``
# is always a probability 0..1, ``sequence`` always the filled text).


STRING, INDEX, FLAG = {"type": "string"}, {"type": "integer", "minimum": 0}, {"type": "boolean"}
PRECISION = {"enum": ["fp32", "int8"]}
SCORE = {"type": "number", "minimum": 0, "maximum": 1}
PERCENT = {"type": "number", "minimum": 0, "maximum": 100, "description": "round(score*100, 2)"}
# What each response field is, by its name; "Name" refers to a component, "[x]" is a list.
FIELD_TYPES = {
    **dict.fromkeys("word fill pinyin explanation derivation sequence token_str".split(), STRING),
    **dict.fromkeys(
        "model model_name model_version name version platform datatype".split(), STRING
    ),
    **dict.fromkeys("index token_id token pid max_length".split(), INDEX),
    **dict.fromkeys("live ready".split(), FLAG),
    "score": SCORE,
    "probability": PERCENT,
    "log_likelihood": {"type": "number", "maximum": 0},
    "precision": PRECISION,
    "elapsed_ms": {"type": "number", "minimum": 0},
    "error": {"type": "string", "minLength": 1},
    "code": STRING,
    "id": STRING,
    "shape": {"type": "array", "items": {"type": "integer"}},
    "data": {"type": "array"},
    "extensions": {"type": "array", "items": STRING},
    "versions": {"type": "array", "items": STRING},
    "status": {"enum": ["ok", "degraded", "loading", "error", "draining"]},
    "parameters": {"type": "object"},
}
# Response objects: their fields ("?": only when asked for or when it applies), typed by name.
OBJECTS = {
    "Candidate": "word probability score token_id sequence",
    "Word": "word score probability sequence",
    "Blank": "index masks:[index] words:[Word]",
    "Choice": "word score probability log_likelihood sequence",
    "Idiom": "word fill pinyin explanation derivation score probability sequence",
    "Mask": "index candidates:[Candidate]",
    "TextResult": "result:[Candidate] masks:[Mask] blanks:[Blank]? choices:[Choice]? "
    "idioms:[Idiom]?",
    "PredictSingle": "success:true result:[Candidate] masks:[Mask] blanks:[Blank]? "
    "choices:[Choice]? idioms:[Idiom]? model precision elapsed_ms",
    "PredictBatch": "success:true results:[TextResult] model precision elapsed_ms",
    "HFCandidate": "score token token_str sequence",
    "ModelStatus": "name ready precision? max_length? error?",
    "Health": "status pid model? precision? max_length? models:[ModelStatus]",
    "Error": "success:false error code",
    "V2Error": "error",
    "V2ServerMetadata": "name version extensions",
    "V2Live": "live",
    "V2Ready": "live ready",
    "V2ModelReady": "name ready",
    "Tensor": "name datatype shape",
    "V2ModelMetadata": "name versions platform inputs:[Tensor] outputs:[Tensor]",
    "OutputTensor": "name datatype shape data? parameters?",
    "V2InferResponse": "model_name model_version id? outputs:[OutputTensor] parameters?",
}


def _ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def field_schema(spec):
    """One field of ``OBJECTS``: ``name``, ``name:[Type]``, ``name:Type``, ``name:true``."""
    name, _, kind = spec.rstrip("?").partition(":")
    if kind in ("true", "false"):
        return name, {"const": kind == "true"}
    many = kind.startswith("[")
    kind = kind.strip("[]")
    item = _ref(kind) if kind[:1].isupper() else FIELD_TYPES[kind or name]
    return name, {"type": "array", "items": item} if many else item


def objects():
    """The response objects' schemas: every listed field, nothing else."""
    out = {}
    for name, specs in OBJECTS.items():
        fields = [(spec, *field_schema(spec)) for spec in specs.split()]
        out[name] = {
            "type": "object",
            "properties": {field: schema for _, field, schema in fields},
            "required": [field for spec, field, _ in fields if not spec.endswith("?")],
            "additionalProperties": False,
        }
    one = {"type": "array", "items": _ref("HFCandidate")}
    per_mask = {"type": "array", "items": one}
    out["FillMaskResponse"] = {
        "description": "One mask: a list of candidates; several masks: a list per mask; several "
        "texts: one such answer per text (one text in a list answers as one text).",
        "type": "array",
        "items": {"anyOf": [_ref("HFCandidate"), one, per_mask]},
    }
    return out


def encode(value):
    """The service's JSON: real characters (not \\uXXXX), compact, UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def candidate_record(candidate):
    """One candidate as /predict returns it (the seed's fields plus score and token_id)."""
    return {
        "word": candidate.word,
        "probability": round(candidate.score * 100, 2),
        "score": candidate.score,
        "token_id": candidate.token_id,
        "sequence": candidate.sequence,
    }


def blank_record(blank):
    """One joint blank: its masks and its whole-word fillings, best first."""
    return {
        "index": blank.index,
        "masks": list(blank.masks),
        "words": [
            {
                "word": w.word,
                "score": w.score,
                "probability": round(w.score * 100, 2),
                "sequence": w.sequence,
            }
            for w in blank.words
        ],
    }


def choice_record(choice):
    """One ranked candidate of a multiple-choice request."""
    return {
        "word": choice.word,
        "score": choice.score,
        "probability": round(choice.score * 100, 2),
        "log_likelihood": choice.log_likelihood,
        "sequence": choice.sequence,
    }


def idiom_record(idiom):
    """One lexicon idiom written into the blank, with what a learner wants to know of it."""
    return {
        "word": idiom.word,
        "fill": idiom.fill,
        "pinyin": idiom.pinyin,
        "explanation": idiom.explanation,
        "derivation": idiom.derivation,
        "score": idiom.score,
        "probability": round(idiom.score * 100, 2),
        "sequence": idiom.sequence,
    }


def text_result(answer):
    """One text's answer: ``result`` (first mask, the seed's contract), every mask, and the
    ``blanks`` / ``choices`` / ``idioms`` keys when asked for."""
    records = [[candidate_record(c) for c in mask] for mask in answer.masks]
    out = {
        "result": records[0],
        "masks": [{"index": i, "candidates": r} for i, r in enumerate(records)],
    }
    if answer.blanks is not None:
        out["blanks"] = [blank_record(b) for b in answer.blanks]
    if answer.choices is not None:
        out["choices"] = [choice_record(c) for c in answer.choices]
    if answer.idioms is not None:
        out["idioms"] = [idiom_record(i) for i in answer.idioms]
    return out


def predict_body(request, result):
    """The /predict body for a ``text`` or a ``texts`` request, without ``elapsed_ms``.

    It ends with ``"precision":…}`` so the view appends ``elapsed_ms`` per response
    (``with_elapsed``): a cached body then still says how long this request took.
    """
    meta = {"model": result.model, "precision": result.precision}
    if request.batch:
        return encode({"success": True, "results": [text_result(t) for t in result.texts], **meta})
    return encode({"success": True, **text_result(result.texts[0]), **meta})


def with_elapsed(body, seconds):
    """``body`` (an object's JSON) with ``"elapsed_ms"`` as its last field."""
    return body[:-1] + b',"elapsed_ms":' + str(round(seconds * 1000, 2)).encode() + b"}"


def hf_body(request, result):
    """The Hugging Face fill-mask body: a list per mask; a list of those for several masks.

    A list of one text answers as one text, as transformers' ``FillMaskPipeline`` does.
    """

    def one_text(answer):
        lists = [
            [
                {"score": c.score, "token": c.token_id, "token_str": c.word, "sequence": c.sequence}
                for c in mask
            ]
            for mask in answer.masks
        ]
        return lists[0] if len(lists) == 1 else lists

    answers = [one_text(t) for t in result.texts]
    return encode(answers if request.batch and len(answers) > 1 else answers[0])
