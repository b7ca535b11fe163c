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
        "model model_name model_version name version platform datatype code id".split(), STRING
    ),
    **dict.fromkeys("index token_id token pid max_length".split(), INDEX),
    **dict.fromkeys("live ready".split(), FLAG),
    "score": SCORE,
    "probability": PERCENT,
    "log_likelihood": {"type": "number", "maximum": 0},
    "precision": PRECISION,
    "elapsed_ms": {"type": "number", "minimum": 0},
    "error": {"type": "string", "minLength": 1},
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


def ref(name):
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def parse(spec):
    """One field of ``OBJECTS`` → (name, kind, is a list, is optional). ``name`` (typed by its
    name), ``name:type``, ``name:Type`` (a component), ``name:[Type]``, ``name:true``; ``?``
    at the end: only when asked for or when it applies."""
    name, _, kind = spec.rstrip("?").partition(":")
    return name, kind.strip("[]"), kind.startswith("["), spec.endswith("?")


FIELDS = {name: [parse(spec) for spec in specs.split()] for name, specs in OBJECTS.items()}


def field_schema(name, kind, many):
    """The schema of one parsed field."""
    if kind in ("true", "false"):
        return {"const": kind == "true"}
    item = ref(kind) if kind[:1].isupper() else FIELD_TYPES[kind or name]
    return {"type": "array", "items": item} if many else item


def objects():
    """The response objects' schemas: every listed field, nothing else."""
    out = {}
    for obj, fields in FIELDS.items():
        out[obj] = {
            "type": "object",
            "properties": {name: field_schema(name, kind, many) for name, kind, many, _ in fields},
            "required": [name for name, _, _, optional in fields if not optional],
            "additionalProperties": False,
        }
    one = {"type": "array", "items": ref("HFCandidate")}
    per_mask = {"type": "array", "items": one}
    out["FillMaskResponse"] = {
        "description": "One mask: a list of candidates; several masks: a list per mask; several "
        "texts: one such answer per text (one text in a list answers as one text).",
        "type": "array",
        "items": {"anyOf": [ref("HFCandidate"), one, per_mask]},
    }
    return out


def encode(value):
    """The service's JSON: real characters (not \\uXXXX), compact, UTF-8."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def record(obj, name):
    """``obj`` as the response object ``name``: each field ``OBJECTS`` lists, read from the
    attribute of that name (a ``[Type]`` field: a list of those records); ``probability`` is
    ``score`` in percent."""
    out = {}
    for field, kind, many, _ in FIELDS[name]:
        value = round(obj.score * 100, 2) if field == "probability" else getattr(obj, field)
        out[field] = [record(item, kind) for item in value] if many and kind[0].isupper() else value
    return out


def text_result(answer):
    """One text's answer: ``result`` (first mask, the seed's contract), every mask, and the
    ``blanks`` / ``choices`` / ``idioms`` keys when asked for."""
    records = [[record(c, "Candidate") for c in mask] for mask in answer.masks]
    out = {
        "result": records[0],
        "masks": [{"index": i, "candidates": r} for i, r in enumerate(records)],
    }
    for field, kind in (("blanks", "Blank"), ("choices", "Choice"), ("idioms", "Idiom")):
        if getattr(answer, field) is not None:
            out[field] = [record(item, kind) for item in getattr(answer, field)]
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


def hf_record(c):
    """One candidate as the Hugging Face fill-mask API returns it."""
    return {"score": c.score, "token": c.token_id, "token_str": c.word, "sequence": c.sequence}


def hf_body(request, result):
    """The Hugging Face fill-mask body: a list per mask; a list of those for several masks.

    A list of one text answers as one text, as transformers' ``FillMaskPipeline`` does.
    """

    def one_text(answer):
        lists = [[hf_record(c) for c in mask] for mask in answer.masks]
        return lists[0] if len(lists) == 1 else lists

    answers = [one_text(t) for t in result.texts]
    return encode(answers if request.batch and len(answers) > 1 else answers[0])
