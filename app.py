"""The fill-mask web service: ``gunicorn app:app`` (see gunicorn.conf.py) or ``create_app()``.

The model is loaded inside ``create_app``, which Gunicorn calls in each worker after the fork
(``app`` below is created on first access, not at import), so every worker owns its own
onnxruntime session and is ready before it accepts its first request.
"""

import logging
import os
import signal
import threading

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException, InternalServerError

from fillmask import api, deadline, metrics, openapi, page, security, v2
from fillmask.config import Config, ConfigError
from fillmask.errors import FillMaskError, ModelFilesError
from fillmask.service import FillService

logger = logging.getLogger("fillmask")
# A hung worker that cannot stop gracefully exits this long after REQUEST_TIMEOUT (seconds).
EXIT_MARGIN_SECONDS = 2


def create_app(config=None, strict=True):
    """Build the Flask app. ``config``: a ``Config``, a dict of overrides, or None (environment).

    ``strict``: raise when a model cannot load; under Gunicorn (``app`` below) a model that
    cannot load leaves a reason, its requests get a 503 and the others serve.
    """
    if config is None:
        config = Config.from_env()
    elif isinstance(config, dict):
        config = Config.from_env(**config)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.ensure_ascii = False  # real Chinese characters in responses, not \uXXXX
    app.json.sort_keys = False  # keep the documented field order
    service = FillService(config)
    app.extensions["fillmask"] = service.load(stop_hung_worker(service), strict=strict)
    app.register_blueprint(api.bp)
    app.register_blueprint(page.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(v2.bp)
    metrics.init_app(app, config)  # before security: its timer must start before any refusal
    security.init_app(app, config)
    # Every request gets REQUEST_TIMEOUT seconds (``fillmask.deadline``): then a JSON 504.
    app.before_request(lambda: deadline.start(config.request_timeout))
    app.teardown_request(lambda _exc: deadline.clear())
    register_error_handlers(app)
    return app


def stop_hung_worker(service):
    """What to do when a model run hangs: answer 503 from now on, and replace this worker."""

    def stop(_age):
        service.error = "a model run hung; this worker is being replaced"
        # Gunicorn's worker stops gracefully on SIGTERM and its master starts a new one. Requests
        # waiting for the hung run get their 504 within REQUEST_TIMEOUT meanwhile.
        os.kill(os.getpid(), signal.SIGTERM)
        # A thread stuck inside session.run would keep the process from ever exiting. Every other
        # request in flight has its answer within REQUEST_TIMEOUT; a little more to send it.
        threading.Event().wait(service.config.request_timeout + EXIT_MARGIN_SECONDS)
        logger.error("the worker did not stop after a hung model run; exiting now")
        os._exit(1)

    return stop


def register_error_handlers(app):
    """Every error is JSON: our own 4xx/503, Werkzeug's HTTP errors, and a generic 500."""

    @app.errorhandler(FillMaskError)
    def fill_mask_error(exc):
        return jsonify(exc.to_dict()), exc.status

    @app.errorhandler(InternalServerError)
    def internal_error(exc):
        # Details stay in the log; the client learns only that it was our fault.
        original = getattr(exc, "original_exception", None) or exc
        logger.error("unhandled error", exc_info=original)
        return jsonify(
            {"success": False, "error": "internal server error", "code": "internal_error"}
        ), 500

    @app.errorhandler(HTTPException)
    def http_error(exc):
        messages = {
            404: "no such endpoint; see GET / for the page and POST /predict for the API",
            405: "method not allowed for this endpoint",
            413: f"the request body is larger than {app.config['MAX_CONTENT_LENGTH']} bytes",
        }
        code = (exc.name or "error").lower().replace(" ", "_")
        message = messages.get(exc.code, exc.name)
        if request.path == "/v2" or request.path.startswith("/v2/"):
            message = "no such v2 endpoint" if exc.code == 404 else message
            response = jsonify({"error": message})  # the protocol's error object
        else:
            response = jsonify({"success": False, "error": message, "code": code})
        response.status_code = exc.code or 500
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response


def __getattr__(name):
    """``app`` for ``gunicorn app:app``, built on first access (in the worker, after fork)."""
    if name == "app":
        try:
            app = create_app(Config.from_env(), strict=False)
            service = app.extensions["fillmask"]
            default = service.config.model_dirs[0].rstrip("/").rsplit("/", 1)[-1]
            if default in service.failed:  # the others' requests get a 503; the default's: exit
                raise ModelFilesError(service.failed[default])
            for name, reason in service.failed.items():
                logger.error("model %s not loaded (its requests get 503): %s", name, reason)
            globals()["app"] = app
        except (ConfigError, ModelFilesError, FillMaskError) as exc:
            # A model that cannot load, or a setting it cannot honour (MAX_TOP_K over its
            # vocabulary): one line, and the exit status on which Gunicorn's master stops
            # instead of forking worker after failing worker.
            from gunicorn.arbiter import Arbiter

            logger.error("cannot start: %s", exc)
            raise SystemExit(Arbiter.WORKER_BOOT_ERROR) from None
        return globals()["app"]
    raise AttributeError(name)
