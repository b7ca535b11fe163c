"""Notice a model run that never returns, so a hung worker is replaced instead of looking alive.

A ``session.run`` that hangs (a driver or onnxruntime bug, a machine thrashing its swap) blocks
every request that waits for it, while Gunicorn's gthread worker keeps its heartbeat: its main
loop is not the thread that hangs, so Gunicorn's ``TIMEOUT`` never fires. ``RunWatch`` times each
run; a small thread checks once a second and, when a run is older than ``limit`` seconds, calls
``on_hung`` once (``app.py`` then marks the worker unhealthy and stops it; Gunicorn's master
starts a fresh one).
"""

import functools
import itertools
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
        self._started = {}  # run number -> time.monotonic() it started
        self._numbers = itertools.count()
        self._thread = None
        self._lock = threading.Lock()

    def track(self, run):
        """``run`` wrapped so that each call is timed while it runs."""

        @functools.wraps(run)
        def tracked(*args, **kwargs):
            number = next(self._numbers)  # atomic under the GIL
            self._started[number] = time.monotonic()
            self._ensure_thread()
            try:
                return run(*args, **kwargs)
            finally:
                del self._started[number]

        return tracked

    def oldest(self):
        """Seconds the longest-running call has been running (0 when none runs)."""
        started = list(self._started.values())
        return time.monotonic() - min(started) if started else 0.0

    def _ensure_thread(self):
        # Started on first use, so it lives in the worker process (after Gunicorn's fork).
        if self.limit <= 0 or self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="run-watch", daemon=True)
                self._thread.start()

    def _watch(self):
        tick = threading.Event()  # never set: a wait with a timeout is the clock
        while True:
            tick.wait(self.interval)
            age = self.oldest()
            if age > self.limit:
                logger.error(
                    "a model run has not returned for %.0f s (HUNG_RUN_SECONDS=%g): this worker "
                    "is hung and will be replaced",
                    age,
                    self.limit,
                )
                self.on_hung(age)
                return
