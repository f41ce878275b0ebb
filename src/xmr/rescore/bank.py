"""Querybanks: the column statistics re-scorers need, computed in one streaming pass.

A querybank is a set of (training) text queries scored against the *test gallery*: a (B, G) similarity
matrix. QB-Norm needs, per gallery column, ``logsumexp_b(beta * S[b, g])`` and the activation set (the columns
that appear in the top-k of any bank row); querybank DSL needs the same log-sum-exp at ``1 / temperature``; CSLS
needs each column's mean of its top-k bank scores. :class:`QueryBank` computes all requested statistics in one
pass over row chunks of ``S``, so the (B, G) matrix is never held whole:

* ``QueryBank.from_sims(S)``: ``S`` is given (a numpy array or memmap; sliced, never copied whole or modified);
* ``QueryBank.from_embeddings(T, V, chunk=...)``: ``S = T @ V.T`` is computed ``chunk`` rows at a time (``T`` may
  be a memmap); peak extra memory is about ``chunk x G x 12`` bytes (float32 chunk + float64 working copy).

Statistics are kept in float64 and cached per parameter, so asking again for the same ``beta`` is free.
"""
from __future__ import annotations

import logging
import os
from typing import Iterator, Sequence

import numpy as np

from ..errors import ConfigError

log = logging.getLogger(__name__)

#: default chunk: about this many scores per row chunk (float64 working copy -> 64 MiB)
DEFAULT_CHUNK_ELEMENTS = 1 << 23

#: a statistic request: ("lse", scale) | ("active", k) | ("topk_mean", k)
Request = tuple


