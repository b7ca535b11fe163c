"""The Open Inference Protocol (KServe v2 REST): health, metadata and ``infer`` under /v2.

A protocol is a shape, not a new path: ``v2_bodies.parse_infer`` turns a v2 body into the same
``FillRequest`` as /predict, ``api.fill`` runs it through the same limits, predictor, batcher
and cache, and ``v2_bodies.infer_body`` gives the answer as tensors. Errors are
``{"error": "..."}``: 400 bad input, 404 unknown model, 503 not ready.
"""

import logging

from flask import Blueprint, jsonify, request

from . import api, drain, schema
from .errors import FillMaskError
from .v2_bodies import INPUT, OUTPUTS, infer_body, parse_infer

logger = logging.getLogger(__name__)

bp = Blueprint("v2", __name__, url_prefix="/v2")

SERVER_VERSION = "1.0.0"


@bp.errorhandler(FillMaskError)
def protocol_error(exc):
    """The protocol's error object, with the error's own status."""
    return jsonify({"error": exc.message}), exc.status


@bp.get("")
def server_metadata():
    return jsonify({"name": "fillmask", "version": SERVER_VERSION, "extensions": []})


@bp.get("/health/live")
def live():
    return jsonify({"live": True})


@bp.get("/health/ready")
def ready():
    """200 while the model is loaded and the worker is not draining, else 503."""
    rt = api.runtime()
    ok = rt.predictor is not None and rt.error is None and not drain.draining()
    return jsonify({"live": True, "ready": ok}), 200 if ok else 503


@bp.get("/models/<name>/ready")
def model_ready(name):
    rt = api.runtime()
    if rt.predictor is not None:
        model(name)  # 404 for a model this server does not serve
    ok = rt.predictor is not None and rt.error is None and not drain.draining()
    return jsonify({"name": name, "ready": ok}), 200 if ok else 503


@bp.get("/models/<name>")
def model_metadata(name):
    predictor = model(name)
    outputs = list(OUTPUTS.values())
    return jsonify(
        {"name": predictor.name, "platform": "onnx_onnxv1", "inputs": [INPUT], "outputs": outputs}
    )


@bp.post("/models/<name>/infer")
def infer(name):
    """Fill every mask of each text of the BYTES input."""
    rt = api.runtime()
    predictor = model(name)
    if "Inference-Header-Content-Length" in request.headers:
        raise FillMaskError(
            "binary tensor data is not supported: send the tensors as JSON "
            "(tritonclient: binary_data=False)",
            code="invalid_body",
        )
    # The protocol's body is always JSON; its clients (tritonclient) send no Content-Type.
    body = schema.parse_json(
        request.get_data(cache=False), request.content_type or "application/json"
    )
    req, request_id, wanted = parse_infer(body, rt.config)
    fields = [f"inputs[0].data[{i}]" for i in range(len(req.texts))]
    per_text = api.fill(rt, req, fields)
    return jsonify(infer_body(predictor.name, request_id, per_text, wanted))


def model(name):
    """The predictor serving ``name``: 503 while none is loaded, 404 for another name."""
    predictor = api.runtime().ready()
    if name != predictor.name:
        raise FillMaskError(
            f"unknown model {name!r}: this server serves {predictor.name!r}",
            status=404,  # v2 error bodies carry no code
        )
    return predictor
