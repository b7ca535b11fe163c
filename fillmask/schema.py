"""Request bodies: JSON parsing and field validation into plain request objects.

Every refusal is a ``FillMaskError`` whose message says what was wrong and what is accepted.
"""

import json
from dataclasses import dataclass

from .errors import FillMaskError
from .text import SURROGATES, replace_surrogates


@dataclass(frozen=True)
class FillRequest:
    """A validated fill-mask request, whichever endpoint it came through."""

    texts: tuple
    batch: bool  # "texts" was given (answer with "results")
    top_k: int = 5
    targets: tuple = ()
    joint: bool = False  # decode each run of adjacent masks as one word ("blanks")
    candidates: tuple = ()  # words to rank for the text's one blank ("choices")


MAX_CANDIDATES = 20
MAX_CANDIDATE_CHARS = 8


def parse_json(raw, content_type):
    """Decode a request body that must be a JSON object."""
    if not _is_json(content_type):
        raise FillMaskError(
            "send the body as JSON with the header 'Content-Type: application/json'",
            code="unsupported_media_type",
            status=415,
        )
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        body = json.loads(text)
        if "\\u" in text:  # only \u escapes can bring in lone surrogates
            body = _without_surrogates(body)
    except UnicodeDecodeError:
        raise FillMaskError("the body is not valid UTF-8", code="invalid_json") from None
    except RecursionError:
        raise FillMaskError("the JSON body is nested too deeply", code="invalid_json") from None
    except ValueError as exc:
        raise FillMaskError(
            f"the body is not valid JSON ({_where(exc)})", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise FillMaskError(
            'the JSON body must be an object, e.g. {"text": "今天天气真[MASK]啊"}',
            code="invalid_body",
        )
    return body


def parse_predict(body, config):
    """Validate a ``POST /predict`` body."""
    has_text, has_texts = "text" in body, "texts" in body
    if has_text and has_texts:
        raise FillMaskError("give either text or texts, not both", code="conflicting_fields")
    if not has_text and not has_texts:
        raise FillMaskError(
            'missing field text: send {"text": "...[MASK]..."} or {"texts": [...]}',
            code="missing_text",
        )
    return fill_request(
        config,
        body["texts"] if has_texts else body["text"],
        field="texts" if has_texts else "text",
        batch=has_texts,
        top_k=body.get("top_k", 5),
        targets=body.get("targets"),
        joint=body.get("joint", False),
        candidates=body.get("candidates"),
    )


def parse_hf(body, config):
    """Validate a ``POST /fill-mask`` body (Hugging Face Inference API shape)."""
    if "inputs" not in body:
        raise FillMaskError(
            'missing field inputs: send {"inputs": "...[MASK]..."}', code="missing_text"
        )
    params = body.get("parameters")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise FillMaskError("parameters must be an object", code="invalid_type")
    inputs = body["inputs"]
    return fill_request(
        config,
        inputs,
        field="inputs",
        batch=isinstance(inputs, list),
        top_k=params.get("top_k", 5),
        targets=params.get("targets"),
    )


def fill_request(
    config, texts, *, field, batch, top_k=5, targets=None, joint=False, candidates=None
):
    """Every field checked against ``config``'s limits: where each protocol's parser ends.

    ``texts`` is one string (``batch`` false) or a list of them; ``field`` names it in errors.
    """
    texts = _texts(texts, config, field) if batch else (_text(texts, field, config),)
    top_k = _top_k(top_k, config)
    targets = _targets(targets, config)
    candidates = _candidates(candidates)
    if targets and candidates:
        raise FillMaskError(
            "give either targets (single tokens scored per mask) or candidates "
            "(words ranked for the blank), not both",
            code="conflicting_fields",
        )
    return FillRequest(
        texts=texts,
        batch=batch,
        top_k=top_k,
        targets=targets,
        joint=_joint(joint),
        candidates=candidates,
    )


def texts_field(value, config, field):
    """Validate a list of texts (1 to ``MAX_TEXTS``, each at most ``MAX_TEXT_CHARS``)."""
    return _texts(value, config, field)


def with_parameters(texts, batch, params, config):
    """A ``FillRequest`` for validated ``texts`` with ``top_k`` and ``targets`` from ``params``."""
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise FillMaskError("parameters must be an object", code="invalid_type")
    return fill_request(
        config,
        list(texts) if batch else texts[0],
        field="inputs",
        batch=batch,
        top_k=params.get("top_k", 5),
        targets=params.get("targets"),
    )


def _without_surrogates(body):
    """Lone surrogates become U+FFFD (one character each, so offsets hold): UTF-8 responses
    that echo the text could not carry them."""
    text = json.dumps(body, ensure_ascii=False)
    return json.loads(replace_surrogates(text)) if SURROGATES.search(text) else body


def _is_json(content_type):
    mime = (content_type or "").split(";")[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


def _where(exc):
    return f"line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else "parse error"


def _text(value, field, config):
    if value is None:
        raise FillMaskError(
            f"{field} must not be null; send a string containing [MASK]", code="missing_text"
        )
    if not isinstance(value, str):
        raise FillMaskError(
            f"{field} must be a string containing [MASK], not {_kind(value)}", code="invalid_type"
        )
    # Before anything else reads the text: tokenising, and every candidate's ``sequence``, cost
    # in proportion to its length.
    if len(value) > config.max_text_chars:
        raise FillMaskError(
            f"{field} has {len(value)} characters; at most {config.max_text_chars} "
            "(MAX_TEXT_CHARS) per text: send the sentence around the mask, not the whole document",
            code="text_too_long",
        )
    if not value.strip():
        raise FillMaskError(
            f"{field} must not be empty; write a sentence containing [MASK]", code="empty_text"
        )
    return value


def _texts(value, config, field="texts"):
    if not isinstance(value, list):
        raise FillMaskError(
            f"{field} must be a list of strings, not {_kind(value)}", code="invalid_type"
        )
    if not value:
        raise FillMaskError(f"{field} must hold at least one string", code="empty_batch")
    limit = config.max_texts
    if len(value) > limit:
        raise FillMaskError(
            f"{field} holds {len(value)} texts; at most {limit} per request", code="batch_too_large"
        )
    return tuple(_text(item, f"{field}[{i}]", config) for i, item in enumerate(value))


def _top_k(value, config):
    if isinstance(value, bool) or not isinstance(value, int):
        raise FillMaskError(
            f"top_k must be an integer from 1 to {config.max_top_k}", code="invalid_top_k"
        )
    if not 1 <= value <= config.max_top_k:
        raise FillMaskError(
            f"top_k must be from 1 to {config.max_top_k}, not {value}", code="invalid_top_k"
        )
    return value


def _targets(value, config):
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise FillMaskError(
            'targets must be a non-empty list of single-token strings, e.g. ["好", "坏"]',
            code="invalid_targets",
        )
    if len(value) > config.max_targets:
        raise FillMaskError(
            f"targets holds {len(value)} entries; at most {config.max_targets}",
            code="invalid_targets",
        )
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise FillMaskError("every target must be a non-empty string", code="invalid_targets")
    return tuple(value)


def _joint(value):
    if value is None:
        return False
    if not isinstance(value, bool):
        raise FillMaskError(f"joint must be true or false, not {_kind(value)}", code="invalid_type")
    return value


def _candidates(value):
    """1..20 distinct words of 1..8 characters (surrounding spaces dropped, repeats merged)."""
    if value is None:
        return ()
    accepted = (
        f"candidates must be a list of 1 to {MAX_CANDIDATES} words of 1 to "
        f'{MAX_CANDIDATE_CHARS} characters, e.g. ["添足", "点睛"]'
    )
    if not isinstance(value, list) or not value:
        raise FillMaskError(accepted, code="invalid_candidates")
    if len(value) > MAX_CANDIDATES:
        raise FillMaskError(
            f"candidates holds {len(value)} words; {accepted}", code="invalid_candidates"
        )
    words = []
    for i, item in enumerate(value):
        word = item.strip() if isinstance(item, str) else None
        if not word or len(word) > MAX_CANDIDATE_CHARS:
            raise FillMaskError(
                f"candidates[{i}] is not a word of 1 to {MAX_CANDIDATE_CHARS} "
                f"characters; {accepted}",
                code="invalid_candidates",
            )
        if word not in words:
            words.append(word)
    return tuple(words)


def _kind(value):
    return {
        dict: "an object",
        list: "a list",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), "a string")
