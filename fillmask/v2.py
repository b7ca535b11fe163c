"""The Open Inference Protocol (KServe v2 REST; Triton's HTTP API): routes and bodies.

The request is declared once (``InferRequest``, pydantic: validation and the OpenAPI schema);
its texts and parameters become the same ``FillRequest`` /predict makes, so every limit holds.

Input: ``text``, BYTES, shape [N]. Parameters: ``top_k``, ``hanzi_only`` and ``targets`` (one
string, tokens separated by spaces: the protocol allows only scalar parameter values). Outputs:
``candidates`` (BYTES [N], per text a JSON array with per mask the candidates as /predict gives
them), ``token_ids`` (INT64) and ``scores`` (FP32), both [N, masks, k]; a text with fewer masks
than the longest (or fewer candidates than k) is padded with token id -1 and score 0.
Every error under /v2 is the protocol's ``{"error": "..."}`` with the status. Tensors in and
out may be binary (``v2_binary``: Triton's binary tensor data extension, tritonclient's default).
"""

import json
from typing import Literal

import numpy as np
from flask import Blueprint, jsonify, request

from . import responses, v2_binary
from .api import read_body, service
from .errors import FillMaskError, ModelNotReady
from .refusal import parse, parse_json
from .requests import Closed, described

bp = Blueprint("v2", __name__, url_prefix="/v2")

VERSION = "1"  # the one version of each model this server has
INPUT = {"name": "text", "datatype": "BYTES", "shape": [-1]}
OUTPUTS = {
    "candidates": {"name": "candidates", "datatype": "BYTES", "shape": [-1]},
    "token_ids": {"name": "token_ids", "datatype": "INT64", "shape": [-1, -1, -1]},
    "scores": {"name": "scores", "datatype": "FP32", "shape": [-1, -1, -1]},
}
METADATA = {"platform": "onnx_onnxv1", "inputs": [INPUT], "outputs": list(OUTPUTS.values())}

# The protocol's objects are ``Closed`` (requests.py): unknown keys refused, values not coerced.


class InputParameters(Closed):
    binary_data_size: described(int, "must be its bytes after the JSON header", ge=0) = None


class OutputParameters(Closed):
    binary_data: described(bool, "must be true (binary tensor data) or false (JSON)") = None


class InputTensor(Closed):
    name: described(Literal["text"], 'must be "text"')
    datatype: described(Literal["BYTES"], "must be BYTES")
    shape: described(list[int], "must be [N], N the number of texts", min_length=1)
    data: described(list, "must be the list of N texts containing [MASK]") = None
    parameters: InputParameters = InputParameters()


class OutputRequest(Closed):
    name: described(Literal[tuple(OUTPUTS)], "must be one of " + ", ".join(OUTPUTS))
    parameters: OutputParameters = OutputParameters()


class InferRequest(Closed):
    """POST /v2/models/{name}/infer."""

    id: str | None = None
    parameters: described(
        dict[str, str | int | bool | float] | None,
        "must be an object of scalars: top_k (integer), targets (one string of tokens "
        'separated by spaces, e.g. "好 坏"), hanzi_only (boolean), binary_data_output (boolean)',
    ) = None
    inputs: described(
        list[InputTensor], "must hold one tensor: text, BYTES, [N]", min_length=1, max_length=1
    )
    outputs: list[OutputRequest] | None = None


@bp.errorhandler(FillMaskError)
def protocol_error(exc):
    """The protocol's error object, with the error's own status."""
    return jsonify({"error": exc.message}), exc.status


@bp.get("")
@bp.get("/")
def server_metadata():
    """The server's name and version, and its extensions (Triton's name for binary tensors)."""
    return jsonify({"name": "fillmask", "version": "1.0.0", "extensions": ["binary_tensor_data"]})


@bp.get("/health/live")
def live():
    """200 while the process answers."""
    return jsonify({"live": True})


