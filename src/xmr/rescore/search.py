"""Re-scoring, multi-query fusion and two-stage re-ranking on an index's top-K candidates (``xmr search``).

Flow for one search: encode the query text(s) -> top-``candidates`` items from the index (one query: a plain
search; several: :func:`xmr.multiquery.multi_query_search`) -> re-scoring steps on those candidate lists
(:meth:`RescorePipeline.topk`) -> optional cross-encoder re-ranking of the best ``rerank_k`` -> top ``k``.
Re-scoring is exact *within the candidate pool*; an item outside the pool cannot enter the results, so use a pool
larger than ``k`` (default: ``max(100, k)``).

A querybank for an index (:func:`index_querybank`) scores every bank text against every item vector of the index:
B x G dot products (streamed, chunk rows at a time) and the index's G x d vectors in memory, once per
(bank, model, index generation); the resulting per-item statistics are cached in ``$XMR_CACHE/querybank/`` so
later searches only load a few arrays.
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from .bank import QueryBank, read_bank_texts

log = logging.getLogger(__name__)


def _index_vectors(store) -> tuple[np.ndarray, np.ndarray]:
    ids, vecs = [], []
    for i, v in store.iter_vectors():
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


def index_querybank(store, encoder, source: str, *, use_cache: bool = True) -> tuple[QueryBank, np.ndarray]:
    """A querybank of ``source`` texts against all item vectors of ``store``. Returns ``(bank, ids)`` where
    ``ids`` (G,) are the index item ids of the bank's columns (ascending)."""
    from ..paths import cache_dir

    texts, info = read_bank_texts(source)
    ids = np.concatenate([i for i, _ in store.iter_vectors()]) if store.count() else np.zeros(0, np.int64)
    if ids.size == 0:
        raise ConfigError("the index is empty; nothing to build a querybank against")
    key = hashlib.sha256(json.dumps({"texts": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
                                     "model": encoder.spec, "index": str(store.path.resolve()),
                                     "generation": store.generation, "ids": hashlib.sha256(ids.tobytes()).hexdigest()},
                                    sort_keys=True).encode()).hexdigest()[:20]
    state: dict = {}

    def chunks():
        if "bank" not in state:
            log.info("querybank: encoding %d texts and scoring them against %d index items", len(texts), len(ids))
            _, vecs = _index_vectors(store)
            state["bank"] = QueryBank.from_embeddings(encoder.encode_text(texts), vecs)
        return state["bank"]._chunks()

    info = {**info, "against": "index", "index_items": int(len(ids))}
    path = cache_dir("querybank", f"{key}.npz")
    if use_cache:
        bank = _CachedBank(chunks, len(texts), len(ids), info, path)
    else:
        bank = QueryBank(chunks, len(texts), len(ids), info)
    return bank, ids


def staged_search(store, encoder, texts: Sequence[str], k: int = 10, *, fuse: str = "mean-sim", pipeline=None,
                  bank_ids: np.ndarray | None = None, reranker=None, rerank_k: int | None = None,
                  rerank_alpha: float = 0.0, candidates: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores (n,), item ids (n,)) for one query or a group of queries; see the module docstring.
    ``pipeline`` is a :class:`~xmr.rescore.RescorePipeline` whose bank columns are ``bank_ids``."""
    from ..multiquery import multi_query_search

    texts = [str(t) for t in texts]
    if not texts or any(not t.strip() for t in texts):
        raise ConfigError("empty text query")
    pool = max(int(candidates or max(100, k)), k, int(rerank_k or 0))
    q = encoder.encode_text(texts)
    if len(texts) == 1:
        scores, ids = store.search(q, pool)
        scores, ids = scores[0], ids[0]
    else:
        scores, ids = multi_query_search(store, q, pool, fuse)
    keep = ids >= 0
    scores, ids = np.asarray(scores, np.float64)[keep], np.asarray(ids)[keep]
    if pipeline is not None and len(ids):
        if pipeline.bank is not None:
            cols = np.searchsorted(bank_ids, ids)
            if (cols >= len(bank_ids)).any() or (bank_ids[np.minimum(cols, len(bank_ids) - 1)] != ids).any():
                raise ConfigError("the querybank was built for another state of the index; build it again")
        else:
            cols = np.arange(len(ids))
        scores = pipeline.topk(scores[None], cols[None])[0]
        order = np.lexsort((ids, -scores))
        scores, ids = scores[order], ids[order]
    if reranker is not None and len(ids):
        from ..rerank import rerank_candidates

        kk = min(int(rerank_k or k), len(ids))
        recs = store.get_items(ids[:kk].tolist())
        paths = [recs[int(i)].path for i in ids[:kk]]
        pairs = np.array([(t, j) for j in range(kk) for t in range(len(texts))])
        cross = reranker.score(texts, paths, pairs).reshape(kk, len(texts)).mean(axis=1)  # mean over the queries
        top_s, top_i = rerank_candidates(scores[None, :kk], ids[None, :kk], cross[None], rerank_alpha)
        scores = np.concatenate([top_s[0], scores[kk:]])  # the rest keeps its order below the re-ranked ones
        ids = np.concatenate([top_i[0], ids[kk:]])
    return scores[:k], ids[:k]
