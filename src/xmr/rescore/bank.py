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


class GalleryBlockBank(QueryBank):
    """A querybank whose (B, G) scores ``T @ V.T`` are computed one block of gallery COLUMNS at a time (``T`` (B, d)
    bank embeddings in memory, ``V`` streamed): for an index too large to hold, peak extra memory is about
    ``B x cols x 12`` bytes plus one block of item vectors, never G x d. The statistics equal :class:`QueryBank`'s
    (per-column log-sum-exp and top-k means are complete within a block; each bank row's top-k for the activation set
    is merged across blocks, ties to the lower column as in :meth:`QueryBank.activation`).

    ``blocks``: ``() -> iterator of (g_i, d) float arrays``, in column order, re-iterable, ``sum(g_i) == num_items``.
    After a pass, ``row_top[k]`` holds each bank row's top-k ``(scores (B, k), columns (B, k))`` (what an incremental
    update of the activation set needs, :mod:`xmr.retrieval.querybank`).
    """

    def __init__(self, text_emb, blocks, num_items: int, info: dict | None = None, cols: int | None = None):
        t = np.ascontiguousarray(text_emb, dtype=np.float32)
        if t.ndim != 2:
            raise ConfigError(f"bank embeddings must be (B, d), got {t.shape}")
        super().__init__(None, t.shape[0], num_items, {"source": "embeddings", **(info or {})})
        self._t, self._blocks, self._ncols = t, blocks, cols
        self.row_top: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _pass(self, todo: list[Request]) -> dict[Request, np.ndarray]:
        out, self.row_top = block_stats(self._t, self._blocks(), todo, self.num_items, self._ncols)
        return out


def block_stats(t: np.ndarray, blocks, todo: Sequence[Request], num_items: int, cols: int | None = None
                ) -> tuple[dict[Request, np.ndarray], dict[int, tuple[np.ndarray, np.ndarray]]]:
    """One pass of :class:`GalleryBlockBank`: ``t`` (B, d) against the gallery ``blocks`` (an iterable of (g_i, d)
    arrays in column order). Returns the requested statistics (``active``: the union of every row's top-k) and each
    row's top-k ``(scores, columns)`` per k."""
    t = np.ascontiguousarray(t, dtype=np.float32)
    b = t.shape[0]
    step = cols if cols is not None else max(1, DEFAULT_CHUNK_ELEMENTS // max(1, b))
    out: dict[Request, np.ndarray] = {r: np.zeros(num_items) for r in todo if r[0] in ("lse", "topk_mean")}
    ks = sorted({int(r[1]) for r in todo if r[0] == "active"})
    top = {k: (np.full((b, 0), -np.inf, np.float32), np.zeros((b, 0), np.int64)) for k in ks}  # per row
    g0 = 0
    for block in blocks:
        v = np.asarray(block, np.float32)
        if v.ndim != 2 or v.shape[1] != t.shape[1]:
            raise ConfigError(f"gallery block has shape {v.shape}, expected (n, {t.shape[1]})")
        for a in range(0, len(v), step):
            c0 = g0 + a
            s = t @ np.ascontiguousarray(v[a : a + step].T)  # (B, n) float32
            n = s.shape[1]
            s64 = s.astype(np.float64)
            for r in todo:
                if r[0] == "lse":
                    x = s64 * r[1]
                    m = x.max(axis=0)
                    out[r][c0 : c0 + n] = m + np.log(np.exp(x - m).sum(axis=0))
                elif r[0] == "topk_mean":
                    k = int(r[1])
                    out[r][c0 : c0 + n] = -np.partition(-s64, k - 1, axis=0)[:k].mean(axis=0)
            for k in ks:
                idx = _row_topk(s, min(k, n))  # (B, kk) block columns, ties to the lower one
                top[k] = merge_row_top(top[k], (np.take_along_axis(s, idx, 1), idx + c0), k)
        g0 += len(v)
    if g0 != num_items:
        raise ConfigError(f"the gallery yielded {g0} items, expected {num_items}")
    for k in ks:
        mask = np.zeros(num_items, dtype=bool)
        mask[top[k][1].ravel()] = True
        out[("active", k)] = mask
    return out, top


def merge_row_top(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], k: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Each row's top-``k`` of two candidate sets ``(scores (B, ka), columns (B, ka))``: by decreasing score, ties to
    the lower column."""
    v, c = np.concatenate([a[0], b[0]], 1), np.concatenate([a[1], b[1]], 1)
    order = np.lexsort((c, -v.astype(np.float64)), axis=1)[:, :k]
    return np.take_along_axis(v, order, 1), np.take_along_axis(c, order, 1)


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
    * A bundled querybank (``xmr/assets/querybanks/NAME.txt``), by ``NAME`` or by the path of that file.
    * Anything else that is an existing file is read as UTF-8 text, one query per non-empty line.

    Returns ``(texts, info)`` with ``info = {"source", "kind": "dataset"|"bundled"|"file", "split"?, "bundled"?,
    "size"}``.
    """
    from ..data import load_dataset, parse_dataset_spec
    from ..paths import bundled_querybank

    bundled = bundled_querybank(source)
    if bundled is not None:  # a bundled bank, by name or by the path of its file: the same bank either way
        name, path = bundled
        with open(path, encoding="utf-8") as f:
            texts = [ln.strip() for ln in f if ln.strip()]
        return texts, {"source": name, "kind": "bundled", "bundled": name, "file": f"xmr/assets/querybanks/{path.name}",
                       "size": len(texts)}
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


def encode_bank_texts(encoder, texts: Sequence[str], info: dict, show_progress: bool | None = None
                      ) -> tuple[np.ndarray, dict]:
    """A querybank's text embeddings through ``encoder.encode_bank_texts`` (:class:`xmr.encoders.Encoder`); an
    object that only has ``encode_text`` (a plugin's or a test's duck-typed encoder) encodes them."""
    own = getattr(encoder, "encode_bank_texts", None)
    if own is not None:
        return own(list(texts), info, show_progress=show_progress)
    return encoder.encode_text(list(texts), show_progress=show_progress), {"embeddings": "encoded"}


def bank_embedding_key(encoder, info: dict) -> str:
    own = getattr(encoder, "bank_embedding_key", None)
    return own(info) if own is not None else "encode_text"


def querybank_from_texts(encoder, texts: Sequence[str], gallery_emb: np.ndarray, *, info: dict | None = None,
                         chunk: int | None = None, show_progress: bool | None = None) -> QueryBank:
    """Encode ``texts`` with ``encoder`` (:meth:`~xmr.encoders.base.Encoder.encode_bank_texts`: a bundled bank's
    shipped embeddings where the model has them) and build a :class:`QueryBank` against ``gallery_emb`` (G, d).
    Cost: encoding B texts, then a B x G matrix product done ``chunk`` rows at a time."""
    emb, how = encode_bank_texts(encoder, list(texts), dict(info or {}), show_progress=show_progress)
    return QueryBank.from_embeddings(emb, gallery_emb, chunk=chunk, info={**(info or {}), **how})


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
