"""The index as the server sees it: read-only, consistent, and picked up again when ``xmr index`` changes it.

``xmr index`` commits each batch (rows + vectors + a bumped ``meta.generation``) in one SQLite transaction, and
SQLite runs in WAL mode, so a reader sees either the whole batch or none of it. The server:

* opens SQLite read-only (``mode=ro``), one connection per worker thread;
* on every request reads ``meta.generation`` (one primary-key lookup) and compares it with the snapshot it holds;
* when it changed, rebuilds the FAISS snapshot (item vectors, video segment vectors and segment times) from SQLite
  inside **one read transaction**, so everything comes from one committed generation, then swaps it in. Requests that arrive while a rebuild runs keep using the
  previous snapshot (also consistent) instead of waiting. The server never writes ``vectors.faiss``.

This is also the only module where an item id becomes a filesystem path: :meth:`LiveIndex.media_path` takes an
integer id, looks the path up in the index, resolves symlinks and refuses anything that is not a regular file
under the item's resolved root.
"""
from __future__ import annotations

import logging
import os
import re
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import XmrIndexError
from ..index.search import rescore_results, search_vector
from ..index.store import IndexStore, ItemRecord, SegmentRecord

log = logging.getLogger(__name__)

#: canonical decimal item ids only: no sign, no exponent, no leading zeros, at most 18 digits (fits int64)
_ID_RE = re.compile(r"[1-9][0-9]{0,17}")


def parse_item_id(raw: str) -> int | None:
    """``"42"`` -> 42; anything else (``-1``, ``1e9``, ``abc``, ``../x``, ``042``) -> None."""
    return int(raw) if isinstance(raw, str) and _ID_RE.fullmatch(raw) else None


@dataclass
class Snapshot:
    """The vectors of one committed generation: item vectors, video segment vectors and the segments' times."""

    generation: int
    count: int  # items
    items: object  # faiss.IndexIDMap2(IndexFlatIP(dim)) over items.id
    segments: object  # the same over segments.id (empty when the index has no video segments)
    segment_rows: dict = field(default_factory=dict)  # segments.id -> SegmentRecord
    segments_by_item: dict = field(default_factory=dict)  # items.id -> [segments.id] in time order
    built_at: float = 0.0
    build_seconds: float = 0.0


class SnapshotStore:
    """The read interface of :class:`IndexStore` that :func:`xmr.index.search.search_vector` uses, answered from
    a :class:`Snapshot` (vectors, segments) plus the live read-only store (item metadata, for paths).

    So the server ranks exactly like ``xmr search`` (a video scores the best of its video-level vector and its
    segments, and carries the best segment's start/end), but over one consistent generation. Items deleted by a
    newer generation after the snapshot are missing from ``get_items`` and dropped by ``search_vector``."""

    def __init__(self, snap: Snapshot, live_store: IndexStore) -> None:
        self.snap, self._store = snap, live_store
        self.model_spec, self.dim = live_store.model_spec, live_store.dim

    def faiss_index(self):
        return self.snap.items

    def search(self, queries: np.ndarray, k: int):
        return _search(self.snap.items, queries, k)

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
            np.zeros((0, self.dim or 0), np.float32)
        return [self.snap.segment_rows[s] for s in sids], vecs


    def frames_of(self, item_id: int):
        return self._store.frames_of(item_id)


def _search(index, queries: np.ndarray, k: int):
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if index.ntotal == 0 or k < 1:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    return index.search(q, min(k, index.ntotal))


