"""Graceful drain: on SIGTERM a worker reports not-ready at once, then stops the Gunicorn way.

Gunicorn's own SIGTERM handling stops accepting connections at once and lets in-flight requests
finish; a load balancer or Kubernetes would then only see refused connections. With
``DRAIN_SECONDS`` the worker first keeps serving for that long while its readiness checks
(/health, /v2/health/ready) answer 503, so they take it out of rotation; then it hands over to
Gunicorn's handler. The master forwards its SIGTERM to every worker, so either works.
"""

import signal
import threading

_DRAINING = threading.Event()


def draining():
    """True once this worker has received SIGTERM."""
    return _DRAINING.is_set()


def install(worker, seconds):
    """Hook SIGTERM in a Gunicorn worker (from ``post_worker_init``, in its main thread).

    Gunicorn's handler (``Worker.handle_exit``, already installed) runs ``seconds`` later; it
    only marks the worker as stopping, so calling it from a timer thread is safe.
    """
    stop = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum, frame):
        if _DRAINING.is_set():
            return  # a second SIGTERM does not cut the drain short
        _DRAINING.set()
        worker.log.info("worker %s draining: not ready, stopping in %ss", worker.pid, seconds)
        if seconds <= 0:
            stop(signum, frame)
            return
        timer = threading.Timer(seconds, stop, (signum, None))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_sigterm)
