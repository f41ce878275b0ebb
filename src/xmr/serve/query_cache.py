"""An LRU cache of query embeddings for the server: the same text from many users is encoded once.

Keyed by (model spec, text): one server runs one model, but the key says what a vector belongs to, so a cache can
never hand one model's vector to another. Values are read-only float32 arrays (callers copy before they change one).
Thread-safe; ``maxsize=0`` turns it off.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np


class QueryCache:
    def __init__(self, maxsize: int = 1024):
        if maxsize < 0:
            raise ValueError(f"query cache size must be >= 0, got {maxsize}")
        self.maxsize = maxsize
        self._d: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, model: str, text: str) -> np.ndarray | None:
        with self._lock:
            v = self._d.get((model, text))
            if v is None:
                self.misses += 1
                return None
            self._d.move_to_end((model, text))
            self.hits += 1
            return v

    def peek(self, model: str, text: str) -> np.ndarray | None:
        """Like :meth:`get`, without counting a hit or a miss and without refreshing the entry."""
        with self._lock:
            return self._d.get((model, text))

    def put(self, model: str, text: str, vec: np.ndarray) -> np.ndarray:
        v = np.array(vec, dtype=np.float32)  # own copy
        v.setflags(write=False)
        if self.maxsize == 0:
            return v
        with self._lock:
            self._d[(model, text)] = v
            self._d.move_to_end((model, text))
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)
        return v

    def __len__(self) -> int:
        return len(self._d)
