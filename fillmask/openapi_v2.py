"""The Open Inference Protocol endpoints (fillmask/v2.py) in the OpenAPI document.

Request schemas say exactly what ``v2_bodies.parse_infer`` accepts, so a body they refuse is refused
by the server too (tests/test_fuzz.py checks both ways). Error bodies carry ``error``; those
made outside the blueprint (401, 413, 415, 500) add the service's usual ``success`` and ``code``.
"""

from .v2_bodies import OUTPUTS

JSON = "application/json"
STRING = {"type": "string"}
OPTIONAL_OBJECT = {"type": ["object", "null"]}  # null counts as absent


def ref(name):
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties, required=None):
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


def body(schema, description):
    return {"description": description, "content": {JSON: {"schema": schema}}}


def errors(*statuses):
    text = {
        400: "Bad input; `error` says what is accepted.",
        401: "API_TOKEN is set and the bearer token is missing or wrong.",
        404: "No model of this name on this server.",
        413: "The body is larger than MAX_BODY_BYTES.",
        415: "A Content-Type other than JSON (none is fine).",
        500: "A bug in the service; details are only in the server log.",
        503: "The model is not loaded (yet, or it failed to load).",
    }
    return {str(s): body(ref("V2Error"), text[s]) for s in statuses}


def schemas(config):
    """Component schemas of the v2 bodies, with the configured limits."""
    tensor_meta = obj({"name": STRING, "datatype": STRING, "shape": {"type": "array"}})
    top_k = {"type": "integer", "minimum": 1, "maximum": config.max_top_k, "default": 5}
    text_input = obj(
        {
            "name": {"const": "text"},
            "datatype": {"const": "BYTES"},
            "shape": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1, "maximum": config.max_texts},
                "minItems": 1,
                "maxItems": 1,
            },
            "data": {
                "type": "array",
                "items": {"type": "string", "minLength": 1},
                "minItems": 1,
                "maxItems": config.max_texts,
            },
            "parameters": OPTIONAL_OBJECT,
        },
        required=["name", "datatype", "shape", "data"],
    )
    output_request = obj(
        {"name": {"enum": list(OUTPUTS)}, "parameters": OPTIONAL_OBJECT}, required=["name"]
    )
    output = obj(
        {
            "name": {"enum": list(OUTPUTS)},
            "datatype": {"enum": ["BYTES", "INT64", "FP32"]},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "data": {"type": "array"},
        }
    )
    return {
        "V2Error": obj({"error": {"type": "string", "minLength": 1}}),
        "V2ServerMetadata": obj(
            {"name": STRING, "version": STRING, "extensions": {"type": "array", "items": STRING}}
        ),
        "V2Live": obj({"live": {"type": "boolean"}}),
        "V2Ready": obj({"live": {"type": "boolean"}, "ready": {"type": "boolean"}}),
        "V2ModelReady": obj({"name": STRING, "ready": {"type": "boolean"}}),
        "V2ModelMetadata": obj(
            {
                "name": STRING,
                "platform": STRING,
                "inputs": {"type": "array", "items": tensor_meta},
                "outputs": {"type": "array", "items": tensor_meta},
            }
        ),
        "V2InferRequest": obj(
            {
                "id": {"type": ["string", "null"]},
                "parameters": {
                    "type": ["object", "null"],
                    "properties": {
                        "top_k": top_k,
                        "targets": {
                            "type": "string",
                            "minLength": 1,
                            "description": "Tokens to rank, separated by spaces: '好 坏'.",
                        },
                    },
                },
                "inputs": {"type": "array", "items": text_input, "minItems": 1, "maxItems": 1},
                "outputs": {"type": ["array", "null"], "items": output_request},
            },
            required=["inputs"],
        ),
        "V2InferResponse": obj(
            {"model_name": STRING, "id": STRING, "outputs": {"type": "array", "items": output}},
            required=["model_name", "outputs"],
        ),
    }


def paths():
    """The six v2 endpoints and every response each can give."""
    name = [{"name": "name", "in": "path", "required": True, "schema": STRING}]

    def get(summary, op, responses, parameters=()):
        out = {"summary": summary, "operationId": op, "responses": responses}
        return {"get": {**out, "parameters": list(parameters)} if parameters else out}

    return {
        "/v2": get(
            "v2 server metadata",
            "v2_server_metadata",
            {"200": body(ref("V2ServerMetadata"), "Name and version.")},
        ),
        "/v2/health/live": get(
            "v2 liveness", "v2_live", {"200": body(ref("V2Live"), "The process answers.")}
        ),
        "/v2/health/ready": get(
            "v2 readiness (Kubernetes readinessProbe)",
            "v2_ready",
            {
                "200": body(ref("V2Ready"), "The model is loaded and the worker not draining."),
                "503": body(ref("V2Ready"), "Loading, failed, or draining after SIGTERM."),
            },
        ),
        "/v2/models/{name}": get(
            "v2 model metadata",
            "v2_model_metadata",
            {"200": body(ref("V2ModelMetadata"), "Inputs and outputs."), **errors(404, 503)},
            name,
        ),
        "/v2/models/{name}/ready": get(
            "v2 model readiness",
            "v2_model_ready",
            {
                "200": body(ref("V2ModelReady"), "Ready."),
                "503": body(ref("V2ModelReady"), "Not loaded, or draining."),
                **errors(404),
            },
            name,
        ),
        "/v2/models/{name}/infer": {
            "post": {
                "summary": "v2 inference: BYTES texts in, candidates, token ids and scores out",
                "operationId": "v2_infer",
                "security": [{}, {"bearerAuth": []}],
                "parameters": name,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": ref("V2InferRequest")}},
                },
                "responses": {
                    "200": body(ref("V2InferResponse"), "The wanted output tensors."),
                    **errors(400, 401, 404, 413, 415, 500, 503),
                },
            }
        },
    }
