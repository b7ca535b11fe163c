"""A small thread-safe LRU cache of finished response bodies (the page re-asks while typing).

Bounded twice: in entries (``CACHE_SIZE``) and in bytes (``CACHE_BYTES``), since one body can be
a few hundred bytes or, for a batch of long texts with top_k 50, megabytes. A body is bytes, so
its size is its length; its key (the request) counts as the memory of its ``repr``.
"""

import sys
import threading
from collections import OrderedDict

from . import metrics


def entry_bytes(key, body):
    """Bytes an entry holds: the body, and its key about as much as the key's text."""
    return len(body) + sys.getsizeof(repr(key))


class LRUCache:
    """Least-recently-used mapping bounded in entries and in bytes; 0 for either stores nothing."""

    def __init__(self, size=256, max_bytes=16 << 20, sizer=entry_bytes):
        self.size = max(0, int(size))
        self.max_bytes = max(0, int(max_bytes))
        self.sizer = sizer
        self.bytes = 0  # size of everything stored
        self._data = OrderedDict()  # key -> (value, bytes)
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self):
        return len(self._data)

    def get(self, key):
        """The cached value or None; a hit becomes the most recent entry."""
        if not self.size or not self.max_bytes:
            return None
        with self._lock:
            entry = self._data.get(key)
            if entry is None:
                self.misses += 1
                metrics.CACHE_MISSES.inc()
                return None
            self._data.move_to_end(key)
            self.hits += 1
            metrics.CACHE_HITS.inc()
            return entry[0]

    def put(self, key, value):
        """Store ``value``, evicting least recently used entries until both bounds hold.

        An entry larger than the whole byte bound is not stored (it would evict everything
        and still not fit).
        """
        if not self.size or not self.max_bytes:
            return
        cost = self.sizer(key, value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if cost > self.max_bytes:
                return
            self._data[key] = (value, cost)
            self.bytes += cost
            while len(self._data) > self.size or self.bytes > self.max_bytes:
                _, (_, freed) = self._data.popitem(last=False)
                self.bytes -= freed
