"""Unbatched model runs (``BATCHING=0``) that still answer at the deadline.

Each call runs on a pool thread while the request thread waits at most until its deadline, as
it does for the micro-batcher: a run that is slow or hangs holds a pool thread, not the request,
which gets its JSON 504. Runs go on side by side (onnxruntime sessions are thread-safe), as many
as requests are in flight, up to ``threads``.
"""

from concurrent import futures

from . import deadline


class UnbatchedRunner:
    """``submit(items)``: ``run(items)`` on a pool thread, waited for at most the deadline."""

    def __init__(self, run, threads=16, timeout=None):
        self._run = run
        self.threads = max(1, int(threads))
        # The longest a caller outside a request (no deadline) waits; None: no limit.
        self.timeout = timeout
        # Its threads start with the first runs, in the worker process (after Gunicorn's fork).
        self._pool = futures.ThreadPoolExecutor(self.threads, "model-run")

    def submit(self, items):
        """The rows of ``items``, or the 504 ``DeadlineExceeded`` when they take too long."""
        deadline.check()
        future = self._pool.submit(self._run, list(items))
        left = deadline.remaining()
        try:
            return future.result(timeout=self.timeout if left is None else max(0.0, left))
        except futures.TimeoutError:
            future.cancel()  # not started yet: dropped, never run
            raise deadline.DeadlineExceeded(deadline.seconds() or self.timeout) from None
