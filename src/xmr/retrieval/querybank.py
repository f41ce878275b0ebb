"""Querybanks for an index: every bank text scored against every item vector of the index, once per (bank, model,
bank embeddings, index generation); the per-item statistics are cached in ``$XMR_CACHE/querybank/`` so later
searches load a few arrays. Used by the ``rescore`` stage (:mod:`xmr.retrieval.stages.rescore`) and warmed by
``xmr index`` for the model's own re-scoring (:func:`warm_model_querybank`), so the first search after an index
change pays nothing.

Cost of a (re)computation: the bank's text embeddings (a bundled bank's are shipped for ``concept``:
:meth:`xmr.encoders.Encoder.encode_bank_texts`) and a B x G product streamed over blocks of item vectors
(:func:`xmr.rescore.bank.block_stats`): memory stays at about B x 1,700 x 12 bytes (100 MB for B = 5,000) plus one
block of vectors, whatever G is; time grows as B x G x d. A new generation of an index already scored is updated
from the last one's statistics (:mod:`.querybank_update`): B x (new or re-encoded items), plus the bank rows whose
top item was removed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..rescore.bank import QueryBank, bank_embedding_key, encode_bank_texts, read_bank_texts

log = logging.getLogger(__name__)

#: item vectors read per block while scoring a bank against an index
BLOCK_ITEMS = 4096


def _index_ids(reader) -> tuple[np.ndarray, str, np.ndarray]:
    """The item ids (ascending), a digest of their vectors and each vector's signature
    (:func:`~xmr.retrieval.querybank_update.vector_signature`: two float64 projections, which items an update
    re-encoded). The digest hashes the ids and the signatures rounded to float32: a rebuilt index at the same path,
    generation and ids but with other vectors does not find the old statistics, and the scan costs one (G, d) x (d, 2)
    product instead of hashing G x d floats."""
    from .querybank_update import vector_signature

    ids, sigs = [], []
    for i, v in (reader.iter_vectors(BLOCK_ITEMS) if reader.count() else ()):
        ids.append(np.asarray(i, np.int64))
        sigs.append(vector_signature(v))
    if not ids:
        return np.zeros(0, np.int64), "", np.zeros((0, 2))
    ids, sig = np.concatenate(ids), np.concatenate(sigs)
    h = hashlib.blake2b(ids.tobytes(), digest_size=16)
    h.update(sig.astype(np.float32).tobytes())
    return ids, h.hexdigest(), sig


class _CachedBank(QueryBank):
    """A QueryBank whose statistics persist in an .npz file; the bank is only encoded and scored against the index
    (``build()`` -> a :class:`QueryBank`) if a requested statistic is missing. ``loaded``: statistics that came from
    the file; ``computed``: whether the bank was scored in this process."""

    def __init__(self, build, nq: int, ni: int, info: dict, path: Path):
        super().__init__(None, nq, ni, info)
        self._build, self._path, self._inner = build, path, None
        self.computed = False
        self.loaded = 0
        if path.is_file():
            try:
                with np.load(path, allow_pickle=False) as z:
                    for key in z.files:
                        if key == "info":
                            self.info.update(json.loads(str(z[key])))
                            continue
                        kind, p = key.split("|")
                        arr = z[key]
                        if arr.shape != (ni,):
                            raise ValueError(f"{key} has shape {arr.shape}")
                        self._cache[(kind, float(p) if kind == "lse" else int(p))] = arr
                        self.loaded += 1
            except (OSError, ValueError, KeyError) as e:  # damaged cache file: computed again
                log.warning("querybank cache %s cannot be read (%s); computing it again", path, e)
                self._cache.clear()
                self.loaded = 0

    def _pass(self, todo):
        if self._inner is None:
            self._inner = self._build()
        self.computed = True
        out = self._inner.compute(todo)
        self.info.update({k: v for k, v in self._inner.info.items() if k not in self.info or k == "update"})
        return out

    def compute(self, requests):
        missing = [r for r in requests if r not in self._cache]
        out = super().compute(requests)
        if missing:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._path.with_name(f".{self._path.stem}.tmp.npz")
            np.savez(tmp, info=np.array(json.dumps(self.info)),
                     **{f"{k}|{p}": v for (k, p), v in self._cache.items()})
            tmp.replace(self._path)
        return out


def index_querybank(reader, encoder, source: str, *, use_cache: bool = True, show_progress: bool | None = None
                    ) -> tuple[QueryBank, np.ndarray]:
    """A querybank of ``source`` texts against all item vectors of ``reader``. Returns ``(bank, ids)`` where
    ``ids`` (G,) are the index item ids of the bank's columns (ascending)."""
    from ..paths import cache_dir

    texts, info = read_bank_texts(source)
    ids, vec_digest, sig = _index_ids(reader)
    if ids.size == 0:
        raise ConfigError("the index is empty; nothing to build a querybank against")
    where = str(Path(reader.path).resolve()) if Path(str(reader.path)).is_dir() else str(reader.path)
    lineage = {"texts": hashlib.sha256("\n".join(texts).encode()).hexdigest(), "model": encoder.spec,
               "embeddings": bank_embedding_key(encoder, info), "index": where}
    key = hashlib.sha256(json.dumps({**lineage, "generation": reader.generation,
                                     "ids": hashlib.sha256(ids.tobytes()).hexdigest(), "vectors": vec_digest},
                                    sort_keys=True).encode()).hexdigest()[:20]
    state = hashlib.sha256(json.dumps(lineage, sort_keys=True).encode()).hexdigest()[:20]
    info = {**info, "against": "index", "index_items": int(len(ids))}

    def build() -> QueryBank:
        from .querybank_update import IndexBank

        t0 = time.perf_counter()
        emb, how = encode_bank_texts(encoder, texts, info, show_progress=show_progress)
        log.info("querybank %s: %d texts (%s) scored against %d index items", info["source"], len(texts),
                 how.get("embeddings"), len(ids))
        bank = IndexBank(emb, reader, ids, sig, cache_dir("querybank", "state", f"{state}.npz") if use_cache else None,
                         {**info, **how})
        bank.info["embed_seconds"] = round(time.perf_counter() - t0, 3)
        return bank

    if use_cache:
        return _CachedBank(build, len(texts), len(ids), info, cache_dir("querybank", f"{key}.npz")), ids
    return build(), ids


def warm_querybank(reader, encoder, names, params: dict, source: str) -> dict:
    """Compute (or find cached) the statistics ``names`` need from ``source`` against ``reader``'s items, so a
    search with these re-scorers on this generation loads them instead. Returns what was done: ``bank``, ``items``,
    ``generation``, ``computed`` (False: they were cached already), ``seconds``."""
    from ..rescore import build_pipeline

    t0 = time.perf_counter()
    bank, ids = index_querybank(reader, encoder, source)
    build_pipeline(list(names), params, bank).prepare()
    return {"bank": source, "size": bank.num_queries, "items": int(len(ids)), "generation": reader.generation,
            "computed": bool(getattr(bank, "computed", True)), "seconds": round(time.perf_counter() - t0, 3),
            "embeddings": bank.info.get("embeddings"), "update": bank.info.get("update")}


def warm_model_querybank(reader, encoder) -> dict | None:
    """:func:`warm_querybank` for the re-scoring ``encoder`` recommends (``Encoder.rescore_default``: ``concept``'s
    QB-Norm with its bundled bank); None when it recommends none or the index is empty."""
    rec = getattr(encoder, "rescore_default", None)
    if rec is None or not reader.count():
        return None
    return {**warm_querybank(reader, encoder, rec.names, rec.params, rec.bank), "label": rec.label()}
