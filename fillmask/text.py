"""Text preparation: mask spellings, tokenisation with offsets, and the window the model sees.

Pure Python + ``tokenizers``: what the predictor feeds to ``session.run`` is decided here, and
every later step (sequence rebuilding, joint decoding) refers back to the original text through
the character spans kept in ``Prepared``.
"""

import re
from dataclasses import dataclass, replace

from .errors import FillMaskError

MASK = "[MASK]"
# [MASK], [mask], full-width ［MASK］ from Chinese input methods, and mixtures of the two.
MASK_PATTERN = re.compile(r"[\[［]\s*mask\s*[\]］]", re.IGNORECASE)


@dataclass(frozen=True)
class Prepared:
    """One text ready for the model: ids for its window and where each mask came from."""

    text: str  # the user's original text
    spans: tuple  # (start, end) of each mask in ``text``, in order
    input_ids: tuple  # [CLS] window [SEP]
    mask_positions: tuple  # index of each mask in ``input_ids``

    @property
    def num_masks(self):
        return len(self.spans)

    def fill(self, fillers):
        """Return the original text with mask i replaced by ``fillers[i]`` (None keeps it)."""
        out, last = [], 0
        for (start, end), word in zip(self.spans, fillers, strict=True):
            out.append(self.text[last:start])
            out.append(self.text[start:end] if word is None else word)
            last = end
        out.append(self.text[last:])
        return "".join(out)

    def fill_one(self, index, word):
        """The original text with only mask ``index`` replaced by ``word``."""
        start, end = self.spans[index]
        return self.text[:start] + word + self.text[end:]

    @property
    def blanks(self):
        """Runs of directly adjacent masks ("[MASK][MASK]"), as tuples of mask indexes."""
        return adjacent_runs(self.spans)

    def with_tokens(self, fills):
        """A copy with the masks in ``fills`` (mask index → token id) replaced by those ids.

        Filled masks leave ``spans`` and ``mask_positions``, so the model returns rows only
        for the masks still open: joint decoding and candidate scoring build windows this way.
        """
        ids = list(self.input_ids)
        for index, token_id in fills.items():
            ids[self.mask_positions[index]] = token_id
        keep = [i for i in range(self.num_masks) if i not in fills]
        return replace(
            self,
            spans=tuple(self.spans[i] for i in keep),
            input_ids=tuple(ids),
            mask_positions=tuple(self.mask_positions[i] for i in keep),
        )


BLANK_PATTERNS = {"□": re.compile(MASK_PATTERN.pattern + "|□", re.IGNORECASE)}


def find_masks(text, blank=None):
    """Return the (start, end) spans of every mask spelling in ``text`` (and ``blank``'s)."""
    return [m.span() for m in BLANK_PATTERNS.get(blank, MASK_PATTERN).finditer(text)]


def adjacent_runs(spans):
    """Runs of directly adjacent spans (one ends where the next starts), as index tuples."""
    runs = []
    for index, (start, _) in enumerate(spans):
        if runs and spans[index - 1][1] == start:
            runs[-1].append(index)
        else:
            runs.append([index])
    return tuple(tuple(run) for run in runs)


class TextPreparer:
    """Tokenise texts into model windows; holds the tokenizer and the limits.

    The exporter uses one alone (before any ONNX file exists); ``Predictor`` is one.
    """

    def __init__(self, tokenizer, special, max_length=64, max_masks=16):
        """``special``: the manifest's ``special_tokens`` ids (``mask``, ``cls``, ``sep``)."""
        self.tokenizer = tokenizer
        self.mask_id = special["mask"]
        self.cls_id = special["cls"]
        self.sep_id = special["sep"]
        self.max_length = max_length
        self.max_masks = max_masks

    def prepare(self, text, field="text", blank=None):
        """Validate one text and return its ``Prepared`` window (``blank``: "□" masks too)."""
        if not isinstance(text, str):
            raise FillMaskError(f"{field} must be a string", code="invalid_type")
        if not text.strip():
            raise FillMaskError(
                f"{field} must not be empty; write a sentence containing [MASK]", code="empty_text"
            )
        spans = find_masks(text, blank)
        if not spans:
            raise FillMaskError(
                f"{field} must contain [MASK] (also accepted: [mask], ［MASK］)", code="no_mask"
            )
        if len(spans) > self.max_masks:
            raise FillMaskError(
                f"{field} has {len(spans)} masks; at most {self.max_masks} are accepted",
                code="too_many_masks",
            )
        # Canonical spelling so the tokenizer's added-token matcher sees exactly "[MASK]" (the
        # same matches find_masks found); surrogates (invalid in UTF-8) become U+FFFD so the
        # Rust tokenizer accepts the text.
        canonical = replace_surrogates(BLANK_PATTERNS.get(blank, MASK_PATTERN).sub(MASK, text))
        ids = self.tokenizer.encode(canonical, add_special_tokens=False).ids
        positions = [i for i, tok in enumerate(ids) if tok == self.mask_id]
        if len(positions) != len(spans):
            # A mask spelling glued into something the tokenizer read differently.
            raise FillMaskError(
                f"{field}: could not locate every [MASK]; put each mask "
                "between characters or spaces",
                code="invalid_mask",
            )
        window_start, window_end = self._window(len(ids), positions[0], positions[-1], field)
        window = [self.cls_id] + ids[window_start:window_end] + [self.sep_id]
        mask_positions = tuple(p - window_start + 1 for p in positions)
        return Prepared(
            text=text, spans=tuple(spans), input_ids=tuple(window), mask_positions=mask_positions
        )

    def _window(self, length, first, last, field):
        """Choose [start, end) of at most max_length-2 tokens holding every mask, centred."""
        room = self.max_length - 2
        if length <= room:
            return 0, length
        needed = last - first + 1
        if needed > room:
            raise FillMaskError(
                f"{field}: the masks span {needed} tokens, more than fit in one window of "
                f"{room} tokens (max_length {self.max_length}); put the masks closer together "
                "or split the text",
                code="masks_too_far_apart",
            )
        # Give the masks as much context on both sides as the window allows.
        start = max(0, first - (room - needed) // 2)
        start = min(start, length - room)
        return start, start + room


SURROGATES = re.compile("[\ud800-\udfff]")


def replace_surrogates(segment):
    """Replace lone surrogates, which cannot be encoded as UTF-8, with U+FFFD."""
    return SURROGATES.sub("\ufffd", segment)


# CJK ideographs: the unified block (U+4E00-9FFF), Extension A (U+3400-4DBF), Extensions B-H
# (U+20000-323AF), and the compatibility ideographs (U+F900-FAFF, U+2F800-2FA1F).
HANZI = re.compile(
    "[\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U000323af\uf900-\ufaff\U0002f800-\U0002fa1f]+"
)


def is_hanzi(text):
    """Whether ``text`` (a character or a word) is written in CJK ideographs only."""
    return HANZI.fullmatch(text) is not None
