"""A small thread-safe LRU cache for recent identical requests (the page re-asks while typing).

Bounded twice: in entries (``CACHE_SIZE``) and in estimated bytes (``CACHE_BYTES``), since one
entry can be a few bytes or, for a batch of long texts with top_k 50, megabytes.
"""

import dataclasses
import functools
import sys
import threading
from collections import OrderedDict

from . import metrics

SCALARS = (str, bytes, int, float, bool, type(None))


def estimate_bytes(value):
    """Approximate memory of ``value``: containers, dataclasses, strings and numbers, walked.

    Shared objects (a vocabulary word in many candidates) count once per reference: an
    overestimate, which is the safe side for a bound. Iterative and dispatched on the exact
    type: it runs on every stored answer, up to tens of thousands of candidates.
    """
    total, stack, sizeof = 0, [value], sys.getsizeof
    while stack:
        item = stack.pop()
        total += sizeof(item)
        kind = type(item)
        if kind in SCALARS:
            continue
        if kind is list or kind is tuple or kind is set or kind is frozenset:
            stack.extend(item)
        elif kind is dict:
            stack.extend(item.keys())
            stack.extend(item.values())
        elif dataclasses.is_dataclass(item):
            if hasattr(item, "__dict__"):
                total += sizeof(item.__dict__)
            for name in _field_names(kind):
                field = getattr(item, name)
                if type(field) in SCALARS:  # most fields: no round trip through the stack
                    total += sizeof(field)
                else:
                    stack.append(field)
    return total


@functools.cache
def _field_names(kind):
    return tuple(f.name for f in dataclasses.fields(kind))


class LRUCache:
    """Least-recently-used mapping bounded in entries and in bytes; 0 for either stores nothing."""

    def __init__(self, size=256, max_bytes=16 << 20, sizer=estimate_bytes):
        self.size = max(0, int(size))
        self.max_bytes = max(0, int(max_bytes))
        self.sizer = sizer
        self.bytes = 0  # estimated size of everything stored
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
        cost = self.sizer(key) + self.sizer(value)
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
