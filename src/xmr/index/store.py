"""On-disk index: SQLite for metadata (and the vectors, as the source of truth), FAISS for search.

Layout of an index folder::

    meta.sqlite     items(id, path, root, size, mtime, sha256, media_type, vector, ...), skipped(...), meta(...),
                    segments(id, item_id, start, end, vector): time segments of video items,
                    frames(item_id, count, times, features): frame embeddings of videos, kept only when the
                    index's head re-scores candidates (X-Pool, prototypes)
    vectors.*       the item vectors' backend (:mod:`xmr.index.backends`, chosen with ``xmr index --backend``, recorded
                    in ``meta.vector_backend``): ``vectors.faiss`` for the FAISS ones (``flat``: IndexIDMap2(IndexFlatIP)
                    as before backends), ``vectors.milvus.db`` for milvus-lite; ids are ``items.id``
    vectors.json    the generation and ``items.added`` watermark the backend files reflect, and the backend's
                    name, options and tuned parameters; ``vectors.gen`` the generation alone (older xmr reads it)
    segments.*      the same over ``segments`` (always ``flat``; ids are ``segments.id``)

Paths are stored as TEXT when they are valid UTF-8 and as the raw file-system bytes (a BLOB) when they are not
(``bad\xffname.png`` from an old disk): :func:`db_path` / :func:`fs_path` convert losslessly, so such a file is
indexed, found again on the next run and served like any other.

Every batch of new vectors is committed to SQLite in one transaction together with a bumped ``generation``, so a
crash (Ctrl-C, ``kill -9``) loses at most the batch in flight and never leaves half a batch. The backend files are
a cache, each rewritten atomically (temp file + rename). When their generation is stale they are brought up to date
with the rows changed since (:meth:`IndexStore.vector_delta`: added, re-encoded or removed), not rebuilt; they are
built from SQLite when missing, damaged, or of another backend.
"""
from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from ..errors import XmrIndexError
from .expert_store import EXPERT_SCHEMA, ExpertStoreMixin
from .vector_cache import VectorCacheMixin

