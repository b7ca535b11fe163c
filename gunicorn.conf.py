"""Gunicorn settings for the fill-mask service: ``gunicorn app:app`` reads this file.

Every setting can be overridden from the environment (docs/configuration.md). No
``preload_app``: each worker imports the app after the fork and builds its own onnxruntime
session (sessions are not fork-safe) before it accepts its first request.
"""

import errno
import json
import os
import socket
import sys
import threading

# The config file is read before --chdir applies: make the project importable from anywhere.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fillmask import drain, metrics_setup
from fillmask.config import Config
from fillmask.errors import ModelFilesError
from fillmask.model_files import REFUSED_ENV, open_model_dir

# -- Server socket -----------------------------------------------------------------------------
bind = os.environ.get("BIND", "0.0.0.0:5000")
# A short accept queue (Gunicorn's default is 2048): behind nginx or a Service nothing should wait
# long in it, and after SIGTERM new connections are refused at once instead of queueing on a
# closing listener (tests/test_load.py::test_sigterm_master_finishes_in_flight failed with 2048).
backlog = 64
# Off by default: with SO_REUSEPORT a second copy of the server (a second ./run.sh, or a manual
# run beside the systemd unit) binds the same port without an error and silently takes part of
# the traffic. On (REUSE_PORT=1) each worker listens on its own socket and the kernel spreads
# connections over them; on one shared socket a single worker took 98% of 32 keep-alive
# clients' work (tests/test_load.py), leaving the other's cores idle. Either way the start is
# refused while anything else holds the address (``on_starting``).
reuse_port = os.environ.get("REUSE_PORT", "0").lower() in ("1", "true", "yes", "on")

# -- Workers -----------------------------------------------------------------------------------
# gthread: a few threads per worker let concurrent requests meet in the micro-batcher, and idle
# keep-alive connections do not hold a thread. Slow clients are nginx's job: the documented
# deployment (deploy/nginx-fillmask.conf) buffers whole requests before they reach Gunicorn, as
# Gunicorn's documentation advises; REQUEST_TIMEOUT bounds the app's own work (a JSON 504).
workers = int(os.environ.get("WORKERS", "2"))
worker_class = "gthread"
# 8: at 16 clients batches of up to 8 cost 20 ms CPU per request against 26 ms with 4 threads
# (and 32 ms unbatched), measured by bench.py on a 2-core PC.
threads = int(os.environ.get("THREADS", "8"))
preload_app = False
# ORT_THREADS' default (fillmask/config.py) is cores ÷ WORKERS: more threads than cores only adds
# contention.

