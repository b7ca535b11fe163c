"""The fill-mask web service: ``gunicorn app:app`` (see gunicorn.conf.py) or ``create_app()``.

The model is loaded inside ``create_app``, which Gunicorn calls in each worker after the fork
(``app`` below is created on first access, not at import), so every worker owns its own
onnxruntime session and is ready before it accepts its first request.
"""

import logging
import os
import signal
import threading

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException, InternalServerError

from fillmask import api, deadline, metrics, openapi, page, security, v2
from fillmask.batcher import MicroBatcher
from fillmask.cache import LRUCache
from fillmask.config import Config, ConfigError, check_vocabulary
from fillmask.errors import FillMaskError, ModelFilesError
from fillmask.runner import UnbatchedRunner
from fillmask.watchdog import RunWatch

logger = logging.getLogger("fillmask")
# A hung worker that cannot stop gracefully exits this long after REQUEST_TIMEOUT (seconds).
EXIT_MARGIN_SECONDS = 2


def create_app(config=None):
    """Build the Flask app. ``config``: a ``Config``, a dict of overrides, or None (environment)."""
    if config is None:
        config = Config.from_env()
    elif isinstance(config, dict):
        config = Config.from_env(**config)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    app.json.ensure_ascii = False  # real Chinese characters in responses, not \uXXXX
    app.json.sort_keys = False  # keep the documented field order
    app.extensions["fillmask"] = api.Runtime(
        config=config, cache=LRUCache(config.cache_size, config.cache_bytes)
    )
    load_predictor(app.extensions["fillmask"])
    app.register_blueprint(api.bp)
    app.register_blueprint(page.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(v2.bp)
    metrics.init_app(app, config)  # before security: its timer must start before any refusal
    security.init_app(app, config)
    register_deadline(app, config)
    register_error_handlers(app)
    return app


def register_deadline(app, config):
    """Give every request ``REQUEST_TIMEOUT`` seconds (``fillmask.deadline``): then a JSON 504."""

    @app.before_request
    def start_clock():
        deadline.start(config.request_timeout)

    @app.teardown_request
    def stop_clock(_exc):
        deadline.clear()


def load_predictor(rt):
    """Create the worker's predictor; keep the reason when it cannot (503s until fixed)."""
    from fillmask.predictor import Predictor
    from fillmask.session import return_freed_memory

    cfg = rt.config
    return_freed_memory()  # before the session is built: its parsed copy goes back to the OS
    try:
        predictor = Predictor(
            cfg.model_dir,
            precision=cfg.model_precision,
            max_length=cfg.max_length,
            threads=cfg.ort_threads,
            max_masks=cfg.max_masks,
            verify=cfg.model_verify,
            batch_max=cfg.batch_max,
        )
        check_vocabulary(cfg, int((~predictor.excluded).sum()))
    except (ModelFilesError, FillMaskError, ConfigError) as exc:
        if cfg.strict:
            raise
        rt.error = str(exc)
        logger.error("model not loaded: %s", exc)
        return
    # One run before the first request: onnxruntime allocates its buffers on the first run, so
    # the first user does not pay for it.
    predictor.log_probs([predictor.prepare("[MASK]")])
    run = RunWatch(cfg.hung_run_seconds, stop_hung_worker(rt)).track(
        metrics.observe_runs(predictor.log_probs)
    )
    # Either way a request waits for its rows at most until its deadline (JSON 504).
    predictor.infer = (
        MicroBatcher(run, cfg.batch_max, cfg.batch_window_ms, timeout=cfg.request_timeout)
        if cfg.batching
        else UnbatchedRunner(run, timeout=cfg.request_timeout)
    ).submit
    rt.predictor = predictor
    metrics.MODEL_INFO.labels(predictor.name, predictor.precision).set(1)
    logger.info(
        "model %s (%s) loaded from %s, %d ORT thread(s), batching %s",
        predictor.name,
        predictor.precision,
        cfg.model_dir,
        cfg.ort_threads,
        "on" if cfg.batching else "off",
    )


def stop_hung_worker(rt):
    """What to do when a model run hangs: answer 503 from now on, and replace this worker."""

    def stop(_age):
        rt.error = "a model run hung; this worker is being replaced"
        # Gunicorn's worker stops gracefully on SIGTERM and its master starts a new one. Requests
        # waiting for the hung run get their 504 within REQUEST_TIMEOUT meanwhile.
        os.kill(os.getpid(), signal.SIGTERM)
        # A thread stuck inside session.run would keep the process from ever exiting. Every other
        # request in flight has its answer within REQUEST_TIMEOUT; a little more to send it.
        threading.Event().wait(rt.config.request_timeout + EXIT_MARGIN_SECONDS)
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
        body = {"success": False, "error": messages.get(exc.code, exc.name), "code": code}
        response = jsonify(body)
        response.status_code = exc.code or 500
        if exc.code == 405 and getattr(exc, "valid_methods", None):
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response


def __getattr__(name):
    """``app`` for ``gunicorn app:app``, built on first access (in the worker, after fork)."""
    if name == "app":
        logging.basicConfig(level=logging.INFO)
        try:
            globals()["app"] = create_app(Config.from_env(strict=True))
        except (ConfigError, ModelFilesError, FillMaskError) as exc:
            # A model that cannot load, or a setting it cannot honour (MAX_TOP_K over its
            # vocabulary): one line, and the exit status on which Gunicorn's master stops
            # instead of forking worker after failing worker.
            from gunicorn.arbiter import Arbiter

            logger.error("cannot start: %s", exc)
            raise SystemExit(Arbiter.WORKER_BOOT_ERROR) from None
        return globals()["app"]
    raise AttributeError(name)