SCHEMA_VERSION = 4
# 1 -> 2: `segments` table added; 2 -> 3: `frames` table added; 3 -> 4: `expert_text` and `expert_state`
# (expert_store.py). All are created in place (CREATE TABLE IF NOT EXISTS) when an older index is opened for
# writing; a read-only open of an older index works without them.

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,      -- absolute path as walked
    root TEXT NOT NULL,             -- the folder given to `xmr index`
    size INTEGER NOT NULL,
    mtime REAL NOT NULL,
    sha256 TEXT NOT NULL,
    media_type TEXT NOT NULL,
    width INTEGER,
    height INTEGER,
    added REAL NOT NULL,
    vector BLOB NOT NULL,           -- float32, dim values
    dev INTEGER,                    -- st_dev and st_ino of the file when indexed: `xmr serve` refuses to send a
    ino INTEGER                     -- file whose (dev, ino, size, mtime) no longer match (added in place if missing)
);
CREATE INDEX IF NOT EXISTS items_root ON items(root);
CREATE INDEX IF NOT EXISTS items_added ON items(added);  -- vector_delta: rows re-encoded since a backend's watermark
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id INTEGER NOT NULL,       -- items.id of the video; rows are deleted together with their item
    start REAL NOT NULL,            -- seconds from the first frame
    end REAL NOT NULL,
    vector BLOB NOT NULL            -- float32, dim values
);
CREATE INDEX IF NOT EXISTS segments_item ON segments(item_id);
CREATE TABLE IF NOT EXISTS frames (
    item_id INTEGER PRIMARY KEY,    -- items.id of the video; deleted together with its item
    count INTEGER NOT NULL,         -- T frames
    times BLOB NOT NULL,            -- float64 (T,) seconds (the sampling grid segments were cut on)
    features BLOB NOT NULL          -- float32 (T, dim) L2-normalised frame embeddings
);
CREATE TABLE IF NOT EXISTS skipped (
    path TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    reason TEXT NOT NULL,
    size INTEGER,
    mtime REAL,
    seen REAL NOT NULL
);
"""


def db_path(path: str) -> str | bytes:
    """A path as stored in SQLite: the string itself, or its file-system bytes when it holds undecodable bytes
    (``os.fsdecode`` turns those into lone surrogates, which SQLite's UTF-8 TEXT cannot hold)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def fs_path(value: str | bytes) -> str:
    """The inverse of :func:`db_path`: a path string as ``os`` functions take it."""
    return os.fsdecode(value) if isinstance(value, bytes) else value


@dataclass
class ItemRecord:
    id: int
    path: str
    root: str
    size: int
    mtime: float
    sha256: str
    media_type: str
    width: int | None
    height: int | None


@dataclass
class NewItem:
    path: str
    root: str
    size: int
    mtime: float
    sha256: str
    media_type: str
    width: int | None
    height: int | None
    vector: np.ndarray
    segments: Sequence[tuple[float, float, np.ndarray]] = ()  # (start s, end s, vector) for videos
    frames: tuple[np.ndarray, np.ndarray] | None = None  # (times (T,), features (T, dim)) for re-scoring heads
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the file when read, checked before serving it


@dataclass
class SegmentRecord:
    id: int
    item_id: int
    start: float
    end: float


class IndexStore(VectorCacheMixin, ExpertStoreMixin):
    """Open (or create with ``create=True``) the index folder ``path``. One index is bound to one model spec."""

    def __init__(self, path: str | os.PathLike, *, create: bool = False, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self.db_path = self.path / "meta.sqlite"
        if not self.db_path.exists():
            if not create:
                raise XmrIndexError(
                    f"no index at {self.path} (meta.sqlite missing). Build one with: xmr index DIR --index {self.path}"
                )
            self.path.mkdir(parents=True, exist_ok=True)
        uri = self.db_path.absolute().as_uri() + ("?mode=ro" if readonly else "")
        self.immutable = False  # opened with SQLite's immutable=1 (see _open_unwritable)
        try:
            self.db = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.executescript(_SCHEMA + EXPERT_SCHEMA)
            try:
                self._check_schema()
            except sqlite3.OperationalError:
                if not (readonly and _unwritable(self.path)):
                    raise
                self._open_unwritable()
        except sqlite3.DatabaseError as e:
            raise XmrIndexError(f"cannot open index {self.path}: {e}") from None
        # table -> (vector backend, generation it reflects, watermark: newest items.added it holds)
        self._faiss_cache: dict[str, tuple[object, int, float | None]] = {}

    def _open_unwritable(self) -> None:
        """Read an index in a folder this user cannot write (another user's, a read-only mount): a WAL database
        needs its ``-shm`` file, which cannot be created there, so SQLite is told the file cannot change
        (``immutable=1``). Only what is in ``meta.sqlite`` itself is seen: ``xmr index`` checkpoints the WAL into
        it when it finishes, so a finished index reads whole; batches of a run still in progress are not seen."""
        self.db.close()
        self.db = sqlite3.connect(self.db_path.absolute().as_uri() + "?mode=ro&immutable=1", uri=True,
                                  isolation_level=None)
        self.immutable = True
        self._check_schema()

    # ---- meta -------------------------------------------------------------------------------------------------
    def _check_schema(self) -> None:
        v = self.get_meta("schema_version")
        if v is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(v) < SCHEMA_VERSION:
            # older schemas only lack tables that _SCHEMA has just created (IF NOT EXISTS) on a writable open
            if all(self._has_table(t) for t in ("segments", "frames", "expert_text", "expert_state")):
                self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif int(v) != SCHEMA_VERSION:
            raise XmrIndexError(f"index {self.path} has schema {v}; this xmr reads schema {SCHEMA_VERSION}")
        self.has_segments = self._has_table("segments")
        self.has_frames = self._has_table("frames")
        self.has_experts = self._has_table("expert_text") and self._has_table("expert_state")
        self.has_identity = _add_identity_columns(self.db, writable=not self.readonly)

    def _has_table(self, name: str) -> bool:
        return self.db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta(key,value) VALUES(?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                        (key, value))

    @property
    def model_spec(self) -> str | None:
        return self.get_meta("model_spec")

    @property
    def dim(self) -> int | None:
        d = self.get_meta("dim")
        return int(d) if d else None

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def bind_model(self, spec: str, dim: int, describe: dict | None = None) -> None:
        """Bind an empty index to a model, or check that it is already bound to the same one."""
        cur = self.model_spec
        if cur is None:
            self.set_meta("model_spec", spec)
            self.set_meta("dim", str(dim))
            self.set_meta("model", json.dumps(describe or {}))
            self.set_meta("created", str(time.time()))
        elif cur != spec:
            raise XmrIndexError(
                f"index {self.path} was built with model {cur!r}, not {spec!r}. One index holds one model's vectors: "
                f"use --model {cur} with this index, or give another --index PATH for {spec!r}."
            )
        elif self.dim != dim:
            raise XmrIndexError(f"index {self.path} has dim {self.dim} but model {spec!r} gives {dim}: the model "
                                f"changed since the index was built (e.g. xmr's default 'concept' went from 2000-d to "
                                f"2384-d with its round-2 adapter). Build a new index: xmr index FOLDER --index NEW_PATH")

    # ---- items ------------------------------------------------------------------------------------------------
    def _row(self, r) -> ItemRecord:
        return ItemRecord(r[0], fs_path(r[1]), fs_path(r[2]), *r[3:])

    _COLS = "id, path, root, size, mtime, sha256, media_type, width, height"

    def items_under(self, root: str) -> dict[str, ItemRecord]:
        rows = self.db.execute(f"SELECT {self._COLS} FROM items WHERE root=?", (db_path(root),)).fetchall()
        return {fs_path(r[1]): self._row(r) for r in rows}

    def get_items(self, ids: Sequence[int]) -> dict[int, ItemRecord]:
        out: dict[int, ItemRecord] = {}
        ids = [int(i) for i in ids]
        for s in range(0, len(ids), 500):
            chunk = ids[s : s + 500]
            q = f"SELECT {self._COLS} FROM items WHERE id IN ({','.join('?' * len(chunk))})"
            for r in self.db.execute(q, chunk):
                out[r[0]] = self._row(r)
        return out

    def items_with_file(self, paths: Sequence[str], sha256: str | None) -> list[int]:
        """Ids of the items stored under one of ``paths`` or whose content has the digest ``sha256`` (a copy of the
        same file elsewhere): what a composed search drops as its reference image."""
        ids = {r[0] for p in paths for r in self.db.execute("SELECT id FROM items WHERE path=?", (db_path(p),))}
        if sha256:
            ids |= {r[0] for r in self.db.execute("SELECT id FROM items WHERE sha256=?", (sha256,))}
        return sorted(ids)

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def media_counts(self) -> dict[str, int]:
        """Items per media type, e.g. ``{"image": 8, "video": 2}``."""
        return dict(self.db.execute("SELECT media_type, COUNT(*) FROM items GROUP BY media_type").fetchall())

    def item_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """(n, dim) float32 stored vectors of items ``ids`` in the given order (KeyError for an unknown id)."""
        dim = self.dim or 0
        out = np.zeros((len(ids), dim), np.float32)
        where = {int(i): j for j, i in enumerate(ids)}
        keys = list(where)
        for s in range(0, len(keys), 500):
            chunk = keys[s : s + 500]
            q = f"SELECT id, vector FROM items WHERE id IN ({','.join('?' * len(chunk))})"
            for i, blob in self.db.execute(q, chunk):
                out[where.pop(i)] = np.frombuffer(blob, np.float32)
        if where:
            raise KeyError(f"no items with ids {sorted(where)[:5]}")
        return out

    def roots(self) -> list[tuple[str, int]]:
        return [(fs_path(r), n) for r, n in
                self.db.execute("SELECT root, COUNT(*) FROM items GROUP BY root ORDER BY root").fetchall()]

    def add_batch(self, new: Sequence[NewItem], replace_ids: Iterable[int] = (), clear_skips: Iterable[str] = ()) -> None:
        """Insert new rows (replacing rows ``replace_ids``) in one transaction and bump the generation."""
        dim = self.dim
        with self._tx():
            for i in replace_ids:
                self._delete_item(int(i))
            for p in clear_skips:
                self.db.execute("DELETE FROM skipped WHERE path=?", (db_path(p),))
            now = time.time()
            for it in new:
                v = np.ascontiguousarray(it.vector, dtype=np.float32)
                if v.shape != (dim,) or not np.isfinite(v).all():
                    raise XmrIndexError(f"refusing to store a bad vector for {it.path} (shape {v.shape})")
                self.db.execute(
                    "INSERT INTO items(path,root,size,mtime,sha256,media_type,width,height,added,vector) "
                    "VALUES(?,?,?,?,?,?,?,?,?,?) ON CONFLICT(path) DO UPDATE SET root=excluded.root, "
                    "size=excluded.size, mtime=excluded.mtime, sha256=excluded.sha256, media_type=excluded.media_type,"
                    " width=excluded.width, height=excluded.height, added=excluded.added, vector=excluded.vector",
                    (db_path(it.path), db_path(it.root), it.size, it.mtime, it.sha256, it.media_type, it.width, it.height,
                     now, v.tobytes()),
                )
                if it.identity is not None:
                    self._set_identity(it.path, *it.identity)
                if self.has_segments:  # an upsert keeps the row id: its old segments go, the new ones come in
                    item_id = self.db.execute("SELECT id FROM items WHERE path=?", (db_path(it.path),)).fetchone()[0]
                    self.db.execute("DELETE FROM segments WHERE item_id=?", (item_id,))
                    for start, end, sv in it.segments:
                        sv = np.ascontiguousarray(sv, dtype=np.float32)
                        if sv.shape != (dim,) or not np.isfinite(sv).all():
                            raise XmrIndexError(f"refusing to store a bad segment vector for {it.path} at {start} s")
                        self.db.execute("INSERT INTO segments(item_id,start,end,vector) VALUES(?,?,?,?)",
                                        (item_id, float(start), float(end), sv.tobytes()))
                elif it.segments:
                    raise XmrIndexError(f"index {self.path} is read-only schema 1 and cannot store video segments")
                if self.has_frames:
                    item_id = self.db.execute("SELECT id FROM items WHERE path=?", (db_path(it.path),)).fetchone()[0]
                    self.db.execute("DELETE FROM frames WHERE item_id=?", (item_id,))
                    if it.frames is not None:
                        self._insert_frames(item_id, it.path, *it.frames)
                elif it.frames is not None:
                    raise XmrIndexError(f"index {self.path} has an old schema and cannot store frame features")
            self._bump()

    def _insert_frames(self, item_id: int, path: str, times: np.ndarray, feats: np.ndarray) -> None:
        times = np.ascontiguousarray(times, dtype=np.float64).reshape(-1)
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        if feats.shape != (len(times), self.dim) or not len(times) or not np.isfinite(feats).all():
            raise XmrIndexError(f"refusing to store bad frame features for {path} (shape {feats.shape})")
        self.db.execute("INSERT INTO frames(item_id,count,times,features) VALUES(?,?,?,?)",
                        (item_id, len(times), times.tobytes(), feats.tobytes()))

    def touch(self, item_id: int, size: int, mtime: float, identity: tuple[int, int] | None = None) -> None:
        """Record a new mtime/size (and ``(st_dev, st_ino)``) for a file whose content hash did not change."""
        self.db.execute("UPDATE items SET size=?, mtime=? WHERE id=?", (size, mtime, item_id))
        if identity is not None and self.has_identity:
            self.db.execute("UPDATE items SET dev=?, ino=? WHERE id=?", (*identity, item_id))

    # ---- file identity (what `xmr serve` compares a file with before sending it) ------------------------------
    def _set_identity(self, path: str, dev: int, ino: int) -> None:
        if self.has_identity:
            self.db.execute("UPDATE items SET dev=?, ino=? WHERE path=?", (dev, ino, db_path(path)))

    def identity(self, item_id: int) -> tuple[int, float, int | None, int | None] | None:
        """``(size, mtime, st_dev, st_ino)`` recorded when the item was indexed (dev/ino None for rows written by
        an older xmr), or None for an unknown id."""
        cols = "size, mtime, dev, ino" if self.has_identity else "size, mtime, NULL, NULL"
        return self.db.execute(f"SELECT {cols} FROM items WHERE id=?", (int(item_id),)).fetchone()

    def delete(self, ids: Iterable[int]) -> int:
        ids = [int(i) for i in ids]
        if not ids:
            return 0
        with self._tx():
            for i in ids:
                self._delete_item(i)
            self._bump()
        return len(ids)

    def _delete_item(self, item_id: int) -> None:
        self.db.execute("DELETE FROM items WHERE id=?", (item_id,))
        if self.has_segments:
            self.db.execute("DELETE FROM segments WHERE item_id=?", (item_id,))
        if self.has_frames:
            self.db.execute("DELETE FROM frames WHERE item_id=?", (item_id,))
        self._delete_expert_rows(item_id)

    # ---- video segments ---------------------------------------------------------------------------------------
    def count_segments(self) -> int:
        if not self.has_segments:
            return 0
        return self.db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]

    def get_segments(self, ids: Sequence[int]) -> dict[int, SegmentRecord]:
        """Segment rows by ``segments.id``."""
        out: dict[int, SegmentRecord] = {}
        ids = [int(i) for i in ids]
        for s in range(0, len(ids), 500):
            chunk = ids[s : s + 500]
            q = f"SELECT id, item_id, start, end FROM segments WHERE id IN ({','.join('?' * len(chunk))})"
            for r in self.db.execute(q, chunk):
                out[r[0]] = SegmentRecord(*r)
        return out

    def segments_of(self, item_id: int) -> tuple[list[SegmentRecord], np.ndarray]:
        """All segments of one item in time order, with their vectors (n, dim)."""
        if not self.has_segments:
            return [], np.zeros((0, self.dim or 0), np.float32)
        rows = self.db.execute("SELECT id, item_id, start, end, vector FROM segments WHERE item_id=? ORDER BY start",
                               (int(item_id),)).fetchall()
        vecs = np.frombuffer(b"".join(r[4] for r in rows), dtype=np.float32).reshape(len(rows), self.dim or 0)
        return [SegmentRecord(*r[:4]) for r in rows], vecs

    def segment_rows(self) -> list[SegmentRecord]:
        """Every segment row (no vectors), ordered by item and start time."""
        if not self.has_segments:
            return []
        return [SegmentRecord(*r) for r in
                self.db.execute('SELECT id, item_id, start, "end" FROM segments ORDER BY item_id, start, id')]

    def frames_of(self, item_id: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(times (T,), features (T, dim)) stored for a video, or None (images; indexes without a re-scoring head)."""
        if not self.has_frames:
            return None
        r = self.db.execute("SELECT count, times, features FROM frames WHERE item_id=?", (int(item_id),)).fetchone()
        if r is None:
            return None
        t = np.frombuffer(r[1], dtype=np.float64)
        return t, np.frombuffer(r[2], dtype=np.float32).reshape(r[0], self.dim or 0)

    def count_frames(self) -> int:
        """Videos with stored frame features."""
        return self.db.execute("SELECT COUNT(*) FROM frames").fetchone()[0] if self.has_frames else 0

    # ---- skipped files ----------------------------------------------------------------------------------------
    def record_skip(self, path: str, root: str, reason: str, size: int | None, mtime: float | None) -> None:
        self.db.execute(
            "INSERT INTO skipped(path,root,reason,size,mtime,seen) VALUES(?,?,?,?,?,?) ON CONFLICT(path) DO UPDATE "
            "SET root=excluded.root, reason=excluded.reason, size=excluded.size, mtime=excluded.mtime, seen=excluded.seen",
            (db_path(path), db_path(root), reason, size, mtime, time.time()),
        )

    def skipped_under(self, root: str) -> dict[str, tuple[str, int | None, float | None]]:
        rows = self.db.execute("SELECT path, reason, size, mtime FROM skipped WHERE root=?",
                               (db_path(root),)).fetchall()
        return {fs_path(r[0]): (r[1], r[2], r[3]) for r in rows}

    def forget_skips(self, paths: Iterable[str]) -> None:
        for p in paths:
            self.db.execute("DELETE FROM skipped WHERE path=?", (db_path(p),))

    def skipped(self) -> list[tuple[str, str]]:
        return [(fs_path(p), r) for p, r in self.db.execute("SELECT path, reason FROM skipped ORDER BY path")]

    # ---- vectors ----------------------------------------------------------------------------------------------
    def iter_vectors(self, chunk: int = 4096, table: str = "items") -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (ids int64 (n,), vectors float32 (n, dim)) in id order, ``chunk`` rows at a time.

        ``table`` is ``"items"`` (one vector per file) or ``"segments"`` (video segments)."""
        if table not in ("items", "segments"):
            raise ValueError(f"unknown vector table {table!r}")
        if table == "segments" and not self.has_segments:
            return
        dim = self.dim
        last = -1
        while True:
            rows = self.db.execute(f"SELECT id, vector FROM {table} WHERE id>? ORDER BY id LIMIT ?",
                                   (last, chunk)).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), dim)
            yield ids, vecs
            last = int(ids[-1])

    # ---- plumbing ---------------------------------------------------------------------------------------------
    def _bump(self) -> None:
        self.set_meta("generation", str(self.generation + 1))

    class _Tx:
        def __init__(self, db):
            self.db = db

        def __enter__(self):
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, et, ev, tb):
            self.db.execute("COMMIT" if et is None else "ROLLBACK")
            return False

    def _tx(self):
        return self._Tx(self.db)

    @contextlib.contextmanager
    def read_transaction(self):
        """Every read inside sees one committed generation (SQLite WAL snapshot isolation)."""
        self.db.execute("BEGIN")
        try:
            yield self
        finally:
            self.db.execute("COMMIT")

    def close(self) -> None:
        for backend, *_ in self._faiss_cache.values():
            backend.release()
        self._faiss_cache.clear()
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def _add_identity_columns(db: sqlite3.Connection, writable: bool) -> bool:
    """``items.dev`` / ``items.ino`` (the file's ``st_dev`` / ``st_ino`` at index time): added in place to an index
    made before they existed when it is opened for writing. True when the table has them."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(items)")}
    if {"dev", "ino"} <= cols:
        return True
    if not writable:
        return False
    db.execute("ALTER TABLE items ADD COLUMN dev INTEGER")
    db.execute("ALTER TABLE items ADD COLUMN ino INTEGER")
    return True


def _unwritable(folder: Path) -> bool:
    """True when this process cannot create files in ``folder`` (permissions, or a read-only file system)."""
    if not os.access(folder, os.W_OK):
        return True
    try:
        return os.statvfs(folder).f_flag & os.ST_RDONLY != 0
    except (OSError, AttributeError):
        return False
