"""Request shapes, declared once: pydantic models that validate bodies and make the OpenAPI schemas.

``Shapes(config)`` builds the models with the configured limits (``top_k`` at most MAX_TOP_K,
…), so the document states exactly what the server enforces. Every protocol parses its body into
one ``FillRequest``. A refusal is a ``FillMaskError`` naming the field (``texts[1]``), what was
wrong and what is accepted (the field's description, which the document shows too).
"""

from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
    Tag,
    ValidationError,
    model_validator,
)

from .errors import FillMaskError
from .refusal import refusal, unknown_fields

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


class Closed(BaseModel):
    """Unknown fields refused, no coercion ("5" is not 5), frozen."""

    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, json_schema_extra=without_null_defaults
    )


def described(kind, text, **limits):
    """``kind`` with ``limits``, and ``text`` (what is accepted) as its description."""
    return Annotated[kind, Field(description=text, **limits)]


class Shapes:
    """The request models for one ``Config``."""

    def __init__(self, config):
        self.config = config
        c = config
        self.top_k = min(TOP_K, c.max_top_k)  # MAX_TOP_K below 5 lowers the default with it
        self.text_accepted = (
            f"must be a string containing [MASK], at most {c.max_text_chars} characters "
            "(MAX_TEXT_CHARS)"
        )
        Text = described(StrictStr, self.text_accepted, max_length=c.max_text_chars)
        Texts = described(
            list[Text],
            f"must be a list of strings (at least one, at most {c.max_texts}: MAX_TEXTS), each "
            "with [MASK]",
            min_length=1,
            max_length=c.max_texts,
        )
        TopK = described(
            StrictInt, f"must be an integer from 1 to {c.max_top_k}", ge=1, le=c.max_top_k
        )
        Token = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1)]
        Targets = described(
            Annotated[list[Token], Field(min_length=1, max_length=c.max_targets)] | Token | None,
            f"must be a non-empty string or a non-empty list of at most {c.max_targets} "
            'single-token strings, e.g. ["好", "坏"]',
        )
        Word = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1)]
        Word = Annotated[Word, Field(max_length=c.max_candidate_chars)]
        Candidates = described(
            Annotated[list[Word], Field(min_length=1, max_length=c.max_candidates)] | None,
            f"must be a list of 1 to {c.max_candidates} words of 1 to {c.max_candidate_chars} "
            'characters, e.g. ["添足", "点睛"]',
        )
        Flag = described(StrictBool, "must be true or false")
        ModelName = described(StrictStr | None, "must be the name of a served model (GET /health)")
        BlankSpelling = described(Literal["□"] | None, 'must be "□" (one per character) or null')

        class Options(Closed):
            """What every protocol may ask besides its texts."""

            top_k: TopK = self.top_k
            targets: Targets = None
            hanzi_only: Flag = False

        class PredictRequest(Options):
            """POST /predict: ``text`` or ``texts``, and how to fill them."""

            text: Text = None  # null is refused: "text must be a string"
            texts: Texts = None
            joint: described(StrictBool | None, "must be true or false") = False
            candidates: Candidates = None
            idioms: Flag = False
            blank: BlankSpelling = None
            model: ModelName = None

            @model_validator(mode="before")
            @classmethod
            def one_of_text_or_texts(cls, body):
                """Unknown fields first (a typo is named), then exactly one of text / texts."""
                unknown_fields(body, cls)
                if "text" in body and "texts" in body:
                    raise FillMaskError(
                        "give either text or texts, not both", code="conflicting_fields"
                    )
                if "text" not in body and "texts" not in body:
                    raise FillMaskError(
                        'missing field text: send {"text": "...[MASK]..."} or {"texts": [...]}',
                        code="missing_text",
                    )
                return body

        one_or_many = Discriminator(lambda v: "many" if isinstance(v, list) else "one")
        Inputs = described(
            Annotated[Annotated[Text, Tag("one")] | Annotated[Texts, Tag("many")], one_or_many],
            "must be a string containing [MASK] or a list of such strings (at least one, "
            f"at most {c.max_texts})",
        )

        class HFParameters(Options):
            """The Hugging Face fill-mask parameters."""

        class HFOptions(BaseModel):
            """The Hugging Face API's ``options`` (use_cache, wait_for_model): accepted, unused."""

            model_config = ConfigDict(extra="allow")

        class FillMaskRequest(Closed):
            """POST /fill-mask, the Hugging Face Inference API body."""

            inputs: Inputs
            parameters: described(HFParameters | None, "must be an object: top_k, targets") = None
            options: described(HFOptions | None, "must be an object") = None
            model: ModelName = None

            @model_validator(mode="before")
            @classmethod
            def named_fields(cls, body):
                unknown_fields(body, cls)
                if "inputs" not in body:
                    raise FillMaskError(
                        'missing field inputs: send {"inputs": "...[MASK]..."}',
                        code="missing_text",
                    )
                return body

        self.Options, self.PredictRequest, self.FillMaskRequest = (
            Options,
            PredictRequest,
            FillMaskRequest,
        )

    def parse(self, model, body, *, rename=None):
        """Validate ``body`` (a dict) against ``model``, refusing with the field named.

        ``rename``: what the protocol calls ``texts`` ("inputs[0].data"), for messages.
        """
        if not isinstance(body, dict):
            raise FillMaskError(
                'the JSON body must be an object, e.g. {"text": "今天天气真[MASK]啊"}',
                code="invalid_body",
            )
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise refusal(exc, model, self, rename) from None

    def predict(self, body):
        """A ``POST /predict`` body → ``FillRequest``."""
        p = self.parse(self.PredictRequest, body)
        batch = p.texts is not None
        texts = tuple(p.texts) if batch else (p.text,)
        return self.request(
            p,
            texts,
            batch,
            "texts" if batch else "text",
            joint=bool(p.joint),
            candidates=p.candidates,
            idioms=p.idioms,
            blank=p.blank,
            model=p.model,
        )

    def fill_mask(self, body):
        """A ``POST /fill-mask`` body → ``FillRequest``."""
        p = self.parse(self.FillMaskRequest, body)
        batch = isinstance(p.inputs, list)
        texts = tuple(p.inputs) if batch else (p.inputs,)
        options = p.parameters or self.Options()
        return self.request(options, texts, batch, "inputs", model=p.model)

    def request(self, options, texts, batch, name, candidates=None, **more):
        """The ``FillRequest`` for validated ``texts`` and ``options``."""
        targets = options.targets
        targets = () if targets is None else (targets,) if isinstance(targets, str) else targets
        candidates = tuple(dict.fromkeys(candidates or ()))  # repeats merged, order kept
        if targets and candidates:
            raise FillMaskError(
                "give either targets (single tokens scored per mask) or candidates "
                "(words ranked for the blank), not both",
                code="conflicting_fields",
            )
        names = (f"{name}[{i}]" for i in range(len(texts))) if batch else (name,)
        return FillRequest(
            texts=texts,
            batch=batch,
            top_k=options.top_k,
            targets=tuple(targets),
            candidates=candidates,
            hanzi_only=options.hanzi_only,
            names=tuple(names),
            **more,
        )
