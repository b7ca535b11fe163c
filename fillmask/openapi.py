"""The OpenAPI 3.1 description of the service, served at ``GET /openapi.json``.

Made from the declarations themselves: the request models that validate (``requests.Shapes``
for the running ``Config``, ``v2.InferRequest``), response models below (what ``responses``
writes; tests/test_openapi.py validates real responses against them) and the error codes of
``errors.ERROR_CODES``. Nothing here is a second description of a request.
"""

from typing import Literal

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, ConfigDict, Field, RootModel
from pydantic.json_schema import models_json_schema

from . import v2
from .errors import ERROR_CODES
from .metrics_setup import access_mode
from .requests import without_null_defaults

bp = Blueprint("openapi", __name__)

JSON = "application/json"
ERROR_TEXT = {
    400: "The request was refused; `error` says what was wrong and what is accepted.",
    401: "API_TOKEN is set and the request has no or a wrong `Authorization: Bearer` token.",
    403: "CORS preflight from an origin not listed in CORS_ORIGINS.",
    404: "No such endpoint, or no model of that name (or version).",
    405: "Method not allowed on this endpoint.",
    413: "The body is larger than MAX_BODY_BYTES (chunked bodies too).",
    415: "The body is not sent as `Content-Type: application/json`.",
    500: "A bug in the service; details are only in the server log.",
    503: "The model is not loaded (still loading, or it failed to load).",
    504: "The request was not done within REQUEST_TIMEOUT (server busy, or a hung model run).",
}
API_ERRORS = (400, 401, 404, 413, 415, 500, 503, 504)
Score = Field(ge=0, le=1)
Percent = Field(ge=0, le=100, description="round(score * 100, 2)")


