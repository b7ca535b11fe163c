"""The OpenAPI 3.1 description of the service, served at ``GET /openapi.json``.

Built from the running ``Config`` so the documented limits (``top_k``, batch size, targets) are
the ones the server enforces. ``tests/test_openapi.py`` validates real responses against it, so
a field added to a response needs its line here.
"""

from flask import Blueprint, current_app, jsonify

from . import openapi_v2
from .metrics_setup import access_mode

bp = Blueprint("openapi", __name__)

OPENAPI_VERSION = "3.1.0"
JSON = "application/json"
# Every error code each status can carry (the ``code`` field of an error body).
ERROR_CODES = {
    400: [
        "invalid_json",
        "invalid_body",
        "missing_text",
        "invalid_type",
        "empty_text",
        "empty_batch",
        "batch_too_large",
        "text_too_long",
        "response_too_large",
        "conflicting_fields",
        "no_mask",
        "too_many_masks",
        "invalid_mask",
        "masks_too_far_apart",
        "invalid_top_k",
        "invalid_targets",
        "invalid_target",
        "invalid_blank",
        "invalid_candidates",
    ],
    401: ["unauthorized"],
    403: ["origin_not_allowed"],
    404: ["not_found"],
    405: ["method_not_allowed"],
    413: ["request_entity_too_large"],
    415: ["unsupported_media_type"],
    500: ["internal_error"],
    503: ["model_not_ready", "model_unavailable"],
    504: ["timeout"],
}
ERROR_TEXT = {
    400: "The request was refused; `error` says what was wrong and what is accepted.",
    401: "API_TOKEN is set and the request has no or a wrong `Authorization: Bearer` token.",
    403: "CORS preflight from an origin not listed in CORS_ORIGINS.",
    404: "No such endpoint.",
    405: "Method not allowed on this endpoint.",
    413: "The body is larger than MAX_BODY_BYTES.",
    415: "The body is not sent as `Content-Type: application/json`.",
    500: "A bug in the service; details are only in the server log.",
    503: "The model is not loaded (still loading, or it failed to load).",
    504: "The request was not done within REQUEST_TIMEOUT (server busy, or a hung model run).",
}
API_ERRORS = (400, 401, 413, 415, 500, 503, 504)
# The mask spellings the service accepts (fillmask/text.py), for generators and readers.
MASK_PATTERN = r"[\[［]\s*[Mm][Aa][Ss][Kk]\s*[\]］]"
NULL = {"type": "null"}


def ref(name):
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties, required=None, extra=False):
    """An object schema; ``required`` defaults to every property."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": extra,
    }


def array(items, **limits):
    return {"type": "array", "items": items, **limits}


def json_body(schema, description):
    return {"description": description, "content": {JSON: {"schema": schema}}}


def error_responses(statuses):
    """``responses`` entries for error statuses, each pointing at its component."""
    return {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in statuses}


def schemas(config):
    """Component schemas of requests and responses, with the configured limits."""
    text = {
        "type": "string",
        "minLength": 1,
        "maxLength": config.max_text_chars,
        "pattern": MASK_PATTERN,
        "description": "A sentence with one or more masks: [MASK], [mask] or ［MASK］.",
    }
    texts = array(text, minItems=1, maxItems=config.max_texts)
    top_k = {"type": "integer", "minimum": 1, "maximum": config.max_top_k, "default": 5}
    targets = {
        "oneOf": [
            {"type": "string", "minLength": 1},
            array({"type": "string", "minLength": 1}, minItems=1, maxItems=config.max_targets),
            NULL,
        ],
        "description": "Single tokens of the vocabulary to rank instead of all words.",
    }
    score = {"type": "number", "minimum": 0, "maximum": 1}
    probability = {
        "type": "number",
        "minimum": 0,
        "maximum": 100,
        "description": "round(score * 100, 2)",
    }
    string = {"type": "string"}
    candidate = obj(
        {
            "word": string,
            "probability": probability,
            "score": score,
            "token_id": {"type": "integer", "minimum": 0},
            "sequence": string,
        }
    )
    blank_word = obj(
        {"word": string, "score": score, "probability": probability, "sequence": string}
    )
    blank = obj(
        {
            "index": {"type": "integer", "minimum": 0},
            "masks": array({"type": "integer", "minimum": 0}, minItems=1),
            "words": array(blank_word),
        }
    )
    choice = obj(
        {
            "word": string,
            "score": score,
            "probability": probability,
            "log_likelihood": {"type": "number", "maximum": 0},
            "sequence": string,
        }
    )
    text_result = {
        "result": array(ref("Candidate"), description="The first mask's candidates."),
        "masks": array(
            obj({"index": {"type": "integer", "minimum": 0}, "candidates": array(ref("Candidate"))})
        ),
        "blanks": array(ref("Blank"), description='Only with "joint": true.'),
        "choices": array(ref("Choice"), description='Only with "candidates".'),
    }
    meta = {
        "model": string,
        "precision": {"type": "string", "enum": ["fp32", "int8"]},
        "elapsed_ms": {"type": "number", "minimum": 0},
    }
    success = {"type": "boolean", "const": True}
    hf_candidate = obj(
        {
            "score": score,
            "token": {"type": "integer", "minimum": 0},
            "token_str": string,
            "sequence": string,
        }
    )
    hf_mask = array(ref("HFCandidate"))
    return {
        "PredictRequest": {
            "type": "object",
            "properties": {
                "text": text,
                "texts": texts,
                "top_k": top_k,
                "targets": targets,
                "joint": {"type": ["boolean", "null"], "default": False},
                "candidates": {
                    "oneOf": [
                        array(
                            {"type": "string", "minLength": 1, "maxLength": 8},
                            minItems=1,
                            maxItems=20,
                        ),
                        NULL,
                    ]
                },
            },
            "oneOf": [{"required": ["text"]}, {"required": ["texts"]}],
            "description": "Fields not listed here are ignored; null means absent.",
        },
        "FillMaskRequest": {
            "type": "object",
            "properties": {
                "inputs": {"oneOf": [text, texts]},
                "parameters": {
                    "type": ["object", "null"],
                    "properties": {"top_k": top_k, "targets": targets},
                },
            },
            "required": ["inputs"],
        },
        "Candidate": candidate,
        "Blank": blank,
        "Choice": choice,
        "TextResult": obj(text_result, required=["result", "masks"]),
        "PredictSingle": obj(
            {"success": success, **text_result, **meta},
            required=["success", "result", "masks", *meta],
        ),
        "PredictBatch": obj({"success": success, "results": array(ref("TextResult")), **meta}),
        "HFCandidate": hf_candidate,
        "FillMaskResponse": array(
            {"anyOf": [ref("HFCandidate"), hf_mask, array(hf_mask)]},
            description="One mask: a list of candidates; several masks: "
            "a list per mask; `inputs` as a list: one such "
            "answer per text.",
        ),
        "HealthOk": obj(
            {
                "status": {"const": "ok"},
                "model": string,
                "precision": meta["precision"],
                "max_length": {"type": "integer"},
                "pid": {"type": "integer"},
            }
        ),
        "HealthNotReady": obj(
            {"status": {"enum": ["loading", "error", "draining"]}, "pid": {"type": "integer"}}
        ),
        "Error": obj(
            {
                "success": {"type": "boolean", "const": False},
                "error": {"type": "string", "minLength": 1},
                "code": {"type": "string"},
            }
        ),
    }


def error_components():
    """One response component per error status, its ``code`` limited to that status's codes."""
    out = {}
    for status, codes in ERROR_CODES.items():
        schema = {"allOf": [ref("Error"), {"properties": {"code": {"enum": codes}}}]}
        response = json_body(schema, ERROR_TEXT[status])
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "description": 'Bearer realm="fillmask"',
                    "schema": {"type": "string"},
                }
            }
        out[f"Error{status}"] = response
    return out


