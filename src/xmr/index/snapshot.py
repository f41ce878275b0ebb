"""A typed, read-only snapshot of an index: what search (CLI and server) reads, from one committed generation.

:func:`open_snapshot` reads, inside one SQLite read transaction, the generation, the item vectors' backend (see
:mod:`xmr.index.backends`: exact ``flat`` by default, or the approximate one the index was built with), the segment
vectors (exact ``flat``) and the segment times. :class:`SnapshotReader` pairs a snapshot with a read-only
:class:`~xmr.index.store.IndexStore` connection for item metadata and frame features, and is the only interface
:mod:`xmr.retrieval` uses (:class:`IndexReader`): no caller outside ``index/`` runs SQL or touches FAISS files.

* ``xmr search`` opens the store read-only and maps the saved backend files (``vectors.faiss``: FAISS
  ``IO_FLAG_MMAP_IFC``, so a large index is not read into memory); a stale one is brought up to date in memory with
  the rows changed since, never written by a reader (``use_cache=True``);
* ``xmr serve`` does the same at start, then, each time the generation moves on, copies its current backend and
  applies only the rows changed since (``previous=``, see :mod:`xmr.serve.live`) instead of re-reading every vector;
* ``use_cache=False`` builds everything from SQLite (tests, and a check of the cache).

For approximate backends :meth:`SnapshotReader.search` re-scores the backend's candidates exactly from the stored
vectors (the first stage records this in its ``stages`` entry).
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
    backend: object  # the item vectors' xmr.index.backends.VectorBackend (exact, describe(), candidates(k))

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
    items: object  # xmr.index.backends.VectorBackend over items.id
    segments: object  # a flat backend over segments.id (empty when the index has no video segments)
    media_counts: dict = field(default_factory=dict)  # media type -> items
    segment_rows: dict = field(default_factory=dict)  # segments.id -> SegmentRecord
    segments_by_item: dict = field(default_factory=dict)  # items.id -> [segments.id] in time order
    built_at: float = 0.0
    build_seconds: float = 0.0
    watermark: float | None = None  # newest items.added the item backend holds (for the next delta)
    expert_names: list = field(default_factory=list)  # experts the index carries (xmr index --experts)
    experts: tuple | None = None  # ExpertStoreMixin.expert_matrix(): (row ids, item ids, expert names, vectors)

    def reader(self, store: IndexStore) -> "SnapshotReader":
        """This snapshot read through ``store`` (a read-only connection of the calling thread) for metadata."""
        return SnapshotReader(self, store)


def open_snapshot(store: IndexStore, *, use_cache: bool = True, previous: IndexSnapshot | None = None
                  ) -> IndexSnapshot:
    """Read a snapshot of ``store`` inside one read transaction (see the module docstring for ``use_cache`` and
    ``previous``). ``previous`` is left untouched (its searches may still run): its backends are copied first."""
    from .backends import create_backend

    t0 = time.perf_counter()
    with store.read_transaction():
        gen, dim = store.generation, store.dim or 1
        if previous is not None and previous.path == str(store.path):
            items, wm = store.load_backend("items", previous=previous.items.copy(),
                                           previous_watermark=previous.watermark)
            segments, _ = store.load_backend("segments", previous=previous.segments.copy(), previous_watermark=0.0)
        elif use_cache:
            items, wm = store.backend_and_watermark("items", detach=True)
            segments = store.backend_and_watermark("segments", detach=True)[0] if store.count_segments() else \
                create_backend(None, dim)
        else:
            wm = None
            segments = store._build_faiss("segments")
            if store.vector_backend_record()["name"] == "flat":
                items = store._build_faiss("items")
            else:  # a trained backend is not rebuilt per snapshot: its saved files, brought up to date
                items, wm = store.load_backend("items", mmap=False)
        rows = store.segment_rows()
        counts = store.media_counts()
        spec = store.model_spec
        expert_names = store.expert_names()
        experts = store.expert_matrix() if expert_names else None
    seg_rows = {r.id: r for r in rows}
    by_item: dict[int, list[int]] = {}
    for r in rows:
        by_item.setdefault(r.item_id, []).append(r.id)
    return IndexSnapshot(str(store.path), gen, spec, dim, items.ntotal, items, segments, counts, seg_rows, by_item,
                         time.time(), time.perf_counter() - t0, wm, expert_names, experts)


def _search(backend, queries: np.ndarray, k: int):
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if backend.ntotal == 0 or k < 1:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    return backend.search(q, min(int(k), backend.ntotal))


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

    @property
    def backend(self):
        """The item vectors' :class:`~xmr.index.backends.VectorBackend` (``exact``, ``describe()``, ``candidates``)."""
        return self.snap.items

    def search(self, queries: np.ndarray, k: int):
        """Inner-product top-``k`` over item vectors -> (scores (q, k'), ids (q, k')), k' = min(k, count). Exact for
        the flat backend; an approximate backend's ``candidates(k)`` rows are re-scored exactly from the stored
        vectors (so scores are exact inner products; recall is the backend's)."""
        from .backends import exact_rerank

        b = self.snap.items
        if b.exact:
            return _search(b, queries, k)
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(int(k), b.ntotal)
        if k < 1:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        _, cand = _search(b, q, b.candidates(k))
        return exact_rerank(q, cand, self._store.vectors_found, k)

    def item_vectors(self, ids: Sequence[int]) -> np.ndarray:
        if not len(ids):
            return np.zeros((0, self.dim), np.float32)
        v = self.snap.items.vectors(np.asarray(ids, dtype=np.int64))
        return v if v is not None else self._store.item_vectors(ids)

    def iter_vectors(self, chunk: int = 4096):
        """(ids (n,), vectors (n, dim)) of every item, ascending id, ``chunk`` at a time."""
        ids = np.sort(self.snap.items.ids())
        for s in range(0, len(ids), chunk):
            yield ids[s : s + chunk], self.item_vectors(ids[s : s + chunk])

    def get_items(self, ids):
        return self._store.get_items(ids)

    def items_with_file(self, path: str) -> list[int]:
        """Ids of the items that are the file at ``path`` (its absolute or resolved path, or the same content)."""
        import os

        from .prefetch import file_sha256

        paths = list(dict.fromkeys([os.path.abspath(path), os.path.realpath(path)]))
        try:
            digest = file_sha256(path)
        except OSError:
            digest = None
        return self._store.items_with_file(paths, digest)

    def items_with_content(self, sha256: str) -> list[int]:
        """Ids of the items whose file content has this SHA-256 hex digest (e.g. an uploaded image's)."""
        return self._store.items_with_file([], sha256)

    def count_segments(self) -> int:
        return self.snap.segments.ntotal

    def search_segments(self, queries: np.ndarray, k: int):
        return _search(self.snap.segments, queries, k)

    def get_segments(self, ids):
        rows = self.snap.segment_rows
        return {int(i): rows[int(i)] for i in ids if int(i) in rows}

    def segments_of(self, item_id: int):
        sids = self.snap.segments_by_item.get(int(item_id), [])
        vecs = self.snap.segments.vectors(np.asarray(sids, np.int64)) if sids else \
            np.zeros((0, self.dim), np.float32)
        return [self.snap.segment_rows[s] for s in sids], vecs

    def frames_of(self, item_id: int):
        return self._store.frames_of(item_id)

    # ---- experts (xmr index --experts): text rows with vectors, read with the snapshot ----------------------
    def expert_names(self) -> list[str]:
        return list(self.snap.expert_names)

    def expert_matrix(self):
        """(row ids (n,), item ids (n,), expert names [n], vectors (n, dim)) of every expert row."""
        if self.snap.experts is None:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), [], np.zeros((0, self.dim), np.float32)
        return self.snap.experts

    def expert_rows(self, ids):
        return self._store.expert_rows(ids)

    def phrase_rows(self, phrase: str, experts=None):
        """Expert rows whose text contains ``phrase`` (case-insensitive for ASCII; callers check word bounds)."""
        return self._store.phrase_candidates(phrase, experts)


def open_reader(path, *, use_cache: bool = True) -> tuple[IndexStore, SnapshotReader]:
    """``xmr search``'s view: the index at ``path`` opened read-only and snapshotted. Close the store when done."""
    store = IndexStore(path, readonly=True)
    try:
        return store, open_snapshot(store, use_cache=use_cache).reader(store)
    except BaseException:
        store.close()
        raise


__all__ = ["IndexReader", "IndexSnapshot", "SnapshotReader", "open_snapshot", "open_reader"]
