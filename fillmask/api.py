"""The JSON API: /predict, /fill-mask (Hugging Face shape) and /health.

Knows HTTP and the request/response shapes; the predictor does the model work.
"""

import logging
import os
import time
from dataclasses import dataclass, field

from flask import Blueprint, current_app, jsonify, request

from . import choices, drain, joint, responses, schema
from .cache import LRUCache
from .config import Config
from .errors import FillMaskError, ModelNotReady

logger = logging.getLogger(__name__)

bp = Blueprint("api", __name__)

# Forward rows one request may ask for through joint / candidates (a single text needs at most
# 160 + 76): bounds what one request costs a Raspberry Pi, whatever texts × candidates it sends.
MAX_WHOLE_WORD_ROWS = 256


@dataclass
class Runtime:
    """What one worker holds: the config, the predictor (or why it is missing), the cache."""

    config: Config
    predictor: object | None = None
    error: str | None = None
    cache: LRUCache = field(default_factory=LRUCache)

    def ready(self):
        """The predictor, or a 503 saying why there is none."""
        if self.predictor is None:
            raise (
                ModelNotReady()
                if self.error is None
                else ModelNotReady(
                    "the model failed to load; see the server log", code="model_unavailable"
                )
            )
        return self.predictor


def runtime():
    """This app's ``Runtime`` (set by ``create_app``)."""
    return current_app.extensions["fillmask"]


def read_json():
    """The request body as a JSON object, or a 4xx ``FillMaskError``."""
    return schema.parse_json(request.get_data(cache=False), request.content_type)


def fill(rt, req, fields):
    """Candidates for a request, from the LRU cache when the same request was just answered."""
    predictor = rt.ready()
    key = (req.texts, req.top_k, req.targets)
    per_text = rt.cache.get(key)
    if per_text is None:
        per_text = predictor.predict(
            list(req.texts), req.top_k, list(req.targets) or None, fields=fields
        )
        rt.cache.put(key, per_text)
    return per_text


def whole_words(rt, req, fields):
    """Joint ``blanks`` and/or ranked ``choices`` per text, or None when neither was asked."""
    if not req.joint and not req.candidates:
        return None
    predictor = rt.ready()
    key = ("whole-word", req.texts, req.top_k, req.joint, req.candidates)
    extras = rt.cache.get(key)
    if extras is None:
        prepared = [predictor.prepare(t, f) for t, f in zip(req.texts, fields, strict=True)]
        check_cost(prepared, req)
        chunk = rt.config.batch_max
        ranked = (
            choices.score(predictor, prepared, req.candidates, fields, chunk=chunk)
            if req.candidates
            else [None] * len(prepared)
        )
        blanks = (
            joint.decode(predictor, prepared, req.top_k, chunk=chunk)
            if req.joint
            else [None] * len(prepared)
        )
        extras = list(zip(blanks, ranked, strict=True))
        rt.cache.put(key, extras)
    return extras


def check_cost(prepared, req):
    """Refuse a request whose joint decoding and candidates would need too many model rows."""
    rows = choices.rows_needed(len(prepared), req.candidates) + (
        joint.rows_needed(prepared) if req.joint else 0
    )
    if rows > MAX_WHOLE_WORD_ROWS:
        raise FillMaskError(
            f"joint and candidates for these texts need {rows} model rows; at most "
            f"{MAX_WHOLE_WORD_ROWS} per request: send fewer texts or shorter candidate lists",
            code="batch_too_large",
        )


def field_names(req, name):
    """Names of the texts for error messages: ``text`` or ``texts[i]``."""
    if not req.batch:
        return [name]
    return [f"{name}[{i}]" for i in range(len(req.texts))]


@bp.post("/predict")
def predict():
    """Fill every [MASK] of ``text`` (or of each of ``texts``)."""
    rt = runtime()
    started = time.perf_counter()
    req = schema.parse_predict(read_json(), rt.config)
    fields = field_names(req, "texts" if req.batch else "text")
    # Whole words first: a bad candidate or blank is refused before any model run.
    extras = whole_words(rt, req, fields)
    per_text = fill(rt, req, fields)
    predictor = rt.predictor
    meta = {
        "model": predictor.name,
        "precision": predictor.precision,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 2),
    }
    return jsonify(responses.predict_body(req, per_text, meta, extras))


@bp.post("/fill-mask")
def fill_mask():
    """The Hugging Face Inference API fill-mask contract."""
    rt = runtime()
    req = schema.parse_hf(read_json(), rt.config)
    per_text = fill(rt, req, field_names(req, "inputs"))
    return jsonify(responses.hf_body(req, per_text))


@bp.get("/health")
def health():
    """Readiness: 200 once the model is loaded, 503 before, on failure, or while draining."""
    rt = runtime()
    if rt.predictor is None or drain.draining():
        status = "draining" if drain.draining() else "error" if rt.error else "loading"
        return jsonify({"status": status, "pid": os.getpid()}), 503
    p = rt.predictor
    return jsonify(
        {
            "status": "ok",
            "model": p.name,
            "precision": p.precision,
            "max_length": p.max_length,
            "pid": os.getpid(),
        }
    )
