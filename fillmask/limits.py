"""What one request may cost: an upper bound of its answer's size, checked before any model run.

A /predict answer repeats its text in every record's ``sequence``: per text with ``m`` masks
(m ≤ MAX_MASKS), ``k`` = top_k (or fewer targets), ``J`` = the text's bytes as JSON (≤ 6 per
character: a control character is written ``\\u00XX``), ``T`` = a vocabulary token's bytes as JSON:

    per mask:    (m + 1) × k records of ≤ R + J + 2T  ("result" repeats mask 0's k records)
    joint:       Σ over blanks of k words of ≤ R + J + 2·len(blank)·T
    candidates:  Σ over words of R + J + 2·bytes(word)

R is a record's keys and numbers. At the per-field limits together (32 texts of 512 characters,
16 masks, top_k 50) that is 32 × 850 records × ~3.3 KB ≈ 90 MB: no sizing of the per-field
limits keeps that under 2 MB and still allows a paragraph, top_k 50, 16 masks and 32 texts. So
each field keeps its limit and the product is bounded here: a request whose bound exceeds
MAX_RESPONSE_BYTES (2 MB) is refused with 400 ``response_too_large`` saying what to lower.
The bound is of the /predict shape, the largest; /fill-mask's answer is smaller.
"""

import json
import re

from .errors import FillMaskError
from .text import adjacent_runs, find_masks

ESCAPED = re.compile(r'[\x00-\x1f"\\]')  # what JSON writes as an escape sequence
RECORD_BYTES = 128  # keys, score (up to 23 characters), probability, token_id, separators
TEXT_BYTES = 128  # per text: "result", "masks", "blanks", "choices" keys and brackets
MASK_BYTES = 48  # per mask or blank: {"index": i, "candidates": [...]} / "masks": [...]
BODY_BYTES = 512  # success, model name, precision, elapsed_ms


def json_bytes(value):
    """Bytes of ``value`` in the service's JSON (real characters, not \\u escapes)."""
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass"))


def token_bytes(words, excluded):
    """The longest offerable token of a vocabulary, in JSON bytes (T above)."""
    offered = [w for w, skip in zip(words, excluded, strict=True) if not skip]
    # UTF-8 length plus quotes, except for the few tokens JSON escapes: one json.dumps per
    # token of a 21 128-entry vocabulary took half a second.
    plain = max((len(w.encode("utf-8", "surrogatepass")) + 2 for w in offered), default=2)
    escaped = max((json_bytes(w) for w in offered if ESCAPED.search(w)), default=2)
    return max(plain, escaped)


def answer_bytes(req, max_masks, token, idiom=0):
    """Upper bound of the /predict answer's bytes for ``req`` (a ``requests.FillRequest``).

    ``idiom``: the lexicon's largest record in JSON bytes, when ``req`` asks for idioms.
    """
    k = min(req.top_k, len(req.targets)) if req.targets else req.top_k
    total = BODY_BYTES
    for text in req.texts:
        # More than max_masks masks are refused before any model run.
        spans = find_masks(text, req.blank)[:max_masks]
        record = RECORD_BYTES + json_bytes(text)
        total += TEXT_BYTES + len(spans) * MASK_BYTES
        total += (len(spans) + 1) * k * (record + 2 * token) if spans else 0
        if req.joint:
            # Joint decoding's blanks: the runs of directly adjacent masks.
            total += sum(
                MASK_BYTES + req.top_k * (record + 2 * len(run) * token)
                for run in adjacent_runs(spans)
            )
        total += sum(record + 2 * json_bytes(word) for word in req.candidates)
        total += req.top_k * (record + 2 * idiom) if req.idioms else 0
    return total


def check_answer_size(req, config, token, idiom=0):
    """Refuse, before any model run, a request whose answer could exceed MAX_RESPONSE_BYTES."""
    size = answer_bytes(req, config.max_masks, token, idiom)
    if size > config.max_response_bytes:
        raise FillMaskError(
            f"this request's answer could reach {size} bytes; at most "
            f"{config.max_response_bytes} (MAX_RESPONSE_BYTES): lower top_k, send fewer or "
            "shorter texts, or fewer masks per text",
            code="response_too_large",
        )
