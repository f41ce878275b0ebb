"""The experts' part of the index (schema 4): their text rows with vectors, and per (item, expert) state.

Tables (created in place when an older index is opened for writing; a read-only open of an older index has no
experts)::

    expert_text(id, item_id, expert, field, start, end, confidence, text, vector)
        one row per text an expert produced (an OCR'd image or frame, a sidecar field, a subtitle cue);
        vector: float32 (dim,), the text embedded with the index model's text tower
    expert_state(item_id, expert, signature, rows, reason, seen)
        what the expert last did for the item: ``signature`` of its inputs (re-run when it changes), how many rows
        it wrote, and ``reason`` when it skipped the file (NULL when it ran)

``meta.experts`` holds the experts the index was built with (JSON list); later ``xmr index`` runs keep them.
Rows go with their item (:meth:`IndexStore._delete_item`). A mixin of :class:`~xmr.index.store.IndexStore`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import XmrIndexError

EXPERT_SCHEMA = """
CREATE TABLE IF NOT EXISTS expert_text (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id INTEGER NOT NULL,       -- items.id; deleted with its item
    expert TEXT NOT NULL,           -- xmr.registries.EXPERTS name: ocr, sidecar, subtitles
    field TEXT NOT NULL,            -- ocr | text | title | tags | exif:... | cue ...
    start REAL,                     -- seconds (video frames, subtitle cues); NULL for a whole file
    "end" REAL,
    confidence REAL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL            -- float32, dim values: the text through the index model's text tower
);
CREATE INDEX IF NOT EXISTS expert_text_item ON expert_text(item_id);
CREATE TABLE IF NOT EXISTS expert_state (
    item_id INTEGER NOT NULL,
    expert TEXT NOT NULL,
    signature TEXT NOT NULL,        -- the expert's inputs when it last ran (media hash, sidecar size/mtime, config)
    rows INTEGER NOT NULL,
    reason TEXT,                    -- why the expert skipped this file, NULL when it ran
    seen REAL NOT NULL,
    PRIMARY KEY (item_id, expert)
);
"""

EXPERTS_KEY = "experts"
EXPERT_SETTINGS_KEY = "expert_settings"  # {expert: {Config field: value}}, e.g. the sidecar's --manifest files


@dataclass
class ExpertRow:
    id: int
    item_id: int
    expert: str
    field: str
    start: float | None
    end: float | None
    confidence: float | None
    text: str


class ExpertStoreMixin:
    """Expert rows and states of an :class:`~xmr.index.store.IndexStore` (``self.db``, ``self.dim``, ``_tx``)."""

    has_experts: bool = False

    # ---- which experts the index carries -------------------------------------------------------------------
    def expert_names(self) -> list[str]:
        v = self.get_meta(EXPERTS_KEY)
        return list(json.loads(v)) if v else []

    def set_expert_names(self, names: Sequence[str]) -> None:
        self.set_meta(EXPERTS_KEY, json.dumps(list(names)))

    def expert_settings(self) -> dict:
        v = self.get_meta(EXPERT_SETTINGS_KEY)
        return dict(json.loads(v)) if v else {}

    def set_expert_settings(self, settings: dict) -> None:
        self.set_meta(EXPERT_SETTINGS_KEY, json.dumps(settings, sort_keys=True))

    # ---- per (item, expert) state ----------------------------------------------------------------------------
    def expert_states(self) -> dict[tuple[int, str], tuple[str, int, str | None]]:
        """{(item id, expert): (signature, rows, skip reason or None)}."""
        if not self.has_experts:
            return {}
        return {(r[0], r[1]): (r[2], r[3], r[4]) for r in
                self.db.execute("SELECT item_id, expert, signature, rows, reason FROM expert_state")}

    def put_expert_result(self, item_id: int, expert: str, signature: str, rows: Sequence, vectors: np.ndarray | None,
                          reason: str | None = None) -> None:
        """Replace ``expert``'s rows of item ``item_id`` with ``rows`` (objects with text, field, start, end,
        confidence) and their ``vectors`` (n, dim), or record that it skipped the file (``reason``), in one
        transaction that bumps the generation."""
        if not self.has_experts:
            raise XmrIndexError(f"index {self.path} has an old schema and cannot store experts' rows")
        dim = self.dim
        if rows:
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            if vectors.shape != (len(rows), dim) or not np.isfinite(vectors).all():
                raise XmrIndexError(f"refusing to store bad {expert} vectors for item {item_id} "
                                    f"(shape {vectors.shape})")
        with self._tx():
            self.db.execute("DELETE FROM expert_text WHERE item_id=? AND expert=?", (item_id, expert))
            for r, v in zip(rows, vectors if rows else ()):
                self.db.execute('INSERT INTO expert_text(item_id,expert,field,start,"end",confidence,text,vector) '
                                "VALUES(?,?,?,?,?,?,?,?)",
                                (item_id, expert, r.field, r.start, r.end, r.confidence, r.text, v.tobytes()))
            self.db.execute("INSERT INTO expert_state(item_id,expert,signature,rows,reason,seen) VALUES(?,?,?,?,?,?) "
                            "ON CONFLICT(item_id, expert) DO UPDATE SET signature=excluded.signature, "
                            "rows=excluded.rows, reason=excluded.reason, seen=excluded.seen",
                            (item_id, expert, signature, len(rows), reason, time.time()))
            self._bump()

    def _delete_expert_rows(self, item_id: int) -> None:
        if self.has_experts:
            self.db.execute("DELETE FROM expert_text WHERE item_id=?", (item_id,))
            self.db.execute("DELETE FROM expert_state WHERE item_id=?", (item_id,))

    # ---- reading ---------------------------------------------------------------------------------------------
    def expert_matrix(self) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
        """Every expert row: (row ids (n,), item ids (n,), expert names [n], vectors (n, dim))."""
        dim = self.dim or 0
        if not self.has_experts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), [], np.zeros((0, dim), np.float32)
        rows = self.db.execute("SELECT id, item_id, expert, vector FROM expert_text ORDER BY id").fetchall()
        ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        items = np.fromiter((r[1] for r in rows), np.int64, len(rows))
        vecs = np.frombuffer(b"".join(r[3] for r in rows), np.float32).reshape(len(rows), dim)
        return ids, items, [r[2] for r in rows], vecs

    def expert_rows(self, ids: Sequence[int]) -> dict[int, ExpertRow]:
        out: dict[int, ExpertRow] = {}
        if not self.has_experts:
            return out
        ids = [int(i) for i in ids]
        for s in range(0, len(ids), 500):
            chunk = ids[s : s + 500]
            q = ('SELECT id, item_id, expert, field, start, "end", confidence, text FROM expert_text '
                 f"WHERE id IN ({','.join('?' * len(chunk))})")
            for r in self.db.execute(q, chunk):
                out[r[0]] = ExpertRow(*r)
        return out

    def phrase_candidates(self, phrase: str, experts: Sequence[str] | None = None) -> list[ExpertRow]:
        """Expert rows whose text contains ``phrase`` (SQLite LIKE: case-insensitive for ASCII); the caller checks
        word boundaries and non-ASCII case."""
        if not self.has_experts or not phrase:
            return []
        pat = "%" + phrase.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = ('SELECT id, item_id, expert, field, start, "end", confidence, text FROM expert_text '
             "WHERE text LIKE ? ESCAPE '\\'")
        args: list = [pat]
        if experts:
            q += f" AND expert IN ({','.join('?' * len(experts))})"
            args += list(experts)
        return [ExpertRow(*r) for r in self.db.execute(q + " ORDER BY item_id, id", args)]

    def expert_summary(self) -> dict[str, dict]:
        """Per expert: items it ran on, items with rows, rows, and skipped files [(path, reason)]."""
        if not self.has_experts:
            return {}
        from .store import fs_path

        out: dict[str, dict] = {}
        for n in self.expert_names():  # "audio:DIR" is expert "audio" with argument DIR (its tower)
            base, _, arg = n.partition(":")
            out[base] = {"items": 0, "with_text": 0, "rows": 0, "skipped": [], **({"argument": arg} if arg else {})}
        for name, n, with_text, rows in self.db.execute(
                "SELECT expert, COUNT(*), SUM(rows > 0), SUM(rows) FROM expert_state GROUP BY expert"):
            out.setdefault(name, {"skipped": []}).update(items=n, with_text=int(with_text or 0), rows=int(rows or 0))
        for name, path, reason in self.db.execute(
                "SELECT s.expert, i.path, s.reason FROM expert_state s JOIN items i ON i.id = s.item_id "
                "WHERE s.reason IS NOT NULL ORDER BY s.expert, i.path"):
            out.setdefault(name, {"items": 0, "with_text": 0, "rows": 0, "skipped": []})["skipped"].append(
                (fs_path(path), reason))
        return out