class Out(BaseModel):
    """A response object: every field documented, nothing else sent."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=without_null_defaults)


class Candidate(Out):
    word: str
    probability: float = Percent
    score: float = Score
    token_id: int = Field(ge=0)
    sequence: str


class Word(Out):
    word: str
    score: float = Score
    probability: float = Percent
    sequence: str


class Blank(Out):
    index: int = Field(ge=0)
    masks: list[int] = Field(min_length=1)
    words: list[Word]


class Choice(Out):
    word: str
    score: float = Score
    probability: float = Percent
    log_likelihood: float = Field(le=0)
    sequence: str


class Idiom(Out):
    word: str
    fill: str
    pinyin: str
    explanation: str
    derivation: str
    score: float = Score
    probability: float = Percent
    sequence: str


class Mask(Out):
    index: int = Field(ge=0)
    candidates: list[Candidate]


class TextResult(Out):
    result: list[Candidate] = Field(description="The first mask's candidates.")
    masks: list[Mask]
    blanks: list[Blank] = Field(None, description='Only with "joint": true.')
    choices: list[Choice] = Field(None, description='Only with "candidates".')
    idioms: list[Idiom] = Field(None, description='Only with "idioms": true.')


class Meta(Out):
    model: str
    precision: Literal["fp32", "int8"]
    elapsed_ms: float = Field(ge=0)


class PredictSingle(TextResult, Meta):
    success: Literal[True]


class PredictBatch(Meta):
    success: Literal[True]
    results: list[TextResult]


class HFCandidate(Out):
    score: float = Score
    token: int = Field(ge=0)
    token_str: str
    sequence: str


class FillMaskResponse(RootModel):
    """One mask: a list of candidates; several masks: a list per mask; several texts: one such
    answer per text (a list of one text answers as one text, as transformers' pipeline)."""

    root: list[HFCandidate] | list[list[HFCandidate]] | list[list[list[HFCandidate]]]


class ModelStatus(Out):
    name: str
    ready: bool
    precision: Literal["fp32", "int8"] = None
    max_length: int = None
    error: str = None


class Health(Out):
    status: Literal["ok", "degraded", "loading", "error", "draining"]
    pid: int
    model: str = None
    precision: Literal["fp32", "int8"] = None
    max_length: int = None
    models: list[ModelStatus]


class Error(Out):
    success: Literal[False]
    error: str = Field(min_length=1)
    code: str


class V2Error(Out):
    error: str = Field(min_length=1)


class V2ServerMetadata(Out):
    name: str
    version: str
    extensions: list[str]


class V2Live(Out):
    live: bool


class V2Ready(V2Live):
    ready: bool


class V2ModelReady(Out):
    name: str
    ready: bool


class Tensor(Out):
    name: str
    datatype: str
    shape: list[int]


class V2ModelMetadata(Out):
    name: str
    versions: list[str]
    platform: str
    inputs: list[Tensor]
    outputs: list[Tensor]


class OutputTensor(Tensor):
    name: Literal[tuple(v2.OUTPUTS)]
    datatype: Literal["BYTES", "INT64", "FP32"]
    data: list


class V2InferResponse(Out):
    model_name: str
    model_version: str
    id: str = None
    outputs: list[OutputTensor]


RESPONSES = (PredictSingle, PredictBatch, FillMaskResponse, Health, Error, V2Error)
RESPONSES += (V2ServerMetadata, V2Live, V2Ready, V2ModelReady, V2ModelMetadata, V2InferResponse)


def ref(name):
    """A reference to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


def body(schema, description):
    return {"description": description, "content": {JSON: {"schema": schema}}}


def schemas(shapes):
    """Component schemas of every request and response, with the configured limits."""
    models = [(m, "validation") for m in (shapes.PredictRequest, shapes.FillMaskRequest)]
    models += [(v2.InferRequest, "validation")] + [(m, "serialization") for m in RESPONSES]
    keys, top = models_json_schema(models, ref_template="#/components/schemas/{model}")
    return top["$defs"]


def errors(statuses, v2_shape=False):
    """``responses`` entries for error statuses (v2: the protocol's error object)."""
    if v2_shape:
        return {str(s): body(ref("V2Error"), ERROR_TEXT[s]) for s in statuses}
    return {str(s): {"$ref": f"#/components/responses/Error{s}"} for s in statuses}


def error_components():
    """One response component per error status, its ``code`` limited to that status's codes."""
    out = {}
    for status, codes in ERROR_CODES.items():
        schema = {"allOf": [ref("Error"), {"properties": {"code": {"enum": list(codes)}}}]}
        out[f"Error{status}"] = body(schema, ERROR_TEXT[status])
    out["Error401"]["headers"] = {
        "WWW-Authenticate": {"description": 'Bearer realm="fillmask"', "schema": {"type": "string"}}
    }
    return out


def operation(op, summary, responses, request=None, secured=False, parameters=()):
    """One operation object."""
    out = {"summary": summary, "operationId": op, "responses": responses}
    if request:
        out["requestBody"] = {"required": True, "content": {JSON: {"schema": ref(request)}}}
    if secured:
        out["security"] = [{}, {"bearerAuth": []}]
    if parameters:
        out["parameters"] = [
            {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
            for p in parameters
        ]
    return out


def paths(config):
    """Every endpoint with its request body and every response it can give."""
    predict_ok = body(
        {"oneOf": [ref("PredictSingle"), ref("PredictBatch")]},
        "Candidates for every mask (`results`: one per text of `texts`).",
    )
    out = {
        "/predict": {
            "post": operation(
                "predict",
                "Fill every [MASK] of a text or of each of a list of texts",
                {"200": predict_ok, **errors(API_ERRORS)},
                "PredictRequest",
                True,
            )
        },
        "/fill-mask": {
            "post": operation(
                "fill_mask",
                "The Hugging Face Inference API fill-mask contract",
                {
                    "200": body(ref("FillMaskResponse"), "Candidates per mask."),
                    **errors(API_ERRORS),
                },
                "FillMaskRequest",
                True,
            )
        },
        "/health": {
            "get": operation(
                "health",
                "Liveness and readiness",
                {
                    "200": body(
                        ref("Health"),
                        "The models are loaded (degraded: one failed, the others serve).",
                    ),
                    "503": body(ref("Health"), "Loading, failed to load, or draining."),
                },
            )
        },
        "/openapi.json": {
            "get": operation(
                "openapi",
                "This document",
                {"200": body({"type": "object"}, "The OpenAPI document.")},
            )
        },
        "/": {
            "get": operation(
                "page",
                "The fill-in page",
                {
                    "200": {
                        "description": "HTML page (scripts from /static only).",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
    }
    mode = access_mode(config)
    if mode != "off":
        text = {"text/plain": {"schema": {"type": "string"}}}
        metrics = operation(
            "metrics",
            "Prometheus metrics, summed over all workers",
            {"200": {"description": "Prometheus text format.", "content": text}},
        )
        if mode == "token":
            metrics["security"] = [{"bearerAuth": []}]
            metrics["responses"].update(errors([401]))
        out["/metrics"] = {"get": metrics}
    meta = {"200": body(ref("V2ServerMetadata"), "Name and version.")}
    out["/v2"] = {"get": operation("v2_server_metadata", "v2 server metadata", meta)}
    out["/v2/"] = {"get": operation("v2_server_metadata_slash", "v2 server metadata", meta)}
    out["/v2/health/live"] = {
        "get": operation(
            "v2_live", "v2 liveness", {"200": body(ref("V2Live"), "The process answers.")}
        )
    }
    out["/v2/health/ready"] = {
        "get": operation(
            "v2_ready",
            "v2 readiness (Kubernetes readinessProbe)",
            {
                "200": body(ref("V2Ready"), "The models are loaded and the worker not draining."),
                "503": body(ref("V2Ready"), "Loading, failed, or draining after SIGTERM."),
            },
        )
    }
    for base, params in (
        ("/v2/models/{name}", ("name",)),
        ("/v2/models/{name}/versions/{version}", ("name", "version")),
    ):
        suffix = "_version" if len(params) > 1 else ""
        out[base] = {
            "get": operation(
                "v2_model_metadata" + suffix,
                "v2 model metadata",
                {
                    "200": body(ref("V2ModelMetadata"), "Inputs and outputs."),
                    **errors((404, 503), True),
                },
                parameters=params,
            )
        }
        out[base + "/ready"] = {
            "get": operation(
                "v2_model_ready" + suffix,
                "v2 model readiness",
                {
                    "200": body(ref("V2ModelReady"), "Ready."),
                    "503": body(ref("V2ModelReady"), "Not loaded, or draining."),
                    **errors((404,), True),
                },
                parameters=params,
            )
        }
        out[base + "/infer"] = {
            "post": operation(
                "v2_infer" + suffix,
                "v2 inference: BYTES texts in, candidates, token ids and scores out",
                {
                    "200": body(ref("V2InferResponse"), "The wanted output tensors."),
                    **errors((400, 401, 404, 413, 415, 500, 503, 504), True),
                },
                "InferRequest",
                True,
                params,
            )
        }
    return out


def build_spec(service):
    """The whole OpenAPI document for ``service``'s configuration."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "填空 fill-mask service",
            "version": "1.0.0",
            "description": "Chinese BERT fill-mask. Every error is "
            '`{"success": false, "error": "...", "code": "..."}` (under /v2: the protocol\'s '
            '`{"error": "..."}`); unknown paths give 404 and wrong methods 405 in that shape. '
            "CORS is closed unless CORS_ORIGINS lists origins; a preflight (OPTIONS) from "
            "another origin gets 403 origin_not_allowed.",
        },
        "paths": paths(service.config),
        "components": {
            "schemas": schemas(service.shapes),
            "responses": error_components(),
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Needed for the inference endpoints only when API_TOKEN is set.",
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI document for this server's configuration (built once per app)."""
    spec = current_app.extensions.get("openapi")
    if spec is None:
        spec = current_app.extensions["openapi"] = build_spec(current_app.extensions["fillmask"])
    return jsonify(spec)
