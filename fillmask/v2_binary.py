"""The v2 binary tensor data extension (Triton's docs/protocol/extension_binary_data.md).

A body with the header ``Inference-Header-Content-Length: N`` is N bytes of JSON (the usual
inference request or response) followed by raw tensor bytes, tensor after tensor in the order
the JSON lists them, each ``parameters.binary_data_size`` bytes long. BYTES elements are a
4-byte little-endian length and the bytes; INT64 and FP32 are little-endian, row-major.
tritonclient sends and asks for binary tensors by default. A raw binary request (N = 0, no
JSON header at all) is not supported: this model's input needs its shape.
"""

import struct

import numpy as np

from . import responses
from .errors import FillMaskError

HEADER = "Inference-Header-Content-Length"


class Framed(bytes):
    """A response body of a JSON header and binary tensors (cached as it is sent), with its
    ``headers``: Content-Type and Inference-Header-Content-Length."""


def split(raw, header_length):
    """The request body → (its JSON header, the binary tensor data after it)."""
    if header_length is None:
        return raw, b""
    # Decimal digits only ("²" is a digit to str.isdigit, not to int), and few of them.
    n = int(header_length) if header_length.isdecimal() and len(header_length) < 20 else -1
    if not 0 < n <= len(raw):
        raise FillMaskError(
            f"{HEADER} must be the JSON header's bytes, 1 to {len(raw)}, not {header_length[:20]!r}"
        )
    return raw[:n], raw[n:]


def texts(tensor, data, config):
    """The input's texts: its JSON ``data``, or its ``binary_data_size`` bytes of BYTES elements.

    The count (MAX_TEXTS) and each element's length are checked before anything is decoded
    (UTF-8 has at most 4 bytes per character; the exact MAX_TEXT_CHARS check follows as for
    JSON texts).
    """
    size, n = tensor.parameters.binary_data_size, tensor.shape[0]
    if (size is None) == (tensor.data is None):
        raise FillMaskError("inputs[0] needs either data or parameters.binary_data_size, not both")
    if (size or 0) != len(data):
        raise FillMaskError(
            f"inputs[0].parameters.binary_data_size is {size or 0}, not {len(data)}: the bytes "
            "after the JSON header"
        )
    if size is None:
        return tensor.data
    if n > config.max_texts:
        raise FillMaskError(f"at most {config.max_texts} texts (MAX_TEXTS)", code="batch_too_large")
    out, at = [], 0
    for i in range(n):
        # Fewer than 4 bytes left: a length that cannot fit.
        (length,) = struct.unpack_from("<I", data, at) if at + 4 <= size else (size,)
        element, at = data[at + 4 : at + 4 + length], at + 4 + length
        if at > size:
            raise FillMaskError(f"inputs[0]: its binary data ends inside element {i} of {n}")
        if length > 4 * config.max_text_chars:
            limit = f"at most {config.max_text_chars} characters (MAX_TEXT_CHARS)"
            raise FillMaskError(f"inputs[0].data[{i}] must be {limit}", code="text_too_long")
        try:
            out.append(element.decode("utf-8"))
        except UnicodeDecodeError:
            raise FillMaskError(f"inputs[0].data[{i}] is not UTF-8 text") from None
    if at != size:
        raise FillMaskError(f"inputs[0]: {size - at} bytes left after its shape's {n} elements")
    return out


def tensor_bytes(datatype, values):
    """One output's binary data: INT64 / FP32 little-endian, BYTES as length + UTF-8 each."""
    if datatype != "BYTES":
        return np.asarray(values, {"INT64": "<i8", "FP32": "<f4"}[datatype]).tobytes()
    return b"".join(struct.pack("<I", len(v)) + v for v in (s.encode() for s in values))


def framed(body, binary):
    """The response body: JSON, or its JSON header then the bytes of the outputs ``binary``
    flags (each with ``binary_data_size`` and no ``data`` in the header)."""
    tails = []
    for out, as_bytes in zip(body["outputs"], binary, strict=True):
        if as_bytes:
            tails.append(tensor_bytes(out["datatype"], out.pop("data")))
            out["parameters"] = {"binary_data_size": len(tails[-1])}
    header = responses.encode(body)
    if not tails:
        return header
    whole = Framed(header + b"".join(tails))
    whole.headers = {HEADER: str(len(header)), "Content-Type": "application/octet-stream"}
    return whole
