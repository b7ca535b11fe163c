"""A small thread-safe LRU cache for recent identical requests (the page re-asks while typing)."""

import threading
from collections import OrderedDict

from . import metrics


class LRUCache:
    """Least-recently-used mapping with a fixed size; size 0 stores nothing."""

    def __init__(self, size=256):
        self.size = max(0, int(size))
        self._data = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        """The cached value or None; a hit becomes the most recent entry."""
        if not self.size:
            return None
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                metrics.CACHE_MISSES.inc()
                return None
            self._data.move_to_end(key)
            self.hits += 1
            metrics.CACHE_HITS.inc()
            return value

    def put(self, key, value):
        """Store ``value``, evicting the least recently used entry when full."""
        if not self.size:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
