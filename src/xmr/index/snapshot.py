"""A typed, read-only snapshot of an index: what search (CLI and server) reads, from one committed generation.

:func:`open_snapshot` reads, inside one SQLite read transaction, the generation, the item and segment vectors (as
exact FAISS ``IndexFlatIP`` maps) and the segment times. :class:`SnapshotReader` pairs a snapshot with a read-only
:class:`~xmr.index.store.IndexStore` connection for item metadata and frame features, and is the only interface
:mod:`xmr.retrieval` uses (:class:`IndexReader`): no caller outside ``index/`` runs SQL or touches FAISS files.

* ``xmr search`` opens the store read-only and takes the vectors from the ``vectors.faiss`` cache when its generation
  is current (``use_cache=True``; a stale cache is rebuilt in memory, never written by a reader);
* ``xmr serve`` rebuilds from SQLite (``use_cache=False``) each time the generation moves on (see
  :mod:`xmr.serve.live`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator, Protocol, Sequence

import numpy as np

from .store import IndexStore, ItemRecord, SegmentRecord


class IndexReader(Protocol):
    """The read interface of an index that retrieval needs (implemented by :class:`SnapshotReader`)."""

    path: str  # the index folder (keys caches such as querybanks)
    model_spec: str | None
    dim: int | None
    generation: int

    def count(self) -> int: ...
    def media_counts(self) -> dict[str, int]: ...
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def item_vectors(self, ids: Sequence[int]) -> np.ndarray: ...
    def iter_vectors(self, chunk: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...
    def get_items(self, ids: Sequence[int]) -> dict[int, ItemRecord]: ...
    def count_segments(self) -> int: ...
    def search_segments(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def get_segments(self, ids: Sequence[int]) -> dict[int, SegmentRecord]: ...
    def segments_of(self, item_id: int) -> tuple[list[SegmentRecord], np.ndarray]: ...
    def frames_of(self, item_id: int) -> tuple[np.ndarray, np.ndarray] | None: ...


@dataclass
class IndexSnapshot:
    """The vectors of one committed generation: item vectors, video segment vectors and the segments' times."""

    path: str
    generation: int
    model_spec: str | None
    dim: int
    count: int  # items
    items: object  # faiss.IndexIDMap2(IndexFlatIP(dim)) over items.id
    segments: object  # the same over segments.id (empty when the index has no video segments)
    media_counts: dict = field(default_factory=dict)  # media type -> items
    segment_rows: dict = field(default_factory=dict)  # segments.id -> SegmentRecord
    segments_by_item: dict = field(default_factory=dict)  # items.id -> [segments.id] in time order
    built_at: float = 0.0
    build_seconds: float = 0.0

    def reader(self, store: IndexStore) -> "SnapshotReader":
        """This snapshot read through ``store`` (a read-only connection of the calling thread) for metadata."""
        return SnapshotReader(self, store)


def open_snapshot(store: IndexStore, *, use_cache: bool = True) -> IndexSnapshot:
    """Read a snapshot of ``store`` inside one read transaction (see the module docstring for ``use_cache``)."""
    import faiss

    t0 = time.perf_counter()
    with store.read_transaction():
        gen, dim = store.generation, store.dim or 1
        if use_cache:
            items = store.faiss_index()
            segments = store.segments_faiss_index() if store.count_segments() else \
                faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        else:
            items, segments = store._build_faiss("items"), store._build_faiss("segments")
        rows = store.segment_rows()
        counts = store.media_counts()
        spec = store.model_spec
    seg_rows = {r.id: r for r in rows}
    by_item: dict[int, list[int]] = {}
    for r in rows:
        by_item.setdefault(r.item_id, []).append(r.id)
    return IndexSnapshot(str(store.path), gen, spec, dim, items.ntotal, items, segments, counts, seg_rows, by_item,
                         time.time(), time.perf_counter() - t0)


def _search(index, queries: np.ndarray, k: int):
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if index.ntotal == 0 or k < 1:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    return index.search(q, min(int(k), index.ntotal))


class SnapshotReader:
    """:class:`IndexReader` over a snapshot (vectors, segments) plus a read-only store (item metadata, frames).

    Items deleted by a newer generation after the snapshot are missing from ``get_items`` and dropped by search."""

    def __init__(self, snap: IndexSnapshot, store: IndexStore) -> None:
        self.snap, self._store = snap, store
        self.model_spec, self.dim, self.generation = snap.model_spec, snap.dim, snap.generation
        self.path = snap.path

    def count(self) -> int:
        return self.snap.count

    def media_counts(self) -> dict[str, int]:
        return dict(self.snap.media_counts)

    def search(self, queries: np.ndarray, k: int):
        """Exact inner-product top-``k`` over item vectors -> (scores (q, k'), ids (q, k')), k' = min(k, count)."""
        return _search(self.snap.items, queries, k)

    def item_vectors(self, ids: Sequence[int]) -> np.ndarray:
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        return self.snap.items.reconstruct_batch(np.asarray(ids, dtype=np.int64))

    def iter_vectors(self, chunk: int = 4096):
        """(ids (n,), vectors (n, dim)) of every item, ascending id, ``chunk`` at a time."""
        ids = np.sort(_ids(self.snap.items))
        for s in range(0, len(ids), chunk):
            yield ids[s : s + chunk], self.item_vectors(ids[s : s + chunk])

    def get_items(self, ids):
        return self._store.get_items(ids)

    def count_segments(self) -> int:
        return self.snap.segments.ntotal

    def search_segments(self, queries: np.ndarray, k: int):
        return _search(self.snap.segments, queries, k)

    def get_segments(self, ids):
        rows = self.snap.segment_rows
        return {int(i): rows[int(i)] for i in ids if int(i) in rows}

    def segments_of(self, item_id: int):
        sids = self.snap.segments_by_item.get(int(item_id), [])
        vecs = np.stack([self.snap.segments.reconstruct(s) for s in sids]) if sids else \
            np.zeros((0, self.dim), np.float32)
        return [self.snap.segment_rows[s] for s in sids], vecs

    def frames_of(self, item_id: int):
        return self._store.frames_of(item_id)


def _ids(index) -> np.ndarray:
    import faiss

    return faiss.vector_to_array(index.id_map).astype(np.int64)


def open_reader(path, *, use_cache: bool = True) -> tuple[IndexStore, SnapshotReader]:
    """``xmr search``'s view: the index at ``path`` opened read-only and snapshotted. Close the store when done."""
    store = IndexStore(path, readonly=True)
    try:
        return store, open_snapshot(store, use_cache=use_cache).reader(store)
    except BaseException:
        store.close()
        raise


__all__ = ["IndexReader", "IndexSnapshot", "SnapshotReader", "open_snapshot", "open_reader"]
