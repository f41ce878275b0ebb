"""The index as the server sees it: read-only, consistent, and picked up again when ``xmr index`` changes it.

``xmr index`` commits each batch (rows + vectors + a bumped ``meta.generation``) in one SQLite transaction, and
SQLite runs in WAL mode, so a reader sees either the whole batch or none of it. The server:

* opens SQLite read-only (``mode=ro``), one connection per worker thread;
* on every request reads ``meta.generation`` (one primary-key lookup) and compares it with the snapshot it holds;
* when it changed, builds the next snapshot (:func:`xmr.index.snapshot.open_snapshot`: a copy of the current item
  and segment vector backends plus the rows added, re-encoded or removed since, and the segment times, read from
  SQLite inside **one read transaction**, so everything comes from one committed generation), then swaps it in.
  The first snapshot maps the saved backend files (memory-mapped FAISS) instead of re-reading every vector. Requests that arrive while a rebuild runs keep using the
  previous snapshot (also consistent) instead of waiting. The server never writes ``vectors.faiss``.

This is also the only module where an item id becomes a filesystem path: :meth:`LiveIndex.media_path` takes an
integer id, looks the path up in the index, resolves symlinks and refuses anything that is not a regular file
under the item's resolved root, or whose identity (``st_dev``, ``st_ino``, size, mtime) is not the one recorded
when it was indexed (a file replaced by a hard link to ``/etc/passwd`` is refused, as is an edited file until it
is indexed again).

An index folder this user cannot write (another user's, a read-only mount) is opened too (see
:class:`~xmr.index.store.IndexStore`).
"""
from __future__ import annotations

import logging
import os
import re
import stat
import threading
from pathlib import Path

from ..errors import XmrIndexError
from ..index.snapshot import IndexSnapshot, SnapshotReader, open_snapshot
from ..index.store import IndexStore, ItemRecord
from ..paths import display_path

log = logging.getLogger(__name__)

#: canonical decimal item ids only: no sign, no exponent, no leading zeros, at most 18 digits (fits int64)
_ID_RE = re.compile(r"[1-9][0-9]{0,17}")


def parse_item_id(raw: str) -> int | None:
    """``"42"`` -> 42; anything else (``-1``, ``1e9``, ``abc``, ``../x``, ``042``) -> None."""
    return int(raw) if isinstance(raw, str) and _ID_RE.fullmatch(raw) else None


class LiveIndex:
    """Read-only view of an index folder that follows its updates (see the module docstring)."""

    def __init__(self, path: str | os.PathLike, *, allow_outside_root: bool = False) -> None:
        self.path = Path(path).absolute()
        self.allow_outside_root = allow_outside_root
        self._local = threading.local()
        self._rebuild_lock = threading.Lock()
        self._snap: IndexSnapshot | None = None
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

    def snapshot(self) -> IndexSnapshot:
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

    def _build(self) -> IndexSnapshot:
        return open_snapshot(self.store(), previous=self._snap)

    def reader(self, snap: IndexSnapshot | None = None) -> SnapshotReader:
        """The newest snapshot (or ``snap``) read through this thread's store: what :mod:`xmr.retrieval` searches."""
        return (snap or self.snapshot()).reader(self.store())

    # ---- items ------------------------------------------------------------------------------------------------
    def get_item(self, item_id: int) -> ItemRecord | None:
        return self.store().get_items([item_id]).get(item_id)

    def get_items(self, ids: list[int]) -> dict[int, ItemRecord]:
        return self.store().get_items(ids)

    def media_path(self, rec: ItemRecord) -> Path | None:
        """The real path of an item's file, or None when it must not be served (see :meth:`media_file`)."""
        try:
            return self.media_file(rec)
        except LookupError:
            return None

    def media_file(self, rec: ItemRecord) -> Path:
        """The real path of an item's file, or LookupError saying why it must not be served: the file is gone, is
        not a regular file, is not the file that was indexed (its (dev, inode, size, mtime) differ from the record),
        or (unless ``allow_outside_root``) resolves outside the item's resolved root (e.g. a swapped symlink)."""
        gone = LookupError("the item's file is no longer available")
        try:
            real = os.path.realpath(rec.path, strict=True)
            root = os.path.realpath(rec.root, strict=True)
            st = os.stat(real)
        except (OSError, ValueError):
            raise gone from None
        if not stat.S_ISREG(st.st_mode):
            raise gone
        if not self.allow_outside_root and os.path.commonpath([real, root]) != root:
            log.warning("refusing to serve item %d: %s resolves to %s, outside its root %s", rec.id,
                        display_path(rec.path), display_path(real), display_path(root))
            raise gone
        recorded = self.store().identity(rec.id)
        if recorded is None or not same_file(st, *recorded):
            log.warning("refusing to serve item %d: %s is not the file that was indexed (size, mtime or inode "
                        "changed)", rec.id, display_path(rec.path))
            raise LookupError("the item's file changed since it was indexed (index it again to serve it)")
        return Path(real)

    def close(self) -> None:
        st = getattr(self._local, "store", None)
        if st is not None:
            st.close()
            self._local.store = None


def same_file(st: os.stat_result, size: int, mtime: float, dev: int | None, ino: int | None) -> bool:
    """Is the file with ``stat`` ``st`` the one recorded (size, mtime and, when recorded, device and inode)?"""
    if st.st_size != size or st.st_mtime != mtime:
        return False
    return dev is None or ino is None or (st.st_dev, st.st_ino) == (dev, ino)


def relative_path(rec) -> str:
    """The path of an item (ItemRecord or SearchResult) relative to its indexed root (what clients see; absolute
    paths are never sent). Bytes of a name that is not UTF-8 are shown as ``\\xff`` (clients address items by
    id, so this text is for display only)."""
    rel = os.path.relpath(rec.path, rec.root)
    return os.fsencode(rel).decode("utf-8", "backslashreplace").replace(os.sep, "/")
