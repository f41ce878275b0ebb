"""The vector-backend cache of an :class:`~xmr.index.store.IndexStore`: the item (and segment) vectors' search
structure (:mod:`xmr.index.backends`), kept per generation beside SQLite, which stays the source of truth.

Split out of ``store.py`` (a mixin of ``IndexStore``): loading a saved backend (memory-mapped for readers), bringing
a stale one up to date with the rows changed since its watermark (:meth:`VectorCacheMixin.vector_delta`), building
it when missing, damaged or switched, saving it atomically, and searching it.
"""
from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .store import IndexStore

#: meta key: ``{"name", "config"}`` of the item-vector backend (absent: ``flat``), see :mod:`xmr.index.backends`
BACKEND_KEY = "vector_backend"


class _StoreSource:
    """A :class:`~xmr.index.backends.base.VectorSource` over one table of a store."""

    def __init__(self, store: "IndexStore", table: str):
        self.store, self.table = store, table

    def count(self) -> int:
        return self.store.count() if self.table == "items" else self.store.count_segments()

    def iter_vectors(self, chunk: int = 4096):
        return self.store.iter_vectors(chunk=chunk, table=self.table)

    def vectors(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.store.vectors_found(np.asarray(ids, np.int64), self.table)


class VectorCacheMixin:
    """Backend-cache methods of :class:`~xmr.index.store.IndexStore` (they use its ``db``, ``folder``, meta and
    transaction helpers)."""

    # ---- vector backends (xmr.index.backends): a cache of SQLite's vectors, kept per generation -------------------
    def vector_backend_record(self) -> dict:
        """``{"name", "config"}`` of the backend that searches item vectors (``flat`` unless chosen otherwise)."""
        raw = self.get_meta(BACKEND_KEY)
        return json.loads(raw) if raw else {"name": "flat", "config": {}}

    def set_vector_backend(self, record: dict) -> None:
        """Choose the item-vector backend (``xmr index --backend``). A change takes effect at the next
        :meth:`sync_faiss` (the backend is then built from every stored vector)."""
        self.set_meta(BACKEND_KEY, json.dumps({"name": record["name"], "config": dict(record.get("config") or {})},
                                              sort_keys=True))

    def backend_state(self, table: str = "items") -> dict | None:
        """What the saved backend files say: generation, watermark, backend (name, config, tuned); None if none."""
        fname = self._FILES[table]
        try:
            return json.loads((self.path / f"{fname}.json").read_text())
        except (OSError, ValueError):
            return None

    def backend_and_watermark(self, table: str = "items", *, detach: bool = False):
        """(backend, watermark) of :meth:`faiss_index` / :meth:`segments_faiss_index` (snapshots keep both).
        ``detach``: the caller keeps the backend (a snapshot): the store forgets it, so it never updates it in place."""
        backend = self._cached_backend(table)
        watermark = self._faiss_cache[table][2]
        if detach:
            del self._faiss_cache[table]
        return backend, watermark

    def faiss_index(self):
        """The items' :class:`~xmr.index.backends.VectorBackend` for the current generation: loaded from disk when
        fresh, updated with the rows changed since when stale, built from SQLite when missing (and saved)."""
        return self._cached_backend("items")

    def segments_faiss_index(self):
        """The video segments' backend (always exact ``flat``; ids are ``segments.id``), cached the same way."""
        return self._cached_backend("segments")

    _FILES = {"items": "vectors", "segments": "segments"}

    def _record_for(self, table: str) -> dict:
        return self.vector_backend_record() if table == "items" else {"name": "flat", "config": {}}

    def _cached_backend(self, table: str, *, mmap: bool | None = None, progress=None):
        gen = self.generation
        hit = self._faiss_cache.get(table)
        if hit is not None and hit[1] == gen:
            return hit[0]
        backend, watermark = self.load_backend(table, mmap=self.readonly if mmap is None else mmap,
                                               previous=hit[0] if hit else None,
                                               previous_watermark=hit[2] if hit else None, progress=progress)
        self._faiss_cache[table] = (backend, gen, watermark)
        return backend

    def load_backend(self, table: str = "items", *, mmap: bool = False, previous=None, previous_watermark=None,
                     progress=None):
        """(backend, watermark) for the current generation (call inside a read transaction for a consistent view).

        Order of preference: ``previous`` (a backend of an older generation this process holds; updated in place)
        or the saved files, brought up to date with :meth:`vector_delta` (only the rows added, changed or removed
        since); else a build from every stored vector. A writable store saves the result; a read-only one keeps it
        in memory. ``mmap``: map the saved FAISS file instead of reading it (read-only opens: large indexes)."""
        from .backends import create_backend

        record = self._record_for(table)
        gen, dim = self.generation, self.dim or 1
        backend, watermark, state_gen = previous, previous_watermark, None
        if backend is not None and (backend.name != record["name"]
                                    or backend.config.to_dict() != type(backend.config).from_dict(record["config"]).to_dict()):
            backend = None
        if backend is None:
            backend, watermark, state_gen = self._load_saved(table, record, dim, mmap)
        if backend is not None and (watermark is not None or state_gen == gen):
            changed = state_gen != gen
            if changed:
                self._apply_delta(backend, table, watermark)
            legacy = watermark is None  # files of an xmr before backends: rewritten once with their state file
            watermark = self._watermark(table) if changed or legacy else watermark
            expected = self.count() if table == "items" else self.count_segments()
            if backend.ntotal == expected:
                if changed or legacy:
                    self._save_backend(backend, gen, watermark, table)
                return backend, watermark
        # missing, damaged, switched, or without a watermark: build from SQLite, the source of truth
        backend = create_backend(record, dim)
        backend.attach(self.path, self._FILES[table])
        watermark = self._watermark(table)
        backend.build(_StoreSource(self, table), progress=progress)
        self._save_backend(backend, gen, watermark, table)
        return backend, watermark

    def _load_saved(self, table: str, record: dict, dim: int, mmap: bool):
        """(backend, watermark, generation) from the saved files, or (None, None, None)."""
        from .backends import backend_class

        stem = self._FILES[table]
        state = self.backend_state(table)
        if state is None:  # an index written before backends: vectors.faiss + vectors.gen, exact flat
            gpath = self.path / f"{stem}.gen"
            if record["name"] != "flat" or not gpath.exists():
                return None, None, None
            try:
                state = {"generation": int(gpath.read_text().strip() or -1), "watermark": None,
                         "backend": {"name": "flat", "config": {}, "tuned": {}}}
            except (OSError, ValueError):
                return None, None, None
        saved = state.get("backend") or {}
        if saved.get("name") != record["name"] or saved.get("config", {}) != record.get("config", {}):
            return None, None, None  # the index switched backend (or options): rebuilt
        cls = backend_class(record["name"])
        try:
            backend = cls.load(self.path, stem, dim, cls.Config.from_dict(record["config"]), saved.get("tuned", {}),
                               mmap=mmap)
        except (RuntimeError, ValueError, OSError):
            return None, None, None  # damaged cache: rebuilt from SQLite
        if backend is None:
            return None, None, None
        return backend, state.get("watermark"), state.get("generation")

    def _watermark(self, table: str) -> float | None:
        """Newest ``items.added`` (rows added after it are re-read by the next delta: batches of the one writer get
        increasing ``time.time()`` stamps; a wall clock set back between two runs would hide a re-encoded row from
        the delta until the next full build); segments: 0 (they are diffed by id)."""
        if table == "segments":
            return 0.0
        return self.db.execute("SELECT COALESCE(MAX(added), 0) FROM items").fetchone()[0]

    def vector_delta(self, table: str, have: np.ndarray, watermark: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids to remove, ids to add, their vectors) that turn a backend holding ``have`` (built when the newest
        ``items.added`` was ``watermark``) into this generation. An item re-encoded in place keeps its id and gets a
        newer ``added``: it is removed and added again. Segment rows are never updated in place (a re-indexed video
        gets new segment ids), so for segments the id sets alone decide."""
        if table == "segments":
            if not self.has_segments:
                return np.asarray(have, np.int64), np.zeros(0, np.int64), np.zeros((0, self.dim or 1), np.float32)
            now = np.fromiter((r[0] for r in self.db.execute("SELECT id FROM segments")), np.int64)
            changed = np.zeros(0, np.int64)
        else:
            now = np.fromiter((r[0] for r in self.db.execute("SELECT id FROM items")), np.int64)
            changed = np.fromiter((r[0] for r in self.db.execute("SELECT id FROM items WHERE added > ?",
                                                                 (watermark,))), np.int64)
        have = np.asarray(have, np.int64)
        changed = np.intersect1d(changed, have)
        remove = np.union1d(np.setdiff1d(have, now), changed)
        add = np.union1d(np.setdiff1d(now, have), changed)
        return remove, add, self._vectors_of(table, add)

    def vectors_found(self, ids: np.ndarray, table: str = "items") -> tuple[np.ndarray, np.ndarray]:
        """(ids that exist, their stored float32 vectors): ids deleted meanwhile are left out (exact re-ranking)."""
        ids = np.asarray(ids, np.int64)
        found, rows = [], []
        for s in range(0, len(ids), 500):
            chunk = [int(i) for i in ids[s : s + 500]]
            for i, blob in self.db.execute(f"SELECT id, vector FROM {table} WHERE id IN ({','.join('?' * len(chunk))})",
                                           chunk):
                found.append(i)
                rows.append(blob)
        dim = self.dim or 1
        vecs = np.frombuffer(b"".join(rows), np.float32).reshape(len(rows), dim) if rows else np.zeros((0, dim), np.float32)
        return np.asarray(found, np.int64), vecs

    def _vectors_of(self, table: str, ids: np.ndarray) -> np.ndarray:
        if table == "items":
            return self.item_vectors(ids) if len(ids) else np.zeros((0, self.dim or 1), np.float32)
        out = np.zeros((len(ids), self.dim or 1), np.float32)
        where = {int(i): j for j, i in enumerate(ids)}
        keys = list(where)
        for s in range(0, len(keys), 500):
            chunk = keys[s : s + 500]
            for i, blob in self.db.execute(f"SELECT id, vector FROM segments WHERE id IN ({','.join('?' * len(chunk))})",
                                           chunk):
                out[where[i]] = np.frombuffer(blob, np.float32)
        return out

    def _apply_delta(self, backend, table: str, watermark: float) -> None:
        remove, add, vecs = self.vector_delta(table, backend.ids(), watermark)
        backend.remove(remove)
        backend.add(add, vecs)

    def _build_faiss(self, table: str = "items"):
        """A fresh exact ``flat`` backend over every stored vector of ``table`` (no cache involved)."""
        from .backends import create_backend

        backend = create_backend(None, self.dim or 1)
        backend.build(_StoreSource(self, table))
        return backend

    def _save_backend(self, backend, gen: int, watermark, table: str = "items") -> None:
        """Save the backend files, then ``<stem>.json`` (generation, watermark, backend) and ``<stem>.gen``, each
        atomically: a crash in between leaves a state file that names an older generation (brought up to date on
        the next open) or files that do not match it (rebuilt)."""
        from .backends.base import write_json_atomic

        if self.readonly or not os.access(self.path, os.W_OK):
            return  # opened read-only (xmr search, xmr serve) or read-only folder: keep the backend in memory
        stem = self._FILES[table]
        backend.save(self.path, stem)
        d = backend.describe()
        write_json_atomic(self.path / f"{stem}.json", {
            "generation": gen, "watermark": watermark,
            "backend": {"name": backend.name, "config": self._record_for(table).get("config", {}),
                        "tuned": {k: v for k, v in d.items() if k in backend.tuned}}})
        tmpg = self.path / f".{stem}.gen.{os.getpid()}.tmp"
        tmpg.write_text(str(gen))
        os.replace(tmpg, self.path / f"{stem}.gen")

    def sync_faiss(self, progress=None) -> None:
        """Bring the saved backends (items, and segments when there are any) up to date with SQLite (called at
        the end of an indexing run)."""
        self._cached_backend("items", progress=progress)
        if self.count_segments():
            self._cached_backend("segments", progress=progress)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Inner-product top-``k`` -> (scores (q, k), ids (q, k)); missing slots have id -1. Approximate backends'
        candidates are re-scored exactly from the stored vectors."""
        from .backends import exact_rerank

        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        index = self.faiss_index()
        if index.ntotal == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        k = min(k, index.ntotal)
        if index.exact:
            return index.search(q, k)
        _, cand = index.search(q, index.candidates(k))
        return exact_rerank(q, cand, self.vectors_found, k)

    def search_segments(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`search` over video segments -> (scores (q, k), segment ids (q, k))."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if not self.count_segments():
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        index = self.segments_faiss_index()
        return index.search(q, min(k, index.ntotal))