class QueryBank:
    """Column statistics of a querybank against one gallery. Build with :meth:`from_sims` / :meth:`from_embeddings`
    (or :func:`querybank_from_source` for texts); then :meth:`logsumexp`, :meth:`activation`, :meth:`topk_mean`.

    ``info`` is a JSON-able description recorded in results (``source``, ``size``, ...)."""

    def __init__(self, chunks, num_queries: int, num_items: int, info: dict | None = None):
        self._chunks = chunks  # () -> iterator of float32 (rows, G) arrays, re-iterable
        self.num_queries = int(num_queries)
        self.num_items = int(num_items)
        self.info = {"size": self.num_queries, **(info or {})}
        self._cache: dict[Request, np.ndarray] = {}
        if self.num_queries < 1 or self.num_items < 1:
            raise ConfigError(f"querybank is empty ({self.num_queries} queries x {self.num_items} items)")

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_sims(cls, bank_sims, *, chunk: int | None = None, info: dict | None = None) -> "QueryBank":
        """A bank from its (B, G) similarity matrix (read in row slices; never modified)."""
        s = np.asarray(bank_sims)
        if s.ndim != 2 or s.dtype.kind not in "fiu":
            raise ConfigError(f"bank_sims must be a 2-D (num_bank_queries, num_items) array, got shape {s.shape}")
        rows = _chunk_rows(chunk, s.shape[1])

        def chunks() -> Iterator[np.ndarray]:
            for a in range(0, s.shape[0], rows):
                yield np.asarray(s[a : a + rows])

        return cls(chunks, s.shape[0], s.shape[1], {"source": "sims", **(info or {})})

    @classmethod
    def from_embeddings(cls, text_emb, gallery_emb, *, chunk: int | None = None, info: dict | None = None,
                        dtype=np.float32) -> "QueryBank":
        """A bank from query embeddings (B, d) (array or memmap) and gallery embeddings (G, d):
        ``S = text_emb @ gallery_emb.T`` is computed ``chunk`` rows at a time in ``dtype`` (float32 by default;
        float64 makes the result independent of how BLAS splits the product, for exactness checks)."""
        t = text_emb
        g = np.ascontiguousarray(gallery_emb, dtype=dtype)
        if getattr(t, "ndim", None) != 2 or g.ndim != 2 or t.shape[1] != g.shape[1]:
            raise ConfigError(
                f"bank embeddings must be (B, d) and gallery (G, d) with the same d; got "
                f"{getattr(t, 'shape', None)} and {g.shape}"
            )
        rows = _chunk_rows(chunk, g.shape[0])
        gt = np.ascontiguousarray(g.T)

        def chunks() -> Iterator[np.ndarray]:
            for a in range(0, t.shape[0], rows):
                yield np.asarray(t[a : a + rows], dtype=dtype) @ gt

        return cls(chunks, t.shape[0], g.shape[0], {"source": "embeddings", **(info or {})})

    # ---- statistics ---------------------------------------------------------------------------------------
    def logsumexp(self, scale: float) -> np.ndarray:
        """(G,) float64: ``log sum_b exp(scale * S[b, g])`` for each gallery column g."""
        return self.compute([("lse", float(scale))])[("lse", float(scale))]

    def activation(self, k: int = 1) -> np.ndarray:
        """(G,) bool: column g is in the top-``k`` of at least one bank row (QB-Norm's activation set).
        Ties inside a row's top-k are broken towards the lower column index."""
        return self.compute([("active", int(k))])[("active", int(k))]

    def topk_mean(self, k: int) -> np.ndarray:
        """(G,) float64: mean of the ``k`` highest bank scores of each column (CSLS's r_item)."""
        return self.compute([("topk_mean", int(k))])[("topk_mean", int(k))]

    def compute(self, requests: Sequence[Request]) -> dict[Request, np.ndarray]:
        """Compute every uncached statistic in ``requests`` in a single pass over the bank; returns all of them."""
        requests = [_check_request(r, self.num_queries, self.num_items) for r in requests]
        todo = [r for r in dict.fromkeys(requests) if r not in self._cache]
        if todo:
            self._cache.update(self._pass(todo))
        return {r: self._cache[r] for r in requests}

    def _pass(self, todo: list[Request]) -> dict[Request, np.ndarray]:
        g = self.num_items
        lse = {r[1]: (np.full(g, -np.inf), np.zeros(g)) for r in todo if r[0] == "lse"}  # scale -> (max, sum)
        active = {r[1]: np.zeros(g, dtype=bool) for r in todo if r[0] == "active"}
        best = {r[1]: np.full((0, g), -np.inf) for r in todo if r[0] == "topk_mean"}  # k -> (<=k, G) top scores
        seen = 0
        for c in self._chunks():
            c = np.asarray(c)
            if c.ndim != 2 or c.shape[1] != g:
                raise ConfigError(f"querybank chunk has shape {c.shape}, expected (rows, {g})")
            seen += c.shape[0]
            c64 = c.astype(np.float64)
            for scale, (m, acc) in lse.items():
                x = c64 * scale  # (rows, G)
                new_m = np.maximum(m, x.max(axis=0))
                acc *= np.exp(m - new_m)  # rescale the running sum to the new maximum (exp(-inf) = 0 at start)
                acc += np.exp(x - new_m).sum(axis=0)
                m[...] = new_m
            for k, mask in active.items():
                mask[_row_topk(c, k).ravel()] = True
            for k, b in best.items():
                cand = np.concatenate([b, c64], axis=0)
                kk = min(k, cand.shape[0])
                best[k] = -np.partition(-cand, kk - 1, axis=0)[:kk]
        if seen != self.num_queries:
            raise ConfigError(f"querybank yielded {seen} rows, expected {self.num_queries}")
        out: dict[Request, np.ndarray] = {}
        for scale, (m, acc) in lse.items():
            out[("lse", scale)] = m + np.log(acc)
        for k, mask in active.items():
            out[("active", k)] = mask
        for k, b in best.items():
            out[("topk_mean", k)] = b.mean(axis=0)
        return out

    def describe(self) -> dict:
        """JSON-able record: ``source``, ``size`` (number of bank queries) and whatever the builder added."""
        return dict(self.info)

    def __repr__(self) -> str:
        return f"QueryBank({self.num_queries} queries x {self.num_items} items, {self.info.get('source')})"


