"""A querybank against an index that is updated from the previous generation's statistics instead of scored again
from scratch (:class:`IndexBank`), so adding a few photos to a large index costs a few bank x new-item products.

Per index (and bank, model, bank embeddings) a state file keeps, for the last generation it scored: the item ids,
a signature of each item's vector (two fixed random projections, float64), the per-item statistics (QB-Norm's
log-sum-exp, CSLS's top-k mean: each depends on its own column only) and each bank row's top-k (score, item id)
(QB-Norm's activation set is the union of those). For a new generation:

* items whose id and signature are unchanged keep their per-item statistics; new and re-encoded items are scored
  against the whole bank (B x n_new);
* a bank row's top-k is merged with the new items' scores, unless one of its top-k items was deleted or re-encoded:
  such rows are scored against the whole index again (B_affected x G);
* more than half of the items changed, no state, or other statistics requested: everything is scored again.

The result equals a full pass up to float32 rounding of the products (tests/test_qbnorm_default.py)."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from ..rescore.bank import QueryBank, block_stats, merge_row_top

log = logging.getLogger(__name__)

#: rows of item vectors read per block (new items, affected rows)
BLOCK = 4096
_SIG_SEED = 20260917
_DIRS: dict[int, np.ndarray] = {}


def vector_signature(vecs: np.ndarray) -> np.ndarray:
    """(n, 2) float64 projections of (n, d) vectors on two fixed random directions: a re-encoded item's changes."""
    v = np.asarray(vecs)
    d = v.shape[1]
    if d not in _DIRS:
        _DIRS[d] = np.random.default_rng(_SIG_SEED).normal(size=(d, 2))
    return (v @ _DIRS[d].astype(v.dtype)).astype(np.float64) if v.dtype == np.float32 else v @ _DIRS[d]


class IndexBank(QueryBank):
    """Statistics of bank embeddings ``emb`` (B, d) against the items ``ids`` (ascending, signatures ``sig``) of
    ``reader``; ``state`` is the state file of this index's lineage (read, then rewritten after each pass).
    ``update`` (after a pass): ``{"mode": "full" | "incremental", "new_items", "rows_rescored"}``."""

    def __init__(self, emb, reader, ids: np.ndarray, sig: np.ndarray, state: Path | None, info: dict | None = None):
        super().__init__(None, len(emb), len(ids), {"source": "embeddings", **(info or {})})
        self._t = np.ascontiguousarray(emb, np.float32)
        self._reader, self._ids, self._sig, self._state = reader, ids, sig, state
        self.update: dict = {}

    def _blocks(self, ids: np.ndarray | None = None):
        if ids is None:
            return (v for _, v in self._reader.iter_vectors(BLOCK))
        return (self._reader.item_vectors(ids[a : a + BLOCK]) for a in range(0, len(ids), BLOCK))

    def _pass(self, todo):
        old = self._load()
        ks = sorted({int(r[1]) for r in todo if r[0] == "active"})
        cols_req = [r for r in todo if r[0] != "active"]
        out = None
        if old is not None and all(f"{r[0]}|{r[1]}" in old for r in cols_req) and all(f"top_v|{k}" in old for k in ks):
            out, top = self._incremental(old, todo, cols_req, ks)
        if out is None:
            out, top = block_stats(self._t, self._blocks(), todo, self.num_items)
            self.update = {"mode": "full", "new_items": int(self.num_items), "rows_rescored": int(self.num_queries)}
        self._save(out, top, old)
        self.info["update"] = dict(self.update)
        return out

    def _incremental(self, old: dict, todo, cols_req, ks):
        ids, oid = self._ids, old["ids"]
        pos = np.minimum(np.searchsorted(oid, ids), max(len(oid) - 1, 0))
        present = (oid[pos] == ids) if len(oid) else np.zeros(len(ids), bool)
        same = present & (np.abs(old["sig"][pos] - self._sig) <= 1e-6 * (1 + np.abs(self._sig))).all(axis=1)
        new_cols = np.flatnonzero(~same)
        if len(new_cols) > len(ids) // 2:
            return None, None
        gone = np.setdiff1d(oid, ids[same])
        out = {}
        for r in cols_req:
            out[r] = np.empty(len(ids))
            out[r][same] = old[f"{r[0]}|{r[1]}"][pos[same]]
        new_top: dict = {}
        if len(new_cols):
            sub, new_top = block_stats(self._t, self._blocks(ids[new_cols]), todo, len(new_cols))
            for r in cols_req:
                out[r][new_cols] = sub[r]
        top, rescored = {}, 0
        for k in ks:
            ov, oi = old[f"top_v|{k}"], old[f"top_i|{k}"]
            bad = np.isin(oi, gone).any(axis=1) | (oi < 0).any(axis=1)
            cols = np.searchsorted(ids, np.where(bad[:, None], ids[0], oi))  # item ids -> current columns
            cur = (ov, cols)
            if k in new_top:
                nv, nc = new_top[k]
                cur = merge_row_top(cur, (nv, new_cols[nc]), k)
            v, c = np.array(cur[0]), np.array(cur[1])
            rows = np.flatnonzero(bad)
            if len(rows):
                _, full = block_stats(self._t[rows], self._blocks(), [("active", k)], len(ids))
                v[rows], c[rows] = full[k]
                rescored = max(rescored, len(rows))
            top[k] = (v, c)
            mask = np.zeros(len(ids), bool)
            mask[c.ravel()] = True
            out[("active", k)] = mask
        self.update = {"mode": "incremental", "new_items": int(len(new_cols)), "removed_items": int(len(gone)),
                       "rows_rescored": int(rescored)}
        return out, top

    # ---- the state file ---------------------------------------------------------------------------------------
    def _load(self) -> dict | None:
        if self._state is None or not self._state.is_file():
            return None
        try:
            with np.load(self._state, allow_pickle=False) as z:
                old = {k: z[k] for k in z.files}
            if old["top_b"].item() != self.num_queries or old["sig"].shape != (len(old["ids"]), 2):
                return None
            return old
        except (OSError, ValueError, KeyError) as e:
            log.warning("querybank state %s cannot be read (%s); scoring the whole index", self._state, e)
            return None

    def _save(self, out: dict, top: dict, old: dict | None) -> None:
        if self._state is None:
            return
        arrays = {"ids": self._ids, "sig": self._sig, "top_b": np.array(self.num_queries),
                  "meta": np.array(json.dumps({"update": self.update}))}
        for r, a in out.items():
            if r[0] != "active":
                arrays[f"{r[0]}|{r[1]}"] = a
        for k, (v, c) in top.items():
            arrays[f"top_v|{k}"], arrays[f"top_i|{k}"] = v, self._ids[c]
        try:
            self._state.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._state.with_name(f".{self._state.stem}.{os.getpid()}.tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(self._state)
        except OSError as e:  # a read-only cache: the next generation is scored in full
            log.warning("could not write querybank state %s (%s)", self._state, e)
