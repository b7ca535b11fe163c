"""Request shapes, declared once: pydantic models that validate bodies and make the OpenAPI schemas.

``Shapes(config)`` builds the models with the configured limits (``top_k`` at most MAX_TOP_K,
…), so the document states exactly what the server enforces. Every protocol parses its body into
one ``FillRequest``. A refusal is a ``FillMaskError`` naming the field (``texts[1]``), what was
wrong and what is accepted (the field's description, which the document shows too).
"""

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, Discriminator, Field, StringConstraints, Tag

from .errors import FillMaskError
from .refusal import parse, unknown_fields

TOP_K = 5  # the default number of candidates: the one place it is written


@dataclass(frozen=True)
class FillRequest:
    """A validated fill-mask request, whichever protocol it came through (hashable: a cache key)."""

    texts: tuple
    batch: bool = False  # a list of texts was given (answer with one result per text)
    top_k: int = TOP_K
    targets: tuple = ()
    joint: bool = False  # decode each run of adjacent masks as one word ("blanks")
    candidates: tuple = ()  # words to rank for the text's one blank ("choices")
    model: str | None = None  # None: the default (first) model
    hanzi_only: bool = False  # only CJK ideographs as candidates, words and choices
    idioms: bool = False  # lexicon idioms that fit the text's one blank
    blank: str | None = None  # another mask spelling for this request ("□")
    names: tuple = field(default=(), compare=False)  # each text's field name in errors


def without_null_defaults(schema):
    """An optional field left out has a default; null is not a value the document offers."""
    for prop in schema.get("properties", {}).values():
        if prop.get("default", 0) is None:
            del prop["default"]


class Closed(
    BaseModel, extra="forbid", strict=True, frozen=True, json_schema_extra=without_null_defaults
):
    """Unknown fields refused, no coercion ("5" is not 5: every field strict), frozen."""


def described(kind, text, **limits):
    """``kind`` with ``limits``, and ``text`` (what is accepted) as its description."""
    return Annotated[kind, Field(description=text, **limits)]


class Shapes:
    """The request models for one ``Config``."""

    def __init__(self, config):
        c = config
        self.text_accepted = (
            f"must be a string containing [MASK], at most {c.max_text_chars} characters "
            "(MAX_TEXT_CHARS)"
        )
        Text = described(str, self.text_accepted, max_length=c.max_text_chars)
        Texts = described(
            list[Text],
            f"must be a list of strings (at least one, at most {c.max_texts}: MAX_TEXTS), each "
            "with [MASK]",
            min_length=1,
            max_length=c.max_texts,
        )
        TopK = described(int, f"must be an integer from 1 to {c.max_top_k}", ge=1, le=c.max_top_k)
        Token = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
        Targets = described(
            Annotated[list[Token], Field(min_length=1, max_length=c.max_targets)] | Token | None,
            f"must be a non-empty string or a non-empty list of at most {c.max_targets} "
            'single-token strings, e.g. ["好", "坏"]',
        )
        Word = Annotated[Token, Field(max_length=c.max_candidate_chars)]
        Candidates = described(
            Annotated[list[Word], Field(min_length=1, max_length=c.max_candidates)] | None,
            f"must be a list of 1 to {c.max_candidates} words of 1 to {c.max_candidate_chars} "
            'characters, e.g. ["添足", "点睛"]',
        )
        Flag = described(bool, "must be true or false")
        ModelName = described(str | None, "must be the name of a served model (GET /health)")
        BlankSpelling = described(Literal["□"] | None, 'must be "□" (one per character) or null')

        class Options(Closed):
            """What every protocol may ask besides its texts."""

            top_k: TopK = min(TOP_K, c.max_top_k)  # MAX_TOP_K below 5 lowers the default too
            targets: Targets = None
            hanzi_only: Flag = False

        class PredictRequest(Options):
            """POST /predict: ``text`` or ``texts``, and how to fill them."""

            text: Text = None  # null is refused: "text must be a string"
            texts: Texts = None
            joint: described(bool | None, "must be true or false") = False
            candidates: Candidates = None
            idioms: Flag = False
            blank: BlankSpelling = None
            model: ModelName = None

        one_or_many = Discriminator(lambda v: "many" if isinstance(v, list) else "one")
        Inputs = described(
            Annotated[Annotated[Text, Tag("one")] | Annotated[Texts, Tag("many")], one_or_many],
            "must be a string containing [MASK] or a list of such strings (at least one, "
            f"at most {c.max_texts})",
        )

        class HFParameters(Options):
            """The Hugging Face fill-mask parameters."""

        class HFOptions(BaseModel, extra="allow"):
            """The Hugging Face API's ``options`` (use_cache, wait_for_model): accepted, unused."""

        class FillMaskRequest(Closed):
            """POST /fill-mask, the Hugging Face Inference API body."""

            inputs: Inputs
            parameters: described(HFParameters | None, "must be an object: top_k, targets") = None
            options: described(HFOptions | None, "must be an object") = None
            model: ModelName = None

        self.Options = Options
        self.PredictRequest = PredictRequest
        self.FillMaskRequest = FillMaskRequest

    def predict(self, body):
        """A ``POST /predict`` body (a dict) → ``FillRequest``.

        Unknown fields first (a typo is named), then exactly one of text / texts, then the
        fields' values.
        """
        unknown_fields(body, self.PredictRequest)
        if "text" in body and "texts" in body:
            raise FillMaskError("give either text or texts, not both", code="conflicting_fields")
        if "text" not in body and "texts" not in body:
            raise FillMaskError(
                'missing field text: send {"text": "...[MASK]..."} or {"texts": [...]}',
                code="missing_text",
            )
        p = parse(self.PredictRequest, body, self)
        if p.targets and p.candidates:
            raise FillMaskError(
                "give either targets (single tokens scored per mask) or candidates "
                "(words ranked for the blank), not both",
                code="conflicting_fields",
            )
        texts, name = (p.text, "text") if p.texts is None else (p.texts, "texts")
        words = tuple(dict.fromkeys(p.candidates or ()))  # repeats merged, order kept
        more = dict(joint=bool(p.joint), idioms=p.idioms, blank=p.blank, model=p.model)
        return self.request(p, texts, name, candidates=words, **more)

    def fill_mask(self, body):
        """A ``POST /fill-mask`` body (a dict) → ``FillRequest``: unknown fields first, then
        ``inputs``, then the fields' values."""
        unknown_fields(body, self.FillMaskRequest)
        if "inputs" not in body:
            raise FillMaskError(
                'missing field inputs: send {"inputs": "...[MASK]..."}', code="missing_text"
            )
        p = parse(self.FillMaskRequest, body, self)
        return self.request(p.parameters or self.Options(), p.inputs, "inputs", model=p.model)

    def request(self, options, texts, name, **more):
        """The ``FillRequest`` for validated ``texts`` (a string, or a list: a batch) and
        ``options``; ``name``: what the protocol calls them, for messages."""
        batch = isinstance(texts, list)
        targets = options.targets
        return FillRequest(
            texts=tuple(texts) if batch else (texts,),
            batch=batch,
            top_k=options.top_k,
            targets=(targets,) if isinstance(targets, str) else tuple(targets or ()),
            hanzi_only=options.hanzi_only,
            names=tuple(f"{name}[{i}]" for i in range(len(texts))) if batch else (name,),
            **more,
        )
