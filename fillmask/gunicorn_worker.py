"""Gunicorn's gthread worker with a deadline per request (``worker_class`` in gunicorn.conf.py).

The stock gthread worker lets a client that sends its headers or body a byte at a time
(slowloris) hold a worker thread for as long as it likes: a handful of such sockets take every
thread and the requests queued behind them wait without end. This worker closes any connection
whose request is still not answered ``TIMEOUT`` seconds after a thread took it up, so others
wait at most that long. A real request takes well under a second, so none is cut.
"""

import socket
import time

from gunicorn.workers.gthread import ThreadWorker


class DeadlineThreadWorker(ThreadWorker):
    """gthread, plus: a request may hold a thread for at most ``timeout`` seconds."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.busy = {}  # connection -> monotonic time a thread took it up

    def handle(self, conn):
        """Handle one request on ``conn`` (in a pool thread), timing it."""
        self.busy[conn] = time.monotonic()
        try:
            return super().handle(conn)
        finally:
            self.busy.pop(conn, None)

    def murder_keepalived(self, *args, **kwargs):
        """The main loop's once-a-second housekeeping, plus cutting overdue requests."""
        super().murder_keepalived(*args, **kwargs)
        self.cut_overdue()

    def cut_overdue(self):
        """Shut down connections whose request has held a thread longer than the timeout.

        Shutting the socket down wakes the thread blocked in recv() or send(); Gunicorn then
        treats it as a client that went away and frees the thread.
        """
        limit = self.cfg.timeout
        now = time.monotonic()
        for conn, started in list(self.busy.items()):
            if now - started <= limit:
                continue
            self.busy.pop(conn, None)
            self.log.warning(
                "closed the connection from %s: its request was not done after %ss (slow client?)",
                conn.client,
                limit,
            )
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