# -- Timeouts ----------------------------------------------------------------------------------
# A worker whose main loop is silent this long is restarted. A request's own limit is the app's
# REQUEST_TIMEOUT (smaller), and a hung model run is HUNG_RUN_SECONDS (fillmask/watchdog.py).
timeout = int(os.environ.get("TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "30"))  # in-flight requests finish
# Above the nginx sites' upstream keepalive_timeout (4 s): nginx closes an idle connection first,
# so it never sends a request on one Gunicorn is closing.
keepalive = int(os.environ.get("KEEPALIVE", "5"))

# -- Request limits (the body limit is MAX_BODY_BYTES, enforced by the app) --------------------
# Gunicorn's own request-line and header-size limits; fewer header fields (its default is 100)
# than any client of this API sends. GUNICORN_CMD_ARGS reaches them if ever needed.
limit_request_fields = 50

# -- Logging -----------------------------------------------------------------------------------
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
loglevel = os.environ.get("LOG_LEVEL", "info")
if loglevel.lower() not in LOG_LEVELS:
    sys.exit(f"cannot start: LOG_LEVEL={loglevel} is not one of {', '.join(LOG_LEVELS)}")
errorlog = "-"
accesslog = None if os.environ.get("ACCESS_LOG", "1").lower() in ("0", "false", "off") else "-"
# %(M)s: request duration in milliseconds.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms'
# One format for Gunicorn's lines, the access log and the app's "fillmask.*" loggers: Gunicorn's
# own, with time and pid. Gunicorn merges this dict over glogging.CONFIG_DEFAULTS, whose
# "generic" format and handlers (console: stdout, error_console: stderr) it keeps. Gunicorn's own
# two loggers never propagate (glogging.Logger sets that).
logconfig_dict = {
    "root": {"level": "WARNING", "handlers": ["error_console"]},  # other libraries' warnings
    "loggers": {
        "gunicorn.error": {"level": loglevel.upper(), "handlers": ["error_console"]},
        # With a logconfig_dict Gunicorn always logs access: ACCESS_LOG=0 gives it no handler.
        "gunicorn.access": {"handlers": ["console"] if accesslog else [], "propagate": False},
        "fillmask": {"level": loglevel.upper()},  # through root's handler
    },
}

# -- Control socket ----------------------------------------------------------------------------
# Gunicorn >= 25.1 opens a management socket (gunicornc) at $XDG_RUNTIME_DIR/gunicorn.ctl or
# ~/.gunicorn/gunicorn.ctl, one path for every instance of a user: nothing here uses it.
control_socket_disable = True


def on_starting(server):
    """Check the model directory once, in the master, before any worker is forked.

    A missing or damaged model stops the server with one clear line instead of a loop of
    workers failing to boot. The full sha256 check runs here, once; workers compare sizes.
    """
    try:
        check_address_free(server)
        # The workers' Config, read here too: one set of defaults, and a bad value (say
        # MAX_LENGTH=lots) stops the server with one line instead of failing every worker boot.
        cfg = Config.from_env()
        check_timeouts(cfg, server.cfg.timeout, server.cfg.graceful_timeout)
        precision, verify = cfg.model_precision, "sha256" if cfg.model_verify != "none" else "none"
        names, refused = {}, {}
        for index, path in enumerate(cfg.model_dirs):
            try:
                files = open_model_dir(path, precision, verify=verify)
            except ModelFilesError as exc:
                if index == 0:  # the default model: without it there is no service
                    raise
                server.log.error("model at %s not served (its requests get 503): %s", path, exc)
                refused[path] = str(exc)
                continue
            if files.name in names:
                raise ValueError(
                    f"MODEL_DIR names two directories of the model {files.name!r} "
                    f"({names[files.name]}, {path}); one per name"
                )
            names[files.name] = path
            server.log.info("model %s (%s) at %s checked (%s)", files.name, precision, path, verify)
        os.environ[REFUSED_ENV] = json.dumps(refused)  # the workers answer those with 503
        # Before any fork: every worker must find PROMETHEUS_MULTIPROC_DIR set when it starts.
        metrics_dir = metrics_setup.prepare_dir(cfg)
    except (ModelFilesError, ValueError) as exc:
        server.log.error("cannot start: %s", exc)
        sys.exit(1)
    if metrics_dir:
        server.log.info("metrics of all workers in %s", metrics_dir)


def child_exit(server, worker):
    """A worker died or was replaced: its live gauges (the model info) leave /metrics."""
    metrics_setup.mark_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory when it was a temporary one."""
    metrics_setup.remove_dir(Config.from_env(), os.environ.get(metrics_setup.ENV))


def check_timeouts(cfg, timeout, graceful_timeout):
    """REQUEST_TIMEOUT below Gunicorn's TIMEOUT; a hung run only after a request gave up; the
    drain within GRACEFUL_TIMEOUT, after which the master kills the workers still running."""
    drain, request, hung = cfg.drain_seconds, cfg.request_timeout, cfg.hung_run_seconds
    if drain and drain >= graceful_timeout:
        raise ValueError(
            f"DRAIN_SECONDS={drain:g} is out of range: below GRACEFUL_TIMEOUT={graceful_timeout} "
            "(workers still running then are killed; it must cover the drain plus the longest "
            "request)"
        )
    if request >= timeout:
        raise ValueError(f"REQUEST_TIMEOUT={request:g} is out of range: below TIMEOUT={timeout}")
    if 0 < hung <= request:
        raise ValueError(
            f"HUNG_RUN_SECONDS={hung:g} is out of range: 0 (never) or above "
            f"REQUEST_TIMEOUT={request:g}"
        )


def check_address_free(server):
    """Refuse to start while anything holds a listening address (a one-line ValueError).

    Gunicorn itself retries a taken address five times, a line each, before it gives up, and
    with ``reuse_port`` its master binds nothing, so each worker fails and is forked again for
    ever. A trial bind here, released before Gunicorn binds, fails at once instead. The trial
    socket has SO_REUSEADDR as Gunicorn's has, and never SO_REUSEPORT, so any other listener on
    the port counts, a second copy of this server included. Skipped when the sockets are handed
    over: systemd socket activation (LISTEN_FDS) or Gunicorn's own re-exec (GUNICORN_PID).
    """
    if "LISTEN_FDS" in os.environ or "GUNICORN_PID" in os.environ:
        return
    for address in server.cfg.address:
        shown = address
        try:
            if isinstance(address, tuple):
                host, port = address[:2]
                shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    probe.bind(address)
            elif isinstance(address, str) and os.path.exists(address):
                # Gunicorn deletes a stale socket file; make sure nobody is serving on it first.
                with socket.socket(socket.AF_UNIX) as probe:
                    if probe.connect_ex(address) == 0:
                        raise OSError(errno.EADDRINUSE, "a server answers there")
        except OSError as exc:
            reason = "it is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ValueError(
                f"cannot listen on {shown}: {reason or exc} (another copy of this server, or "
                "another program; stop it or choose another BIND)"
            ) from None


# The longest a booting worker is kept alive by ``post_fork``'s heartbeat (seconds).
BOOT_SECONDS = 900


def post_fork(server, worker):
    """Keep a booting worker alive: the first on a machine builds the prepacked weights, which can
    take longer than TIMEOUT on a Pi (and a worker killed then would start over, for ever)."""
    worker.fillmask_booted = threading.Event()

    def beat():
        for _ in range(BOOT_SECONDS):
            if worker.fillmask_booted.wait(1.0):
                return
            worker.notify()

    threading.Thread(target=beat, name="boot-heartbeat", daemon=True).start()


def post_worker_init(worker):
    """Log when a worker has its session and is about to accept requests."""
    getattr(worker, "fillmask_booted", threading.Event()).set()
    worker.log.info("worker %s ready", worker.pid)
    # After Gunicorn installed its signal handlers: SIGTERM first turns readiness off.
    drain.install(worker, Config.from_env().drain_seconds)