@bp.get("/health/ready")
def ready():
    """200 while the models are loaded and the worker is not draining, else 503."""
    ok = service().status() in ("ok", "degraded")
    return jsonify({"live": True, "ready": ok}), 200 if ok else 503


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
def model_ready(name, version=VERSION):
    """200 while the model is loaded and the worker is not draining, else 503."""
    try:
        model(name, version)
        ok = service().status() != "draining"
    except ModelNotReady:
        ok = False
    return jsonify({"name": name, "ready": ok}), 200 if ok else 503


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
def model_metadata(name, version=VERSION):
    """The model's name, its version, platform and tensors."""
    return jsonify(name=model(name, version).name, versions=[VERSION], **METADATA)


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
def infer(name, version=VERSION):
    """Fill every mask of each text of the BYTES input."""
    fill = service()
    model(name, version)
    length = request.headers.get(v2_binary.HEADER)
    header, data = v2_binary.split(read_body(), length)
    # The protocol's header is always JSON: tritonclient sends no Content-Type, and a binary
    # body is application/octet-stream.
    body = parse_json(header, length is None and request.content_type or "application/json")
    req, request_id, wanted = parse_infer(fill, body, name, data)
    body = fill.answer(req, infer_body, request_id, wanted)
    # A body with binary outputs carries its own headers (octet-stream, the JSON's length).
    return body, getattr(body, "headers", {"Content-Type": "application/json"})


def model(name, version=VERSION):
    """The predictor serving ``name``: 503 while not loaded, 404 for another name or version."""
    if version != VERSION:
        raise FillMaskError(
            f"model {name!r} has no version {version!r}; this server has version {VERSION}",
            code="unknown_model",
        )
    return service().ready(name)


def parse_infer(fill, body, name, data=b""):
    """A v2 inference body (and its binary tensor data) → (``FillRequest``, its id or None,
    the outputs wanted: (name, binary) pairs)."""
    shapes = fill.shapes
    infer_request = parse(InferRequest, body, shapes)
    tensor = infer_request.inputs[0]
    texts = v2_binary.texts(tensor, data, fill.config) if len(tensor.shape) == 1 else None
    if texts is None or tensor.shape[0] != len(texts):
        raise FillMaskError(
            "inputs[0].shape must be [N] with N the number of texts in inputs[0].data"
        )
    params = dict(infer_request.parameters or {})
    binary = params.pop("binary_data_output", False)
    if not isinstance(binary, bool):
        raise FillMaskError("parameters.binary_data_output must be true or false")
    if isinstance(params.get("targets"), str):
        # A blank string becomes [""], refused by the same check as any empty target.
        params["targets"] = params["targets"].split() or [""]
    options = parse(shapes.Options, params, shapes, within="parameters.")
    texts = parse(shapes.PredictRequest, {"texts": texts}, shapes, rename="inputs[0].data")
    req = shapes.request(options, texts.texts, "inputs[0].data", model=name)
    outputs = infer_request.outputs
    outputs = [OutputRequest(name=o) for o in OUTPUTS] if outputs is None else outputs
    own = [o.parameters.binary_data for o in outputs]  # each overrides binary_data_output
    wanted = tuple((o.name, binary if b is None else b) for o, b in zip(outputs, own, strict=True))
    return req, infer_request.id, wanted


def infer_body(request, result, request_id, wanted):
    """The inference response: the wanted output tensors, flattened in row-major order, as
    JSON data or (binary outputs) as bytes after the JSON header."""
    per_text = [t.masks for t in result.texts]
    shape = [len(per_text), max(map(len, per_text)), max(len(m) for t in per_text for m in t)]
    ids, scores = np.full(shape, -1), np.zeros(shape)  # the padding: token id -1, score 0
    candidates = np.empty(shape[0], dtype=object)  # per text, its candidates as JSON
    for i, text in enumerate(per_text):
        records = [[responses.record(c, "Candidate") for c in mask] for mask in text]
        candidates[i] = json.dumps(records, ensure_ascii=False)
        for j, mask in enumerate(text):
            ids[i, j, : len(mask)] = [c.token_id for c in mask]
            scores[i, j, : len(mask)] = [c.score for c in mask]
    data = {"candidates": candidates, "token_ids": ids, "scores": scores}
    outputs = [
        {**OUTPUTS[o], "shape": list(data[o].shape), "data": data[o].ravel().tolist()}
        for o, _ in wanted
    ]
    body = {"model_name": result.model, "model_version": VERSION, "outputs": outputs}
    if request_id is not None:
        body["id"] = request_id
    return v2_binary.framed(body, [binary for _, binary in wanted])
