"""Micro-batching: texts from requests that arrive together run as one padded ``session.run``.

One background thread per worker owns the session. A request thread queues its texts and waits;
the thread takes everything already queued (up to ``max_batch`` texts), runs it once and hands
each request its own rows. When the worker is idle a request runs at once. When it is busy (the
previous batch ended moments ago) the thread waits up to ``window_ms`` until as many texts as
that batch had are queued: its requests' clients come back within a few milliseconds, and
without the wait the first of them would run alone while the others queue behind it. On a
Raspberry Pi each unbatched run streams the ~400 MB of fp32 weights through memory, so one run
for many requests is what lets a classroom share one device.

No wait is unbounded: a request waits at most until its deadline (``fillmask.deadline``, else
``timeout``) and then gets a 504; a job whose request has given up is dropped, not run.
"""

import logging
import queue
import threading
import time

from . import deadline, metrics

logger = logging.getLogger(__name__)


class _Job:
    """One request's texts, and where its answer or its own error goes."""

    __slots__ = ("items", "result", "error", "done", "queued", "deadline", "abandoned")

    def __init__(self, items, until):
        self.items = items
        self.queued = time.monotonic()
        self.result = None
        self.error = None
        self.done = threading.Event()
        self.deadline = until  # time.monotonic() after which nobody waits for it (None: never)
        self.abandoned = False

    def expired(self, now):
        """True when the request no longer waits for this job."""
        return self.abandoned or (self.deadline is not None and now >= self.deadline)


class MicroBatcher:
    """Collects concurrent calls of ``run(items) -> rows per item`` into fewer calls."""

    def __init__(self, run, max_batch=16, window_ms=0.0, busy_ms=50.0, timeout=None):
        self._run = run
        # The longest a caller outside a request (no deadline) waits; None: no limit.
        self.timeout = timeout
        self.max_batch = max(1, int(max_batch))
        self.window = max(0.0, float(window_ms)) / 1000.0
        # A request arriving within this long of the last batch's end means the worker is busy.
        self.busy = max(0.0, float(busy_ms)) / 1000.0
        self._last_end = float("-inf")
        self._last_size = 1
        self._queue = queue.Queue()
        self._carry = None
        self.batches = 0  # session runs made, for tests and the benchmark
        self.items = 0
        self.dropped = 0  # jobs given up by their request before they ran
        # Built in the worker process (``create_app`` runs after Gunicorn's fork), so its thread
        # is the worker's own.
        self._thread = threading.Thread(target=self._loop, name="micro-batcher", daemon=True)
        self._thread.start()

    def submit(self, items):
        """Run ``items`` (a list) in the next batch; return their rows or raise their error.

        Waits at most until the request's deadline (else ``timeout``), then raises the 504
        ``DeadlineExceeded``; the job is then dropped if it has not started.
        """
        until = deadline.at()
        if until is None and self.timeout is not None:
            until = time.monotonic() + self.timeout
        deadline.check()
        job = _Job(list(items), until)
        self._queue.put(job)
        if not job.done.wait(None if until is None else max(0.0, until - time.monotonic())):
            job.abandoned = True
            if not job.done.is_set():  # unless it finished in the meantime
                raise deadline.DeadlineExceeded(deadline.seconds() or self.timeout)
        if job.error is not None:
            raise job.error
        return job.result

    def _next(self, until=None):
        """The next job its request still waits for, by ``until`` (monotonic; None: block).

        Jobs whose request gave up are dropped here, never run. Raises ``queue.Empty``.
        """
        while True:
            if self._carry is not None:
                job, self._carry = self._carry, None
            elif until is None:
                job = self._queue.get()
            else:
                left = until - time.monotonic()
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            if not job.expired(time.monotonic()):
                return job
            self.dropped += 1

    def _collect(self):
        """Block for one job, then take what else is queued (within the window) up to the cap."""
        first = self._next()
        jobs, count = [first], len(first.items)
        now = time.monotonic()
        busy = now - self._last_end < self.busy
        window_end = now + self.window if busy else now
        expected = self._last_size if busy else 1  # a lone client never waits for itself
        while count < self.max_batch:
            try:
                job = self._next(window_end if count < expected else time.monotonic())
            except queue.Empty:
                break
            if count + len(job.items) > self.max_batch:
                self._carry = job  # first in the next batch, order kept
                break
            jobs.append(job)
            count += len(job.items)
        return jobs

    def _loop(self):
        while True:
            jobs = self._collect()
            started = time.monotonic()
            for job in jobs:
                metrics.QUEUE_SECONDS.observe(started - job.queued)
            try:
                self._execute(jobs)
                self._last_end = time.monotonic()
                self._last_size = sum(len(job.items) for job in jobs)
            except BaseException:  # never let the worker's only inference thread die
                logger.exception("micro-batcher failed")
                for job in jobs:
                    if not job.done.is_set():
                        job.error = RuntimeError("inference failed")
                        job.done.set()

    def _execute(self, jobs):
        """One run for all jobs; if it fails, rerun each alone so errors stay per request."""
        items = [item for job in jobs for item in job.items]
        try:
            rows = self._run(items)
            self.batches += 1
            self.items += len(items)
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].error = exc
                jobs[0].done.set()
                return
            for job in jobs:
                self._execute([job])
            return
        start = 0
        for job in jobs:
            job.result = rows[start : start + len(job.items)]
            start += len(job.items)
            job.done.set()
