"""The OpenAPI 3.1 description of the service, served at ``GET /openapi.json``.

Requests: the pydantic models that validate them (``requests.Shapes`` for the running
``Config``, ``v2.InferRequest``), so the document states exactly what the server enforces.
Responses: ``responses.objects()``, each object the list of its fields typed by name; tests
validate real responses against them. Error codes: ``errors.ERROR_CODES``.
"""

import re

from flask import Blueprint, current_app, jsonify
from pydantic.json_schema import models_json_schema

from . import v2
from .errors import ERROR_CODES
from .metrics_setup import access_mode
from .responses import STRING, objects, ref

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
V2_GET_ERRORS = (404, 503)  # v2 metadata and readiness; v2 inference has API_ERRORS


def schemas(shapes):
    """Component schemas of every request and response, with the configured limits."""
    models = [shapes.PredictRequest, shapes.FillMaskRequest, v2.InferRequest]
    _, top = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    return {**top["$defs"], **objects()}


def content(schema):
    """``{media type: schema}`` as OpenAPI content; a component name ("A|B": either) is JSON."""
    if isinstance(schema, str):
        refs = [ref(name) for name in schema.split("|")]
        schema = {JSON: refs[0] if len(refs) == 1 else {"oneOf": refs}}
    return {media: {"schema": one} for media, one in schema.items()}


def body(schema, description):
    """A response: ``schema`` as ``content`` takes it."""
    return {"description": description, "content": content(schema)}


def error_components():
    """One response component per error status, its ``code`` limited to that status's codes."""
    out = {}
    for status, codes in ERROR_CODES.items():
        schema = {"allOf": [ref("Error"), {"properties": {"code": {"enum": list(codes)}}}]}
        out[f"Error{status}"] = body({JSON: schema}, ERROR_TEXT[status])
    out["Error401"]["headers"] = {
        "WWW-Authenticate": {"description": 'Bearer realm="fillmask"', "schema": STRING}
    }
    return out


def error_ref(status):
    """The shared error response of ``status`` (``{"success": false, ...}``)."""
    return {"$ref": f"#/components/responses/Error{status}"}


# Binary tensor data (docs/api.md): the JSON header, then the tensors' bytes.
BINARY = {"application/octet-stream": STRING}
# path: (method, operationId, summary, request body, {status: (response body, description)}), a
# body as ``content`` takes it. A route with a request body needs the token when API_TOKEN is set.
ROUTES = {
    "/predict": ("post", "predict", "Fill every [MASK] of a text or of a list of texts",
     "PredictRequest", {200: ("PredictSingle|PredictBatch", "Candidates for every mask.")}),
    "/fill-mask": ("post", "fill_mask", "The Hugging Face Inference API fill-mask contract",
     "FillMaskRequest", {200: ("FillMaskResponse", "Candidates per mask.")}),
    "/health": ("get", "health", "Liveness and readiness", None,
     {200: ("Health", "Loaded (degraded: one model failed, the others serve)."),
      503: ("Health", "Loading, failed to load, or draining.")}),
    "/v2": ("get", "v2_server_metadata", "v2 server metadata", None,
     {200: ("V2ServerMetadata", "Name and version.")}),
    "/v2/": ("get", "v2_server_metadata_slash", "v2 server metadata", None,
     {200: ("V2ServerMetadata", "Name and version.")}),
    "/v2/health/live": ("get", "v2_live", "v2 liveness", None,
     {200: ("V2Live", "The process answers.")}),
    "/v2/health/ready": ("get", "v2_ready", "v2 readiness (Kubernetes readinessProbe)", None,
     {200: ("V2Ready", "Loaded and not draining."), 503: ("V2Ready", "Loading or draining.")}),
    "/": ("get", "page", "The fill-in page", None,
     {200: ({"text/html": STRING}, "The page (scripts from /static only).")}),
    "/openapi.json": ("get", "openapi", "This document", None,
     {200: ({JSON: {"type": "object"}}, "This document.")}),
    "/metrics": ("get", "metrics", "Prometheus metrics of all workers", None,
     {200: ({"text/plain": STRING}, "Prometheus text format.")}),
}  # fmt: skip
# The model's routes, under each of MODEL_BASES (its operationId + the suffix); errors in the v2
# protocol's shape.
MODEL_BASES = {"/v2/models/{name}": "", "/v2/models/{name}/versions/{version}": "_version"}
MODEL_ROUTES = {
    "": ("get", "v2_model_metadata", "v2 model metadata", None,
     {200: ("V2ModelMetadata", "Inputs and outputs.")}),
    "/ready": ("get", "v2_model_ready", "v2 model readiness", None,
     {200: ("V2ModelReady", "Ready."), 503: ("V2ModelReady", "Not loaded, or draining.")}),
    "/infer": ("post", "v2_infer", "v2 inference: BYTES texts in; candidates, ids, scores out",
     {JSON: ref("InferRequest"), **BINARY},
     {200: ({JSON: ref("V2InferResponse"), **BINARY}, "The wanted output tensors.")}),
}  # fmt: skip


PATH_PARAMETER = {"in": "path", "required": True, "schema": STRING}


def operation(path, op, summary, request, responses, errors):
    """One operation object; ``errors``: the error responses of the statuses it does not list."""
    out = {"summary": summary, "operationId": op}
    out["responses"] = {str(s): body(schema, text) for s, (schema, text) in responses.items()}
    out["responses"] |= {str(s): e for s, e in errors.items() if s not in responses}
    if request:
        out["requestBody"] = {"required": True, "content": content(request)}
        out["security"] = [{}, {"bearerAuth": []}]
    if params := re.findall(r"{(\w+)}", path):
        out["parameters"] = [{"name": p, **PATH_PARAMETER} for p in params]
    return out


def paths(config):
    """Every endpoint with its request body and every response it can give."""
    out = {}
    for path, (method, op, summary, request, responses) in ROUTES.items():
        errors = {s: error_ref(s) for s in API_ERRORS} if request else {}
        out[path] = {method: operation(path, op, summary, request, responses, errors)}
    for base, suffix in MODEL_BASES.items():
        for tail, (method, op, summary, request, responses) in MODEL_ROUTES.items():
            statuses = API_ERRORS if request else V2_GET_ERRORS
            errors = {s: body("V2Error", ERROR_TEXT[s]) for s in statuses}
            path = base + tail
            out[path] = {method: operation(path, op + suffix, summary, request, responses, errors)}
    mode = access_mode(config)
    if mode == "off":
        del out["/metrics"]
    elif mode == "token":
        out["/metrics"]["get"]["responses"]["401"] = error_ref(401)
        out["/metrics"]["get"]["security"] = [{"bearerAuth": []}]
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
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


@bp.get("/openapi.json")
def openapi_json():
    """The OpenAPI document for this server's configuration (built once per app)."""
    spec = current_app.extensions.get("openapi")
    if spec is None:
        spec = current_app.extensions["openapi"] = build_spec(current_app.extensions["fillmask"])
    return jsonify(spec)
