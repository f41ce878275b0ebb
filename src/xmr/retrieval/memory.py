"""An in-memory :class:`~xmr.index.snapshot.IndexReader` over a gallery's vectors: what ``xmr eval --candidates K``
searches, so an evaluation ranks each query with exactly the pipeline ``xmr search`` runs on an index.

Items get ids ``1..G`` in gallery order (gallery index ``i`` is id ``i + 1``). There are no segment windows (an
evaluation item is a whole clip or one moment). Videos of an encoder whose head re-scores (X-Pool, prototypes) keep
their frame features, as an index does, and their stored vector is the head's query-independent candidate vector.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from ..index.store import ItemRecord, SegmentRecord


class MemoryReader:
    """Read interface over ``vectors`` (G, d) L2-normalised float32, with ``media`` paths and ``media_types``
    (``"image"`` / ``"video"``) per item, and optional ``frames`` ((times (T,), features (T, ...)) per item)."""

    def __init__(self, vectors: np.ndarray, media: Sequence[str], media_types: Sequence[str], *,
                 model_spec: str | None = None, frames: Sequence | None = None):
        import faiss

        v = np.ascontiguousarray(vectors, dtype=np.float32)
        if v.ndim != 2 or len(v) != len(media) or len(media) != len(media_types):
            raise ConfigError(f"memory gallery: {v.shape} vectors for {len(media)} files")
        if frames is not None and len(frames) != len(v):
            raise ConfigError(f"memory gallery: frames for {len(frames)} of {len(v)} items")
        self.vectors, self.media, self.types, self.frames = v, list(media), list(media_types), frames
        self.model_spec, self.dim, self.generation = model_spec, int(v.shape[1]), 0
        self.path = "memory:" + hashlib.sha256(v.tobytes()).hexdigest()[:16]  # keys in-process caches only
        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        if len(v):
            self._index.add_with_ids(v, np.arange(1, len(v) + 1, dtype=np.int64))
        from ..index.backends import create_backend

        self.backend = create_backend(None, self.dim)  # exact flat (what the first stage records)
        self.backend.index = self._index

    def count(self) -> int:
        return len(self.vectors)

    def media_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.types:
            out[t] = out.get(t, 0) + 1
        return out

    def search(self, queries: np.ndarray, k: int):
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if not len(self.vectors) or k < 1:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        return self._index.search(q, min(int(k), len(self.vectors)))

    def item_vectors(self, ids: Sequence[int]) -> np.ndarray:
        return self.vectors[np.asarray(ids, dtype=np.int64) - 1]

    def iter_vectors(self, chunk: int = 4096):
        for s in range(0, len(self.vectors), chunk):
            yield np.arange(s + 1, min(s + chunk, len(self.vectors)) + 1, dtype=np.int64), self.vectors[s: s + chunk]

    def get_items(self, ids) -> dict[int, ItemRecord]:
        out = {}
        for i in ids:
            i = int(i)
            if 1 <= i <= len(self.vectors):  # metadata an evaluation has: path and media type
                out[i] = ItemRecord(i, self.media[i - 1], "", 0, 0.0, "", self.types[i - 1], None, None)
        return out

    def count_segments(self) -> int:
        return 0

    def search_segments(self, queries: np.ndarray, k: int):
        q = np.atleast_2d(queries)
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)

    def get_segments(self, ids) -> dict[int, SegmentRecord]:
        return {}

    def segments_of(self, item_id: int):
        return [], np.zeros((0, self.dim), np.float32)

    def frames_of(self, item_id: int):
        return None if self.frames is None else self.frames[int(item_id) - 1]


__all__ = ["MemoryReader"]
