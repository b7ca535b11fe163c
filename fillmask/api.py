"""The JSON API: /predict, /fill-mask (Hugging Face shape) and /health.

Knows HTTP and the request/response shapes; the predictor does the model work.
"""

import logging
import os
import time
from dataclasses import dataclass, field
from functools import cached_property

from flask import Blueprint, current_app, jsonify, request

from . import choices, drain, joint, limits, responses, schema
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
        """The predictor, or a 503 saying why there is none (or why it may not be used)."""
        if self.predictor is None or self.error is not None:
            raise (
                ModelNotReady()
                if self.error is None
                else ModelNotReady(
                    "the model failed to load; see the server log", code="model_unavailable"
                )
            )
        return self.predictor

    @cached_property
    def token_bytes(self):
        """The loaded vocabulary's longest offerable token, in JSON bytes (answer size bound)."""
        return limits.token_bytes(self.ready().words, self.ready().excluded)


def runtime():
    """This app's ``Runtime`` (set by ``create_app``)."""
    return current_app.extensions["fillmask"]


def read_json():
    """The request body as a JSON object, or a 4xx ``FillMaskError``."""
    return schema.parse_json(request.get_data(cache=False), request.content_type)


def answer(rt, req, fields):
    """``(per_text, extras)`` for a request: every check first, then the model (or the cache).

    Every protocol's view calls this, so each gets the same limits. Nothing runs the model
    before every text is tokenised, every target and candidate looked up and the answer's size
    and the whole-word cost are known to fit.
    """
    predictor = rt.ready()
    limits.check_answer_size(req, rt.config, rt.token_bytes)
    whole = req.joint or bool(req.candidates)
    key = ("per-mask", req.texts, req.top_k, req.targets)
    words_key = ("whole-word", req.texts, req.top_k, req.joint, req.candidates)
    per_text = rt.cache.get(key)
    extras = rt.cache.get(words_key) if whole else [(None, None)] * len(req.texts)
    if per_text is not None and extras is not None:
        return per_text, extras
    if req.targets:
        predictor.target_ids(req.targets)  # a bad target is refused before whole words run
    if extras is None:
        prepared = [predictor.prepare(t, f) for t, f in zip(req.texts, fields, strict=True)]
        check_whole_words(predictor, prepared, req, fields)
        extras = whole_words(rt, prepared, req, fields)
        rt.cache.put(words_key, extras)
    if per_text is None:
        per_text = predictor.predict(
            list(req.texts), req.top_k, list(req.targets) or None, fields=fields
        )
        rt.cache.put(key, per_text)
    return per_text, extras


def fill(rt, req, fields):
    """Per-mask candidates only (protocols without whole words): ``answer``'s first part."""
    return answer(rt, req, fields)[0]


def check_whole_words(predictor, prepared, req, fields):
    """Refuse bad candidates, a text without its one blank, or too many model rows."""
    if req.candidates:
        choices.candidate_ids(predictor, req.candidates)
        for item, name in zip(prepared, fields, strict=True):
            choices.blank_span(item, name)
    rows = choices.rows_needed(len(prepared), req.candidates) + (
        joint.rows_needed(prepared) if req.joint else 0
    )
    if rows > MAX_WHOLE_WORD_ROWS:
        raise FillMaskError(
            f"joint and candidates for these texts need {rows} model rows; at most "
            f"{MAX_WHOLE_WORD_ROWS} per request: send fewer texts or shorter candidate lists",
            code="batch_too_large",
        )


def whole_words(rt, prepared, req, fields):
    """Joint ``blanks`` and/or ranked ``choices`` per text (None where not asked)."""
    predictor, chunk = rt.predictor, rt.config.batch_max
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
    return list(zip(blanks, ranked, strict=True))


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
    per_text, extras = answer(rt, req, field_names(req, "texts" if req.batch else "text"))
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
    per_text, _ = answer(rt, req, field_names(req, "inputs"))
    return jsonify(responses.hf_body(req, per_text))


@bp.get("/health")
def health():
    """Readiness: 200 once the model is loaded, 503 before, on failure, or while draining."""
    rt = runtime()
    if rt.predictor is None or rt.error or drain.draining():
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
