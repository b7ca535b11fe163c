"""Errors that carry their HTTP status and a machine-readable code, and every code there is.

Raised anywhere below the HTTP layer; ``app.py`` turns them into
``{"success": false, "error": ..., "code": ...}`` with ``status``. ``ERROR_CODES`` is the one
list of codes: an error with a code not in it is a bug (refused at raise), and the OpenAPI
document lists the codes from it.
"""

ERROR_CODES = {
    400: (
        # the body, its fields and their types
        ("invalid_json", "invalid_body", "unknown_field", "missing_text", "invalid_type")
        # the texts, and how much work and answer they ask for
        + ("empty_text", "empty_batch", "batch_too_large", "text_too_long", "response_too_large")
        # fields that exclude each other
        + ("conflicting_fields",)
        # the masks
        + ("no_mask", "too_many_masks", "invalid_mask", "masks_too_far_apart")
        # top_k and targets
        + ("invalid_top_k", "invalid_targets", "invalid_target")
        # whole-word blanks, multiple choice, idioms
        + ("invalid_blank", "invalid_candidates", "idioms_unavailable")
    ),
    401: ("unauthorized",),
    403: ("origin_not_allowed",),
    404: ("not_found", "unknown_model"),
    405: ("method_not_allowed",),
    413: ("request_entity_too_large",),
    415: ("unsupported_media_type",),
    500: ("internal_error",),
    503: ("model_not_ready", "model_unavailable"),
    504: ("timeout",),
}
STATUS_OF = {code: status for status, codes in ERROR_CODES.items() for code in codes}


class FillMaskError(Exception):
    """A request the service refuses, with a message saying what is accepted.

    The status follows from the code (``ERROR_CODES``).
    """

    def __init__(self, message, *, code="invalid_body"):
        if code not in STATUS_OF:
            raise ValueError(f"undocumented error code {code!r}")
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = STATUS_OF[code]

    def to_dict(self):
        """The JSON body clients receive."""
        return {"success": False, "error": self.message, "code": self.code}


class ModelNotReady(FillMaskError):
    """The model is not loaded (yet, or it failed): 503."""

    def __init__(
        self, message="the model is not loaded yet; try again shortly", code="model_not_ready"
    ):
        super().__init__(message, code=code)


class ModelFilesError(Exception):
    """A model directory that is missing, incomplete or does not match its manifest."""
