"""The JSON API: /predict, /fill-mask (Hugging Face shape) and /health.

Each view is parse → ``FillService.answer`` → respond; the shapes are in ``requests`` and
``responses``, the work in ``service``.
"""

import os
import time

from flask import Blueprint, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from . import responses
from .refusal import parse_json

bp = Blueprint("api", __name__)


def service():
    """This app's ``FillService`` (set by ``create_app``)."""
    return current_app.extensions["fillmask"]


def read_body():
    """The request body, or a 413 when it is larger than MAX_BODY_BYTES.

    Werkzeug refuses a Content-Length over the limit, but a chunked body (no Content-Length)
    it cuts at the limit and hands over the prefix; here it is read to one byte past the
    limit instead, and refused as a whole.
    """
    if request.content_length is not None or request.method != "POST":
        return request.get_data(cache=False)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    data = request.environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise RequestEntityTooLarge()
    return data


def read_json(content_type=None):
    """The request body as JSON, or a 4xx ``FillMaskError``."""
    return parse_json(read_body(), content_type or request.content_type)


def json_response(body, status=200):
    """A response of ready-made JSON bytes."""
    return current_app.response_class(body, status=status, mimetype="application/json")


@bp.post("/predict")
def predict():
    """Fill every [MASK] of ``text`` (or of each of ``texts``)."""
    started = time.perf_counter()
    fill = service()
    body = fill.answer(fill.shapes.predict(read_json()), responses.predict_body)
    return json_response(responses.with_elapsed(body, time.perf_counter() - started))


@bp.post("/fill-mask")
def fill_mask():
    """The Hugging Face Inference API fill-mask contract."""
    fill = service()
    return json_response(fill.answer(fill.shapes.fill_mask(read_json()), responses.hf_body))


@bp.get("/health")
def health():
    """Readiness: 200 once the models are loaded, 503 before, on failure, or while draining."""
    fill = service()
    status = fill.status()
    body = {"status": status, "pid": os.getpid()}
    if status in ("ok", "degraded"):
        p = fill.predictor
        body.update(model=p.name, precision=p.precision, max_length=p.max_length)
    models = [
        {"name": p.name, "precision": p.precision, "max_length": p.max_length, "ready": True}
        for p in fill.models.values()
    ]
    models += [{"name": name, "ready": False, "error": "failed to load"} for name in fill.failed]
    body["models"] = models
    return json_response(responses.encode(body), 200 if status in ("ok", "degraded") else 503)
