"""Errors that carry their HTTP status and a machine-readable code.

Raised anywhere below the HTTP layer; ``app.py`` turns them into
``{"success": false, "error": ..., "code": ...}`` with ``status``.
"""


class FillMaskError(Exception):
    """A request the service refuses, with a message saying what is accepted."""

    status = 400

    def __init__(self, message, *, code="bad_request", status=None):
        super().__init__(message)
        self.message = message
        self.code = code
        if status is not None:
            self.status = status

    def to_dict(self):
        """The JSON body clients receive."""
        return {"success": False, "error": self.message, "code": self.code}


class ModelNotReady(FillMaskError):
    """The model is not loaded (yet, or it failed): 503."""

    status = 503

    def __init__(
        self, message="the model is not loaded yet; try again shortly", code="model_not_ready"
    ):
        super().__init__(message, code=code)


class ModelFilesError(Exception):
    """A model directory that is missing, incomplete or does not match its manifest."""
