"""The Open Inference Protocol's official description as checks on real v2 responses.

tests/open_inference_rest.yaml is kserve/open-inference-protocol's
specification/protocol/open_inference_rest.yaml, copied unchanged (Apache-2.0; source and commit
in its header). ``check(path, method, status, headers, body)`` finds the file's own path
template for the request (the ``/versions/{version}`` part optional, as inference_rest.md's
table has it), takes the schema the file gives for that status and validates the body with
jsonschema against the file's component schemas. Binary outputs (Triton's binary tensor data
extension) are decoded here, independently of the server, and put back as ``data`` before the
check, since the extension moves exactly that field out of the JSON.
"""

import json
import re
import struct
from pathlib import Path

import numpy as np
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SPEC = yaml.safe_load((Path(__file__).parent / "open_inference_rest.yaml").read_text("utf-8"))
URI = "urn:open-inference-protocol"
REGISTRY = Registry().with_resource(URI, Resource(contents=SPEC, specification=DRAFT202012))
HEADER = "Inference-Header-Content-Length"
DTYPES = {"INT64": "<i8", "FP32": "<f4"}

# The health objects are written out only in inference_rest.md ($live_server_response,
# $ready_server_response, $ready_model_response); the YAML gives those paths no body.
MD_OBJECTS = {
    "/v2/health/live": {"required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "/v2/health/ready": {"required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "/v2/models/${MODEL_NAME}/versions/${MODEL_VERSION}/ready": {
        "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}},
    },
}
# The error object of the endpoints whose error the YAML leaves out of its paths (the
# component is there: inference_rest.md names it for model metadata; for the health
# endpoints the same one-field object).
ERROR_OBJECTS = {
    "/v2/models/${MODEL_NAME}/versions/${MODEL_VERSION}": "metadata_model_error_response"
}


def template_of(path):
    """The file's path template that ``path`` (a server path, no query) is an instance of."""
    for template in SPEC["paths"]:
        pattern = re.escape(template).replace(
            re.escape("/versions/${MODEL_VERSION}"), "(/versions/[^/]+)?"
        )
        pattern = pattern.replace(re.escape("${MODEL_NAME}"), "[^/]+")
        if re.fullmatch(pattern.removesuffix("/") + "/?", path):
            return template
    raise AssertionError(f"{path} is not a path of the protocol's file")


def schema_for(path, method, status):
    """The schema the file (or inference_rest.md, for health) gives this response."""
    template = template_of(path)
    if template in MD_OBJECTS and status in (200, 503):  # 503: the probe's "not ready" answer
        return {"type": "object", **MD_OBJECTS[template]}
    responses = SPEC["paths"][template][method.lower()]["responses"]
    entry = responses.get(str(status))
    if status >= 400 and entry is None:
        # "A failed ... request must be indicated by an HTTP error status (typically 400)":
        # every error status carries the endpoint's error object.
        entry = responses.get("400")
        if entry is None:
            name = ERROR_OBJECTS.get(template, "inference_error_response")
            return {"$ref": f"{URI}#/components/schemas/{name}"}
    ref = entry["content"]["application/json"]["schema"]["$ref"]
    return {"$ref": URI + ref}


def conforms(instance, name):
    """Assert ``instance`` matches the file's component schema ``name``; return it."""
    schema = {"$ref": f"{URI}#/components/schemas/{name}"}
    Draft202012Validator(schema, registry=REGISTRY).validate(instance)
    return instance


def decode_bytes_elements(raw):
    """BYTES binary data → its elements (4-byte little-endian length + bytes, each)."""
    out, at = [], 0
    while at < len(raw):
        (length,) = struct.unpack_from("<I", raw, at)
        out.append(raw[at + 4 : at + 4 + length])
        at += 4 + length
    assert at == len(raw)
    return out


def unframe(headers, body):
    """A response body → its JSON object with every binary output decoded back into ``data``.

    Also returns which outputs were binary. Asserts the extension's framing: the header length,
    ``binary_data_size`` on each binary output and no ``data`` beside it, sizes adding up.
    """
    length = headers.get(HEADER)
    if length is None:
        return json.loads(body), set()
    assert headers["Content-Type"] == "application/octet-stream"
    header, rest = body[: int(length)], body[int(length) :]
    obj = json.loads(header)
    binary, at = set(), 0
    for out in obj["outputs"]:
        size = out.get("parameters", {}).get("binary_data_size")
        if size is None:
            continue
        assert "data" not in out, out
        raw, at = rest[at : at + size], at + size
        if out["datatype"] == "BYTES":
            out["data"] = [e.decode("utf-8") for e in decode_bytes_elements(raw)]
        else:
            out["data"] = np.frombuffer(raw, DTYPES[out["datatype"]]).tolist()
        assert len(out["data"]) == int(np.prod(out["shape"])), out
        binary.add(out["name"])
    assert at == len(rest), "binary data left over after the outputs"
    assert binary, "Inference-Header-Content-Length without a binary output"
    return obj, binary


def check(path, method, status, headers, body):
    """Validate one real response against the protocol's file; return (its object, binary)."""
    obj, binary = unframe(headers, body)
    if headers.get(HEADER) is None:
        assert headers["Content-Type"].startswith("application/json"), headers["Content-Type"]
    Draft202012Validator(schema_for(path, method, status), registry=REGISTRY).validate(obj)
    if status >= 400 and not (status == 503 and template_of(path) in MD_OBJECTS):
        assert set(obj) == {"error"} and obj["error"], obj  # the file leaves "error" optional
    return obj, binary
