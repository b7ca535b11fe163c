"""v2 inference bodies: the protocol's one parser (into a ``FillRequest``) and one formatter.

Input: ``text``, BYTES, shape [N]. Parameters: ``top_k`` and ``targets`` (one string, tokens
separated by spaces: the protocol allows only scalar parameter values). Outputs: ``candidates``
(BYTES [N], per text a JSON array with per mask the candidates as /predict gives them),
``token_ids`` (INT64) and ``scores`` (FP32), both [N, masks, k]; a text with fewer masks than the
longest (or fewer candidates than k) is padded with token id -1 and score 0.
"""

import json

from . import responses, schema
from .errors import FillMaskError

INPUT = {"name": "text", "datatype": "BYTES", "shape": [-1]}
OUTPUTS = {
    "candidates": {"name": "candidates", "datatype": "BYTES", "shape": [-1]},
    "token_ids": {"name": "token_ids", "datatype": "INT64", "shape": [-1, -1, -1]},
    "scores": {"name": "scores", "datatype": "FP32", "shape": [-1, -1, -1]},
}


def parse_infer(body, config):
    """A v2 inference request → (``FillRequest``, its id or None, the output names wanted)."""
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise FillMaskError("id must be a string", code="invalid_type")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise FillMaskError(
            'inputs must hold one tensor: {"name": "text", "datatype": "BYTES", '
            '"shape": [N], "data": [N texts containing [MASK]]}',
            code="invalid_body",
        )
    tensor = inputs[0]
    if tensor.get("name") != "text" or tensor.get("datatype") != "BYTES":
        raise FillMaskError(
            'the input must be named "text" with datatype BYTES', code="invalid_body"
        )
    shape, data = tensor.get("shape"), tensor.get("data")
    if not _is_shape(shape) or not isinstance(data, list) or shape[0] != len(data):
        raise FillMaskError(
            "inputs[0].shape must be [N] with N the number of texts in inputs[0].data",
            code="invalid_body",
        )
    _check_parameters(tensor, "inputs[0].parameters")
    texts = schema.texts_field(data, config, "inputs[0].data")
    params = body.get("parameters")
    if isinstance(params, dict) and "targets" in params:
        targets = params["targets"]
        if not isinstance(targets, str):
            raise FillMaskError(
                'targets must be one string of tokens separated by spaces, e.g. "好 坏"',
                code="invalid_targets",
            )
        # A blank string becomes [""], refused by the same check as any empty target.
        params = {**params, "targets": targets.split() or [""]}
    req = schema.with_parameters(texts, True, params, config)
    return req, request_id, _wanted_outputs(body.get("outputs"))


def _is_shape(shape):
    return (
        isinstance(shape, list)
        and len(shape) == 1
        and isinstance(shape[0], int)
        and not isinstance(shape[0], bool)
    )


def _check_parameters(holder, field):
    if holder.get("parameters") is not None and not isinstance(holder["parameters"], dict):
        raise FillMaskError(f"{field} must be an object", code="invalid_type")


def _wanted_outputs(outputs):
    """The requested output names in order; all three when the request names none."""
    if outputs is None:
        return list(OUTPUTS)
    accepted = f"outputs must be a list of {{'name': one of {', '.join(OUTPUTS)}}}"
    if not isinstance(outputs, list):
        raise FillMaskError(accepted, code="invalid_body")
    names = []
    for i, item in enumerate(outputs):
        if not isinstance(item, dict) or item.get("name") not in OUTPUTS:
            raise FillMaskError(accepted, code="invalid_body")
        _check_parameters(item, f"outputs[{i}].parameters")
        names.append(item["name"])
    return names


def infer_body(model_name, request_id, per_text, wanted):
    """The inference response: the wanted output tensors, flattened in row-major order."""
    n = len(per_text)
    masks = max(len(text) for text in per_text)
    k = max(len(mask) for text in per_text for mask in text)
    token_ids, scores = [], []
    for text in per_text:
        for m in range(masks):
            mask = text[m] if m < len(text) else []
            token_ids += [c.token_id for c in mask] + [-1] * (k - len(mask))
            scores += [c.score for c in mask] + [0.0] * (k - len(mask))
    candidates = [
        json.dumps(
            [[responses.candidate_record(c) for c in mask] for mask in text], ensure_ascii=False
        )
        for text in per_text
    ]
    data = {"candidates": ([n], candidates), "token_ids": ([n, masks, k], token_ids)}
    data["scores"] = ([n, masks, k], scores)
    outputs = [{**OUTPUTS[name], "shape": data[name][0], "data": data[name][1]} for name in wanted]
    body = {"model_name": model_name, "outputs": outputs}
    if request_id is not None:
        body["id"] = request_id
    return body
