"""Fusion of several query embeddings into one score per item, and the evaluation grouping rule."""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..registries import FUSIONS as FUSIONS  # name -> fuse(q (G, N, d), mask (G, N), gallery (I, d), model) -> (G, I)
from ..spec import parse_spec


def _masked_mean(q: np.ndarray, mask: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
    w = mask.astype(np.float64) if w is None else w * mask
    w = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    return np.einsum("gn,gnd->gd", w, q.astype(np.float64))


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


@FUSIONS.register("mean-sim", help="mean of the queries' similarities")
def _mean_sim(q, mask, gallery, model=None):
    return _masked_mean(q, mask) @ gallery.T.astype(np.float64)  # mean of dot products = dot with the mean


@FUSIONS.register("mean-emb", help="similarity to the L2-normalised mean query embedding")
def _mean_emb(q, mask, gallery, model=None):
    return _normalize(_masked_mean(q, mask)) @ gallery.T.astype(np.float64)


@FUSIONS.register("max", help="best similarity over the queries")
def _max(q, mask, gallery, model=None):
    out = np.full((q.shape[0], gallery.shape[0]), -np.inf)
    for j in range(q.shape[1]):  # (G, I) per query position: never a (G, N, I) tensor
        s = q[:, j].astype(np.float64) @ gallery.T.astype(np.float64)
        out = np.where(mask[:, j : j + 1], np.maximum(out, s), out)
    return out


@FUSIONS.register("learned", help="learned attention weights (learned:DIR, see train_query_weighting)")
def _learned(q, mask, gallery, model=None):
    if model is None:
        raise ConfigError("fusion 'learned' needs a trained model: learned:DIR "
                          "(see xmr.multiquery.train_query_weighting)")
    return model.fuse(q, mask) @ gallery.T.astype(np.float64)


def parse_fuse_spec(spec: str):
    """``"mean-sim"`` -> ``("mean-sim", None)``; ``"learned:DIR"`` -> ``("learned", QueryWeighting)``."""
    s = parse_spec(str(spec), "multi-query fusion", hint=f"one of {', '.join(FUSIONS.names())}")
    FUSIONS.get(s.name)  # raises with the list of names
    if s.name == "learned":
        if not s.arg:
            raise ConfigError("give the trained model's folder: --fuse learned:DIR")
        from .learned import QueryWeighting

        return s.name, QueryWeighting.load(s.arg)
    if s.arg is not None:
        raise ConfigError(f"fusion {s.name!r} takes no argument (got {spec!r})")
    return s.name, None


def fuse_sims(q_emb, gallery_emb, fuse: str = "mean-sim", mask=None, model=None) -> np.ndarray:
    """Fused (G, I) float64 scores of query groups ``q_emb`` (G, N, d) against ``gallery_emb`` (I, d).

    ``mask`` (G, N) marks real queries (groups of different sizes are padded); default: all real. ``fuse`` is a
    :data:`FUSIONS` name or a ``learned:DIR`` spec (``model`` may be passed instead of the DIR)."""
    q = np.asarray(q_emb)
    g = np.asarray(gallery_emb)
    if q.ndim == 2:
        q = q[None]
    if q.ndim != 3 or g.ndim != 2 or q.shape[2] != g.shape[1]:
        raise ConfigError(f"query groups must be (G, N, d) and gallery (I, d); got {q.shape} and {g.shape}")
    mask = np.ones(q.shape[:2], dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if mask.shape != q.shape[:2] or not mask.any(axis=1).all():
        raise ConfigError("mask must be (G, N) with at least one real query per group")
    name, loaded = parse_fuse_spec(fuse) if (":" in str(fuse) or model is None) else (fuse, None)
    return FUSIONS.get(name)(q, mask, g, model if model is not None else loaded)


def group_captions(text_offsets, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation groups of ``n`` captions per multi-query (see the package docstring for the rule).

    ``text_offsets`` (I + 1,) as :attr:`RetrievalDataset.text_offsets`. Returns ``groups`` (G, n) int64 text
    indices and ``group_item`` (G,) int64 gallery index of each group."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"queries per target must be a positive integer, got {n!r}")
    off = np.asarray(text_offsets, dtype=np.int64)
    groups, items = [], []
    for i in range(len(off) - 1):
        for a in range(off[i], off[i + 1] - n + 1, n):
            groups.append(np.arange(a, a + n))
            items.append(i)
    if not groups:
        raise ConfigError(f"no item has {n} captions: nothing to evaluate with {n} queries per target")
    return np.stack(groups).astype(np.int64), np.asarray(items, dtype=np.int64)


def multi_query_search(store, q_emb: np.ndarray, k: int, fuse: str = "mean-sim", model=None):
    """Top-``k`` (scores (k,), ids (k,)) of an index for one group of queries ``q_emb`` (N, d).

    ``mean-sim``, ``mean-emb`` and ``learned`` search once with the fused embedding. ``max`` searches each
    query's top-k and re-scores the union exactly with the stored vectors: an item in the fused top-k is in the
    top-k of the query that attains its maximum, so the union always contains the exact answer."""
    q = np.asarray(q_emb, dtype=np.float32)
    name, loaded = parse_fuse_spec(fuse) if model is None else (fuse, None)
    model = model if model is not None else loaded
    mask = np.ones((1, len(q)), dtype=bool)
    if name == "max":
        _, ids = store.search(q, k)
        cand = np.unique(ids[ids >= 0])
        if cand.size == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        vecs = store.item_vectors(cand)  # exact stored vectors, whatever the index's vector backend
        s = _max(q[None], mask, vecs)[0]
        order = np.lexsort((cand, -s))[:k]
        return s[order].astype(np.float32), cand[order]
    if name == "learned":
        v = model.fuse(q[None], mask)
    elif name == "mean-sim":
        v = _masked_mean(q[None], mask)
    else:
        v = _normalize(_masked_mean(q[None], mask))
    scores, ids = store.search(v.astype(np.float32), k)
    return scores[0], ids[0]
