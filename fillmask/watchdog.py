"""Notice a model run that never returns, so a hung worker is replaced instead of looking alive.

A ``session.run`` that hangs (a driver or onnxruntime bug, a machine thrashing its swap) blocks
every request that waits for it, while Gunicorn's gthread worker keeps its heartbeat: its main
loop is not the thread that hangs, so Gunicorn's ``TIMEOUT`` never fires. ``RunWatch`` times each
run; a small thread checks once a second and, when a run is older than ``limit`` seconds, calls
``on_hung`` once (``app.py`` then marks the worker unhealthy and stops it; Gunicorn's master
starts a fresh one).
"""

import functools
import logging
import threading
import time

logger = logging.getLogger(__name__)


class RunWatch:
    """Times the runs of a function and reports one that takes longer than ``limit`` s."""

    def __init__(self, limit, on_hung, interval=1.0):
        self.limit = float(limit)
        self.on_hung = on_hung
        self.interval = min(float(interval), self.limit / 4) if self.limit > 0 else interval
        self._started = {}  # one key per run in progress -> time.monotonic() it started
        if self.limit > 0:  # 0: never. Built with the app, so in the worker (after Gunicorn's fork)
            threading.Thread(target=self._watch, name="run-watch", daemon=True).start()

    def track(self, run):
        """``run`` wrapped so that each call is timed while it runs."""

        @functools.wraps(run)
        def tracked(*args, **kwargs):
            key = object()
            self._started[key] = time.monotonic()
            try:
                return run(*args, **kwargs)
            finally:
                del self._started[key]

        return tracked

    def oldest(self):
        """Seconds the longest-running call has been running (0 when none runs)."""
        started = list(self._started.values())
        return time.monotonic() - min(started) if started else 0.0

    def _watch(self):
        """Check every ``interval`` s; report the first run older than the limit, then stop."""
        while (age := self.oldest()) <= self.limit:
            time.sleep(self.interval)
        logger.error(
            "a model run has not returned for %.0f s (HUNG_RUN_SECONDS=%g): this worker "
            "is hung and will be replaced",
            age,
            self.limit,
        )
        self.on_hung(age)