def _chunk_rows(chunk: int | None, num_items: int) -> int:
    if chunk is None:
        return max(1, DEFAULT_CHUNK_ELEMENTS // max(1, num_items))
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ConfigError(f"chunk must be a positive number of rows, got {chunk!r}")
    return int(chunk)


def _check_request(r: Request, nq: int, ni: int) -> Request:
    kind, p = r
    if kind == "lse":
        if not np.isfinite(p) or p <= 0:
            raise ConfigError(f"softmax scale must be a positive finite number, got {p!r}")
        return ("lse", float(p))
    if kind in ("active", "topk_mean"):
        if isinstance(p, bool) or int(p) != p or p < 1:
            raise ConfigError(f"k must be a positive integer, got {p!r}")
        if kind == "active" and p > ni:
            raise ConfigError(f"k={p} is larger than the gallery ({ni} items)")
        if kind == "topk_mean" and p > nq:
            raise ConfigError(f"k={p} is larger than the querybank ({nq} queries)")
        return (kind, int(p))
    raise ConfigError(f"unknown querybank statistic {kind!r}")


def _row_topk(c: np.ndarray, k: int) -> np.ndarray:
    """(rows, k) column indices of each row's k highest scores (ties: lower index first)."""
    if k == 1:
        return c.argmax(axis=1)[:, None]
    return np.argsort(-c, axis=1, kind="stable")[:, :k]


# ------------------------------------------------------------------------------------------ text sources


def read_bank_texts(source: str) -> tuple[list[str], dict]:
    """Querybank texts from ``source``: a dataset spec (its training captions) or a text file (one query a line).

    * A dataset spec (``coco:DIR``, ``karpathy:FILE``, ``x.jsonl``, ...) gives the captions of its training split:
      the split named in the spec (``coco:DIR:train2017``), or else every split whose name contains ``train``
      (ConfigError if there is none: name the split).
    * Anything else that is an existing file is read as UTF-8 text, one query per non-empty line.

    Returns ``(texts, info)`` with ``info = {"source", "kind": "dataset"|"file", "split"?, "size"}``.
    """
    from ..data import load_dataset, parse_dataset_spec

    try:
        parse_dataset_spec(source)
        is_dataset = True
    except ConfigError:
        is_dataset = False
    if not is_dataset:
        if not os.path.isfile(source):
            raise ConfigError(
                f"querybank {source!r} is neither a dataset spec (e.g. coco:DIR:train2017) nor a text file "
                "(one query per line)"
            )
        with open(source, encoding="utf-8") as f:
            texts = [ln.strip() for ln in f if ln.strip()]
        if not texts:
            raise ConfigError(f"querybank file {source} has no non-empty lines")
        return texts, {"source": os.path.abspath(source), "kind": "file", "size": len(texts)}
    ds = load_dataset(source)
    split = None
    if "split=" not in ds.spec:
        train = [s for s in ds.splits if "train" in s.lower()]
        if not train:
            raise ConfigError(
                f"querybank {source!r}: no training split among {ds.splits or ['(none)']}; name the split "
                "in the spec (e.g. coco:DIR:train2017) — a bank must not contain the test queries"
            )
        split = "+".join(train)
        ds = load_dataset(source, split=split)
    texts = ds.texts
    return texts, {"source": ds.spec, "kind": "dataset", "split": split or _spec_split(ds.spec), "size": len(texts)}


def _spec_split(spec: str) -> str | None:
    q = spec.partition("?")[2]
    for part in q.split("&"):
        if part.startswith("split="):
            return part[6:]
    return None


def querybank_from_texts(encoder, texts: Sequence[str], gallery_emb: np.ndarray, *, info: dict | None = None,
                         chunk: int | None = None, show_progress: bool | None = None) -> QueryBank:
    """Encode ``texts`` with ``encoder`` and build a :class:`QueryBank` against ``gallery_emb`` (G, d).
    Cost: encoding B texts, then a B x G matrix product done ``chunk`` rows at a time."""
    emb = encoder.encode_text(list(texts), show_progress=show_progress)
    return QueryBank.from_embeddings(emb, gallery_emb, chunk=chunk, info=info)


def querybank_from_source(source: str, encoder, gallery_emb: np.ndarray, *, test_texts: Sequence[str] = (),
                          show_progress: bool | None = None) -> QueryBank:
    """:func:`read_bank_texts` + :func:`querybank_from_texts`. If ``test_texts`` are given, the number of bank
    queries that are exactly a test query is recorded as ``overlap_with_test`` (and warned about)."""
    texts, info = read_bank_texts(source)
    if test_texts:
        test = set(test_texts)
        overlap = sum(t in test for t in texts)
        info["overlap_with_test"] = overlap
        if overlap:
            log.warning("querybank %s: %d of its %d queries are also test queries", source, overlap, len(texts))
    return querybank_from_texts(encoder, texts, gallery_emb, info=info, show_progress=show_progress)
