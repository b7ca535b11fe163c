"""Prometheus metrics: every metric object and name, the request hooks, and ``GET /metrics``.

Under Gunicorn the master sets PROMETHEUS_MULTIPROC_DIR (``fillmask.metrics_setup``) before
it forks, so each worker writes its values to files there and /metrics, whichever worker
answers, sums them over all workers. Without it (tests, ``create_app`` in-process) the
metrics live in the default registry. The objects are created once, at import, so building
several apps in one process registers nothing twice.
"""

import functools
import logging
import os
import time

from flask import g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from . import security
from .metrics_setup import ENV, access_mode

logger = logging.getLogger(__name__)

REQUESTS = Counter(
    "fillmask_requests_total",
    "HTTP requests answered, by endpoint (the route, not the raw path) and status code.",
    ["endpoint", "status"],
)
REQUEST_SECONDS = Histogram(
    "fillmask_request_duration_seconds",
    "Time from the request's arrival in Flask to its response, by endpoint.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
MODEL_RUN_SECONDS = Histogram(
    "fillmask_model_run_duration_seconds",
    "Time of one onnxruntime session.run over a (micro-)batch of texts, by model.",
    ["model"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_SIZE = Histogram(
    "fillmask_batch_size",
    "Texts (model rows) in one session.run, by model.",
    ["model"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
QUEUE_SECONDS = Histogram(
    "fillmask_batch_queue_duration_seconds",
    "Time a request's texts waited in the micro-batcher before their batch started.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CACHE_HITS = Counter("fillmask_cache_hits_total", "Requests answered from the LRU cache.")
CACHE_MISSES = Counter("fillmask_cache_misses_total", "Cache lookups that found nothing.")
# livemax: one series per loaded model, 1 while any live worker serves it; a dead worker's
# value leaves with it (mark_process_dead) instead of lingering.
MODEL_INFO = Gauge(
    "fillmask_model_info",
    "The model the workers serve (value 1), by name and precision.",
    ["model", "precision"],
    multiprocess_mode="livemax",
)


def observe_runs(run, model):
    """``run(items)`` that also records its duration and batch size under ``model``'s label."""
    seconds, sizes = MODEL_RUN_SECONDS.labels(model), BATCH_SIZE.labels(model)

    @functools.wraps(run)
    def timed(items):
        started = time.perf_counter()
        rows = run(items)
        seconds.observe(time.perf_counter() - started)
        sizes.observe(len(items))
        return rows

    return timed


def init_app(app, config):
    """Record every request of ``app`` and serve /metrics, as ``METRICS`` allows."""
    mode = access_mode(config)
    if mode == "off":
        return
    token = config.api_token.encode("utf-8") if mode == "token" else None
    path = os.environ.get(ENV)  # read once here, not per scrape
    app.before_request(start_timer)
    app.after_request(record_request)

    @app.get("/metrics")
    def metrics():
        """The Prometheus text format, summed over all workers under Gunicorn."""
        refused = security.check_token(token) if token is not None else None
        if refused is not None:
            return refused
        registry = REGISTRY
        if path:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}


def start_timer():
    g.metrics_started = time.perf_counter()


def record_request(response):
    """Count the response by route and status and time it (also for errors and 401s)."""
    endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
    REQUESTS.labels(endpoint, str(response.status_code)).inc()
    started = g.pop("metrics_started", None)
    if started is not None:
        REQUEST_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
    return response
