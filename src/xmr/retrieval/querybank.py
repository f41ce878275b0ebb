"""Querybanks for an index: every bank text scored against every item vector of the index (B x G dot products,
streamed ``chunk`` rows at a time, with the index's G x d vectors in memory), once per (bank, model, index
generation); the per-item statistics are cached in ``$XMR_CACHE/querybank/`` so later searches load a few arrays.
Used by the ``rescore`` stage (:mod:`xmr.retrieval.stages.rescore`)."""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..rescore.bank import QueryBank, read_bank_texts

log = logging.getLogger(__name__)


def _index_vectors(reader) -> tuple[np.ndarray, np.ndarray]:
    ids, vecs = [], []
    for i, v in reader.iter_vectors():
        ids.append(i)
        vecs.append(np.array(v, copy=True))
    if not ids:
        raise ConfigError("the index is empty")
    return np.concatenate(ids), np.concatenate(vecs)


class _CachedBank(QueryBank):
    """A QueryBank whose statistics persist in an .npz file; the bank is only encoded if a statistic is missing."""

    def __init__(self, chunks, nq, ni, info, path):
        super().__init__(chunks, nq, ni, info)
        self._path = path
        if path.is_file():
            with np.load(path) as z:
                for key in z.files:
                    kind, p = key.split("|")
                    self._cache[(kind, float(p) if kind == "lse" else int(p))] = z[key]

    def compute(self, requests):
        missing = [r for r in requests if r not in self._cache]
        out = super().compute(requests)
        if missing:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_suffix(".tmp.npz")
            np.savez(tmp, **{f"{k}|{p}": v for (k, p), v in self._cache.items()})
            tmp.replace(self._path)
        return out


def index_querybank(reader, encoder, source: str, *, use_cache: bool = True) -> tuple[QueryBank, np.ndarray]:
    """A querybank of ``source`` texts against all item vectors of ``reader``. Returns ``(bank, ids)`` where
    ``ids`` (G,) are the index item ids of the bank's columns (ascending)."""
    from ..paths import cache_dir

    texts, info = read_bank_texts(source)
    ids = np.concatenate([i for i, _ in reader.iter_vectors()]) if reader.count() else np.zeros(0, np.int64)
    if ids.size == 0:
        raise ConfigError("the index is empty; nothing to build a querybank against")
    key = hashlib.sha256(json.dumps({"texts": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
                                     "model": encoder.spec, "index": str(Path(reader.path).resolve()) if Path(reader.path).is_dir() else str(reader.path),
                                     "generation": reader.generation, "ids": hashlib.sha256(ids.tobytes()).hexdigest()},
                                    sort_keys=True).encode()).hexdigest()[:20]
    state: dict = {}

    def chunks():
        if "bank" not in state:
            log.info("querybank: encoding %d texts and scoring them against %d index items", len(texts), len(ids))
            _, vecs = _index_vectors(reader)
            state["bank"] = QueryBank.from_embeddings(encoder.encode_text(texts), vecs)
        return state["bank"]._chunks()

    info = {**info, "against": "index", "index_items": int(len(ids))}
    path = cache_dir("querybank", f"{key}.npz")
    if use_cache:
        bank = _CachedBank(chunks, len(texts), len(ids), info, path)
    else:
        bank = QueryBank(chunks, len(texts), len(ids), info)
    return bank, ids