class LiveIndex:
    """Read-only view of an index folder that follows its updates (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, *, allow_outside_root: bool = False) -> None:
        self.path = Path(path).absolute()
        self.allow_outside_root = allow_outside_root
        self._local = threading.local()
        self._rebuild_lock = threading.Lock()
        self._snap: Snapshot | None = None
        self.reloads = 0
        store = self.store()  # raises XmrIndexError when there is no index
        self.model_spec = store.model_spec
        if self.model_spec is None:
            raise XmrIndexError(f"index {self.path} is empty; run: xmr index DIR --index {self.path}")
        self.dim = store.dim
        self.snapshot()

    # ---- connections ------------------------------------------------------------------------------------------
    def store(self) -> IndexStore:
        """This thread's read-only :class:`IndexStore` (sqlite3 connections are not shared between threads)."""
        st = getattr(self._local, "store", None)
        if st is None:
            st = self._local.store = IndexStore(self.path, readonly=True)
        return st

    # ---- snapshots --------------------------------------------------------------------------------------------
    def generation(self) -> int:
        return self.store().generation

    def snapshot(self) -> Snapshot:
        """The newest consistent snapshot; rebuilt first if the index's generation moved on."""
        snap = self._snap
        gen = self.generation()
        if snap is not None and snap.generation == gen:
            return snap
        # the first snapshot is waited for; later rebuilds are done by one request while others use the old one
        if not self._rebuild_lock.acquire(blocking=snap is None):
            return snap  # type: ignore[return-value]
        try:
            snap = self._snap
            if snap is None or snap.generation != self.generation():
                snap = self._build()
                if self._snap is not None:
                    self.reloads += 1
                    log.info("index %s changed: now generation %d, %d items (rebuilt in %.3fs)",
                             self.path, snap.generation, snap.count, snap.build_seconds)
                self._snap = snap
            return snap
        finally:
            self._rebuild_lock.release()

    def _build(self, chunk: int = 4096) -> Snapshot:
        import faiss

        t0 = time.perf_counter()
        st = self.store()
        db = st.db
        db.execute("BEGIN")  # one read transaction: every row below comes from the same committed generation
        try:
            gen, dim = st.generation, st.dim or 1
            items = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
            segments = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
            _add_rows(items, db.execute("SELECT id, vector FROM items ORDER BY id"), dim, chunk)
            seg_rows: dict[int, SegmentRecord] = {}
            by_item: dict[int, list[int]] = {}
            if _has_table(db, "segments"):
                for r in db.execute("SELECT id, item_id, start, \"end\" FROM segments ORDER BY item_id, start, id"):
                    seg_rows[r[0]] = SegmentRecord(*r)
                    by_item.setdefault(r[1], []).append(r[0])
                _add_rows(segments, db.execute("SELECT id, vector FROM segments ORDER BY id"), dim, chunk)
        finally:
            db.execute("COMMIT")
        return Snapshot(gen, items.ntotal, items, segments, seg_rows, by_item, time.time(), time.perf_counter() - t0)

    def search(self, query: np.ndarray, k: int, media_type: str = "all", rescorer=None) -> tuple[Snapshot, list]:
        """Top-``k`` :class:`~xmr.index.search.SearchResult` for one query vector ``(dim,)`` on the newest
        snapshot; ``media_type`` is ``image``, ``video`` or ``all``; ``rescorer``: the encoder's video re-scorer
        for X-Pool / prototype indexes (see :func:`~xmr.index.search.search_vector`)."""
        snap = self.snapshot()
        view = SnapshotStore(snap, self.store())
        return snap, search_vector(view, query, k, media_type=None if media_type == "all" else media_type,
                                   rescorer=rescorer)

    def rescore(self, snap: Snapshot, query: np.ndarray, hits: list, k: int, rescorer) -> list:
        """The second stage of :meth:`search` on its own (the server times it separately)."""
        return rescore_results(SnapshotStore(snap, self.store()), query, hits, k, rescorer)

    # ---- items ------------------------------------------------------------------------------------------------
    def get_item(self, item_id: int) -> ItemRecord | None:
        return self.store().get_items([item_id]).get(item_id)

    def get_items(self, ids: list[int]) -> dict[int, ItemRecord]:
        return self.store().get_items(ids)

    def media_path(self, rec: ItemRecord) -> Path | None:
        """The real path of an item's file, or None when it must not be served: the file is gone, is not a regular
        file, or (unless ``allow_outside_root``) resolves outside the item's resolved root (e.g. a swapped symlink)."""
        try:
            real = os.path.realpath(rec.path, strict=True)
            root = os.path.realpath(rec.root, strict=True)
            st = os.stat(real)
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        if not self.allow_outside_root and os.path.commonpath([real, root]) != root:
            log.warning("refusing to serve item %d: %s resolves to %s, outside its root %s", rec.id, rec.path, real, root)
            return None
        return Path(real)

    def close(self) -> None:
        st = getattr(self._local, "store", None)
        if st is not None:
            st.close()
            self._local.store = None


def relative_path(rec) -> str:
    """The path of an item (ItemRecord or SearchResult) relative to its indexed root (what clients see; absolute
    paths are never sent)."""
    rel = os.path.relpath(rec.path, rec.root)
    return rel.replace(os.sep, "/")


def _has_table(db, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def _add_rows(index, cursor, dim: int, chunk: int) -> None:
    """Add (id, vector blob) rows from ``cursor`` to an IndexIDMap2, ``chunk`` rows at a time."""
    while rows := cursor.fetchmany(chunk):
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
        index.add_with_ids(vecs, ids)