def metrics_path(config):
    """``GET /metrics`` as ``METRICS`` serves it (absent when off)."""
    mode = access_mode(config)
    if mode == "off":
        return {}
    text = {"text/plain": {"schema": {"type": "string"}}}
    responses = {"200": {"description": "Prometheus text format.", "content": text}}
    operation = {"summary": "Prometheus metrics, summed over all workers", "operationId": "metrics"}
    if mode == "token":
        operation["security"] = [{"bearerAuth": []}]
        responses.update(error_responses([401]))
    return {"/metrics": {"get": {**operation, "responses": responses}}}


def paths():
    """Every endpoint with its request body and every response it can give."""
    api_security = [{}, {"bearerAuth": []}]
    predict_ok = json_body(
        {"oneOf": [ref("PredictSingle"), ref("PredictBatch")]},
        "Candidates for every mask (`results`: one per text of `texts`).",
    )
    return {
        "/predict": {
            "post": {
                "summary": "Fill every [MASK] of a text or of each of a list of texts",
                "operationId": "predict",
                "security": api_security,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": ref("PredictRequest")}},
                },
                "responses": {"200": predict_ok, **error_responses(API_ERRORS)},
            }
        },
        "/fill-mask": {
            "post": {
                "summary": "The Hugging Face Inference API fill-mask contract",
                "operationId": "fill_mask",
                "security": api_security,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": ref("FillMaskRequest")}},
                },
                "responses": {
                    "200": json_body(ref("FillMaskResponse"), "Candidates per mask."),
                    **error_responses(API_ERRORS),
                },
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness and readiness",
                "operationId": "health",
                "responses": {
                    "200": json_body(ref("HealthOk"), "The model is loaded."),
                    "503": json_body(
                        ref("HealthNotReady"),
                        "The model is loading or failed to load, or the worker is draining.",
                    ),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": json_body({"type": "object"}, "The OpenAPI document.")},
            }
        },
        "/": {
            "get": {
                "summary": "The fill-in page",
                "operationId": "page",
                "responses": {
                    "200": {
                        "description": "HTML page (scripts from /static only).",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


def build_spec(config):
    """The whole OpenAPI document for ``config``."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "填空 fill-mask service",
            "version": "1.0.0",
            "description": "Chinese BERT fill-mask. Every error is "
            '`{"success": false, "error": "...", "code": "..."}`; '
            "unknown paths give 404 and wrong methods 405 in that shape. "
            "CORS is closed unless CORS_ORIGINS lists origins; a preflight "
            "(OPTIONS) from another origin gets 403 origin_not_allowed.",
        },
        "paths": {**paths(), **metrics_path(config), **openapi_v2.paths()},
        "components": {
            "schemas": {**schemas(config), **openapi_v2.schemas(config)},
            "responses": error_components(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Needed for /predict and /fill-mask only when API_TOKEN is set.",
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI document for this server's configuration."""
    spec = current_app.extensions.get("openapi")
    if spec is None:
        spec = current_app.extensions["openapi"] = build_spec(
            current_app.extensions["fillmask"].config
        )
    return jsonify(spec)
