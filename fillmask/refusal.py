"""Refusals: a request body decoded as JSON, and validated against a pydantic model, a
validation error turned into one ``FillMaskError`` that names the field as the client wrote it,
what was wrong and what is accepted (the field's description, which the OpenAPI document shows
too).
"""

import json
from typing import get_args

from pydantic import BaseModel, ValidationError

from .errors import FillMaskError
from .text import SURROGATES, replace_surrogates

# A field's own code when its value is refused; ``(field, pydantic error type)`` overrides it.
FIELD_CODES = {name: f"invalid_{name}" for name in ("top_k", "targets", "candidates")}
UNION_TAGS = {"one", "many", "str", "int", "bool", "float", "none"}  # in loc, not field names
TYPE_CODES = {
    ("texts", "too_short"): "empty_batch",
    ("texts", "too_long"): "batch_too_large",
    ("text", "string_too_long"): "text_too_long",
    ("text", "null"): "missing_text",
}


def parse(model, body, shapes, rename=None, within=""):
    """``body`` (a dict) validated against ``model``, or the refusal naming the field.

    ``shapes``: its ``Shapes``; ``rename``: what the protocol calls ``texts``
    ("inputs[0].data"), for messages; ``within``: where ``body`` sits in the protocol's own
    body ("parameters."), so that a field is named as the client wrote it.
    """
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise refusal(exc, model, shapes, rename, within) from None


def refusal(exc, model, shapes, rename=None, within=""):
    """The first validation error as one ``FillMaskError``: field, what was wrong, accepted.

    ``shapes``: its ``Shapes``, for the shared options' and one text's descriptions.
    """
    error = exc.errors(include_url=False)[0]
    info, path, name = field_at(model, error["loc"])
    if rename and path.startswith("texts"):
        path = rename + path[len("texts") :]  # the protocol's own name ("inputs[0].data[1]")
    path = within + path
    if error["type"] == "extra_forbidden":
        owner = path.rpartition(".")[0] or "the body"
        # The fields of the object that holds the unknown key (top level: the model's own).
        fields = nested_fields(info.annotation) if info else model.model_fields
        return unknown_field(repr(name), fields, f" in {owner}")
    value = error.get("input")
    # One text: "text", an item of "texts" / "inputs", or the string "inputs" of /fill-mask.
    one_text = name == "text" or (name in ("texts", "inputs") and path[-1] == "]")
    one_text |= name == "inputs" and model is shapes.FillMaskRequest and isinstance(value, str)
    kind = "text" if one_text else "texts" if name == "inputs" else name
    accepted = shapes.text_accepted if one_text else info.description if info else None
    code = TYPE_CODES.get((kind, "null" if value is None else error["type"]))
    code = code or FIELD_CODES.get(name, "invalid_type")
    return FillMaskError(f"{path} {accepted or 'is refused'}, not {shown(value)}", code=code)


def field_at(model, loc):
    """The deepest declared field along ``loc``, the path as the client wrote it, its name.

    Union members (pydantic's tags: "str", "list[...]", a class name) are left out of the path.
    """
    info, path, name, fields = None, "", "", model.model_fields
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in fields:
            info, name = fields[part], part
            path += f".{part}"
            fields = nested_fields(info.annotation)
        elif part not in UNION_TAGS and not part[:1].isupper() and not set("[-") & set(part):
            name, path = part, path + f".{part}"  # a key of a free-form object (v2 parameters)
    return info, path.lstrip("."), name


def nested_fields(annotation):
    """The fields of the model inside ``annotation`` (``X | None``, ``list[X]``), or {}."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation.model_fields
    return next(filter(None, map(nested_fields, get_args(annotation))), {})


def shown(value):
    """A refused value as a message shows it: short scalars as they are, others by kind."""
    kinds = {type(None): "null", bool: "a boolean", dict: "an object"}  # JSON's, by type
    if type(value) in kinds:
        return kinds[type(value)]
    if isinstance(value, list):
        return f"a list of {len(value)}"
    if isinstance(value, str):
        return f"a string of {len(value)} characters" if len(value) > 20 else repr(value)
    return repr(value) if len(repr(value)) <= 20 else "a number"


def unknown_field(names, fields, where=""):
    """The refusal of unknown keys ``names`` (as shown) in ``where``, naming accepted ``fields``."""
    accepted = ", ".join(fields)
    return FillMaskError(
        f"unknown field {names}{where}; accepted: {accepted}", code="unknown_field"
    )


def unknown_fields(body, model):
    """Refuse keys the model does not declare, naming them and the accepted ones."""
    unknown = [key for key in body if key not in model.model_fields]
    if unknown:
        raise unknown_field(", ".join(map(repr, unknown)), model.model_fields)


def parse_json(raw, content_type):
    """Decode a request body (bytes) that must be a JSON object (a 415 for another media type)."""
    kind, _, subtype = (content_type or "").split(";")[0].strip().lower().partition("/")
    if kind != "application" or (subtype != "json" and not subtype.endswith("+json")):
        raise FillMaskError(
            "send the body as JSON with the header 'Content-Type: application/json'",
            code="unsupported_media_type",
        )
    try:
        text = raw.decode("utf-8")
        body = json.loads(text)
    except UnicodeDecodeError:
        raise FillMaskError("the body is not valid UTF-8", code="invalid_json") from None
    except RecursionError:
        raise FillMaskError("the JSON body is nested too deeply", code="invalid_json") from None
    except ValueError as exc:
        where = f"line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else "parse error"
        raise FillMaskError(f"the body is not valid JSON ({where})", code="invalid_json") from None
    if "\\u" in text:  # only \u escapes can bring in lone surrogates
        dumped = json.dumps(body, ensure_ascii=False)
        # Lone surrogates become U+FFFD (one character each, so offsets hold): UTF-8 responses
        # that echo the text could not carry them.
        if SURROGATES.search(dumped):
            body = json.loads(replace_surrogates(dumped))
    if not isinstance(body, dict):
        raise FillMaskError('the JSON body must be an object, e.g. {"text": "今天天气真[MASK]啊"}')
    return body
