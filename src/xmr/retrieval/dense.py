"""The pipeline's stages in dense form, for evaluation: every query scored against every gallery item.

``xmr eval`` needs full rankings (R@50, median and mean rank), so instead of candidate lists it runs the same
stages on a (num_queries, num_items) matrix, in the same order as :class:`~xmr.retrieval.pipeline.Pipeline`:

1. scoring: dot products of unit vectors (:class:`DenseGallery`), or the head's exhaustive similarity for heads that
   score (query, frames) themselves (:class:`HeadGallery`: X-Pool, prototypes) -- the ``head`` stage's dense form;
2. multi-query fusion of caption groups (:func:`fused_sims`, the query stage);
3. re-scoring (QB-Norm, DSL, CSLS; :mod:`xmr.rescore`), either dense or, with ``rescore_topk=K``, exactly as a
   top-``K`` search would (each text's K best candidates re-scored and lifted above the rest);
4. cross-encoder re-ranking of each text's top ``rerank_k`` (text->image only).

Querybanks are scored against the same gallery by the same scorer (so a bank over an X-Pool gallery uses head
similarities). Metrics are computed by :mod:`xmr.eval` from the matrices returned here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError


class DenseGallery:
    """Unit gallery vectors (G, d): ``sims(q) = q @ V.T``."""

    def __init__(self, vectors: np.ndarray):
        self.vectors = vectors

    def __len__(self) -> int:
        return len(self.vectors)

    def sims(self, txt: np.ndarray) -> np.ndarray:
        return txt @ self.vectors.T


class HeadGallery:
    """Frame features (N_v, T, D) of a video gallery scored by a head that cannot give one vector per video (X-Pool,
    prototypes): :meth:`sims` is the exhaustive (N_t, N_v) matrix, in text x video chunks (bounded memory).

    ``vectors`` (optional, (N_v, D)): the head's query-independent candidate vectors, what an index stores for a
    first stage (``times`` (N_v, T): the frames' sample times), so a top-K evaluation can search like an index."""

    def __init__(self, head, feats: np.ndarray, vectors: np.ndarray | None = None, times: np.ndarray | None = None):
        self.head, self.feats, self.vectors, self.times = head, feats, vectors, times

    def __len__(self) -> int:
        return len(self.feats)

    def sims(self, txt: np.ndarray, text_chunk: int = 256, video_chunk: int = 256) -> np.ndarray:
        import torch

        head = self.head
        dev = head.logit_scale.device
        out = np.zeros((len(txt), len(self.feats)), np.float32)
        with torch.no_grad():
            for v0 in range(0, len(self.feats), video_chunk):
                f = torch.from_numpy(np.ascontiguousarray(self.feats[v0: v0 + video_chunk])).to(dev)
                for t0 in range(0, len(txt), text_chunk):
                    t = torch.from_numpy(np.ascontiguousarray(txt[t0: t0 + text_chunk], dtype=np.float32)).to(dev)
                    out[t0: t0 + len(t), v0: v0 + len(f)] = head.similarity(t, f).cpu().numpy()
        return out


def fused_sims(gallery, q_groups: np.ndarray, fuse: str = "mean-sim") -> np.ndarray:
    """(G_q, I) fused scores of query groups (G_q, N, d). Dense galleries use :func:`xmr.multiquery.fuse_sims`
    (exact float64); a :class:`HeadGallery` applies the same rule to head similarities: ``mean-sim`` / ``max`` over
    the group's rows, ``mean-emb`` / ``learned`` on the fused embedding."""
    from ..multiquery import fuse_sims, parse_fuse_spec

    if isinstance(gallery, DenseGallery):
        return fuse_sims(q_groups, gallery.vectors, fuse)
    name, model = parse_fuse_spec(fuse)
    g, n, d = q_groups.shape
    if name in ("mean-sim", "max"):
        rows = gallery.sims(q_groups.reshape(g * n, d)).reshape(g, n, -1).astype(np.float64)
        return rows.mean(axis=1) if name == "mean-sim" else rows.max(axis=1)
    if name == "mean-emb":
        v = q_groups.astype(np.float64).mean(axis=1)
        v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    else:
        v = model.fuse(q_groups, np.ones((g, n), bool))
    return gallery.sims(np.asarray(v, np.float32)).astype(np.float64)


def resolve_rescore(encoder, rescore, rescore_params=None, bank=None):
    """What an evaluation re-scores with: ``(rescore, rescore_params, bank, default)``.

    ``rescore=None``: the model's own re-scoring (``Encoder.rescore_default``, applied to text->item only, as search
    applies it to text queries; ``default`` is that :class:`~xmr.encoders.base.RescoreDefault`), or none for a model
    that declares none; ``"none"`` (or an empty list): no re-scoring; anything else: as given (``default`` None)."""
    from .stages.rescore import model_rescore_default

    off = (isinstance(rescore, str) and rescore.strip().lower() == "none") or (
        isinstance(rescore, (list, tuple)) and not rescore)
    if off or rescore is None:
        if bank is not None:
            raise ConfigError("a querybank (bank=) needs re-scoring: name the re-scorers (e.g. rescore='qbnorm')")
        if rescore_params:
            raise ConfigError("re-scoring parameters need the re-scorers named (e.g. rescore='qbnorm')")
        rec = None if off else model_rescore_default(encoder)
        if rec is None:
            return None, None, None, None
        return list(rec.names), dict(rec.params), rec.bank, rec
    return rescore, rescore_params, bank, None


def gallery_bank(source, encoder, gallery, *, test_texts=(), show_progress=None):
    """A :class:`~xmr.rescore.QueryBank` of ``source`` (dataset spec / text file, or a QueryBank as is) scored
    against ``gallery`` by its own scorer."""
    from ..rescore import QueryBank, querybank_from_source, read_bank_texts

    if source is None or isinstance(source, QueryBank):
        return source
    if not isinstance(source, str):
        raise ConfigError(f"bank must be a source string or a QueryBank, got {type(source).__name__}")
    if isinstance(gallery, DenseGallery):
        return querybank_from_source(source, encoder, gallery.vectors, test_texts=test_texts,
                                     show_progress=show_progress)
    from ..rescore.bank import encode_bank_texts

    texts, info = read_bank_texts(source)
    emb, how = encode_bank_texts(encoder, list(texts), info, show_progress=show_progress)
    info = {**info, **how}
    rows = max(1, (1 << 22) // max(1, len(gallery)))

    def chunks():
        for a in range(0, len(emb), rows):
            yield gallery.sims(emb[a: a + rows])

    return QueryBank(chunks, len(emb), len(gallery), {**info, "scored_by": "video head"})


def memory_reader(gallery, media, model_spec: str):
    """The gallery as an :class:`~xmr.retrieval.memory.MemoryReader` (what ``xmr eval --candidates`` searches)."""
    from ..media import media_type_of
    from .memory import MemoryReader

    types = [media_type_of(str(m)) or "image" for m in media]
    if isinstance(gallery, DenseGallery):
        return MemoryReader(gallery.vectors, media, types, model_spec=model_spec)
    if gallery.vectors is None:
        raise ConfigError("this head gallery has no candidate vectors to search (encode it with candidates)")
    frames = [(gallery.times[i], gallery.feats[i]) for i in range(len(gallery))]
    return MemoryReader(gallery.vectors, media, types, model_spec=model_spec, frames=frames)


def run_topk(reader, pipeline, queries, candidates: int, base: np.ndarray, show_progress=None
             ) -> tuple[np.ndarray, dict[str, float]]:
    """Text->item scores as the search pipeline ranks them: each query's top ``candidates`` results from
    ``pipeline.search_embedded`` (first stage over ``reader``, then every stage), in the pipeline's order, lifted
    above the query's other items, which keep their ``base`` order. ``queries``: one QueryEmbedding per row of
    ``base`` (Q, G); reader ids are gallery index + 1. Returns a new (Q, G) float64 matrix and the seconds spent in
    each stage over all queries."""
    from tqdm.auto import tqdm

    out = np.array(base, dtype=np.float64, copy=True)
    top = out.max(axis=1) if out.size else np.zeros(len(out))
    seconds: dict[str, float] = {}
    for q, emb in enumerate(tqdm(queries, desc="search (top-K)", unit="query", disable=show_progress is False)):
        found = pipeline.search_embedded(reader, emb, candidates, None)
        for pos, r in enumerate(found.results):  # by position: re-ranked scores need not be monotonic
            out[q, r.id - 1] = top[q] + 1.0 + (len(found.results) - pos)
        for name, sec in found.seconds.items():
            seconds[name] = seconds.get(name, 0.0) + sec
    return out, seconds


@dataclass
class DenseScores:
    """What :func:`run_dense` returns: the matrices to rank and the record of each stage."""

    base: np.ndarray  # (Q, I) after scoring and fusion, before re-scoring: the "before" metrics
    t2i: np.ndarray  # ranked along rows
    i2t: np.ndarray  # ranked along columns
    text_to_item: np.ndarray  # (Q,) gallery index of each query's target
    allow_textless: bool = False  # multi-query: items with too few captions have no query
    t2i_before_rerank: np.ndarray | None = None
    records: dict = field(default_factory=dict)  # multi_query / rescore / rerank


def run_dense(gallery, txt: np.ndarray, text_to_item, *, encoder=None, texts=(), media=(), text_offsets=None,
              queries_per_target: int | None = None, fuse: str = "mean-sim", rescore=None,
              rescore_params: dict | None = None, bank=None, rescore_topk: int | None = None, rerank=None,
              rerank_k: int = 10, rerank_alpha: float = 0.0, candidates: int | None = None,
              show_progress=None) -> DenseScores:
    """Dense stages on ``gallery`` (:class:`DenseGallery` / :class:`HeadGallery`) for text embeddings ``txt``
    (N_t, d) of ``texts``; see the module docstring. Refuses re-ranking of a video gallery.

    ``candidates=K``: text->item rankings come from the search pipeline itself (:func:`run_topk` over
    :func:`memory_reader`): each query's top ``K`` by the first stage (for X-Pool / prototype heads: their candidate
    vectors), re-scored by the head, the re-scorers (querybank against the gallery) and the cross-encoder exactly
    as ``xmr search`` does; item->text rankings stay dense."""
    records: dict = {}
    t2i = np.asarray(text_to_item)
    allow_textless = False
    groups = None
    if queries_per_target is not None:
        from ..multiquery import group_captions

        if rerank is not None and candidates is None:
            raise ConfigError("re-ranking multi-queries runs in the search pipeline: add --candidates K (each group's "
                              "cross-encoder score is the mean over its texts, as xmr search does)")
        groups, t2i = group_captions(text_offsets, queries_per_target)
        sims = fused_sims(gallery, txt[groups], fuse)
        allow_textless = True  # items with fewer than N captions have no multi-query
        records["multi_query"] = {"queries_per_target": int(queries_per_target), "fuse": str(fuse),
                                  "num_queries": int(len(groups)), "captions_used": int(groups.size),
                                  "captions_dropped": int(len(txt) - groups.size),
                                  "items_without_query": int(len(gallery) - len(np.unique(t2i))),
                                  "grouping": "consecutive captions of an item in loader order; remainder dropped"}
    else:
        sims = gallery.sims(txt)
    out = DenseScores(sims, sims, sims, t2i, allow_textless, records=records)
    if candidates is not None:
        return _run_candidates(out, gallery, txt, groups, texts, media, encoder, fuse, rescore, rescore_params, bank,
                               rerank, rerank_k, rerank_alpha, candidates, show_progress)
    if rescore is not None:
        from ..rescore import RescorePipeline, build_pipeline

        bank = gallery_bank(bank, encoder, gallery, test_texts=texts, show_progress=show_progress)
        pipe = rescore if isinstance(rescore, RescorePipeline) else build_pipeline(rescore, rescore_params, bank)
        out.t2i = pipe.dense(sims, "t2i") if rescore_topk is None else pipe.dense_via_topk(sims, rescore_topk)
        out.i2t = pipe.dense(sims, "i2t")
        records["rescore"] = [{**r, "t2i_candidates": rescore_topk} if rescore_topk else r for r in pipe.records()]
    if rerank is not None:
        from ..rerank import create_reranker, rerank_dense

        _refuse_video_rerank(media)
        ce = create_reranker(rerank) if isinstance(rerank, str) else rerank
        out.t2i_before_rerank = out.t2i
        out.t2i, info = rerank_dense(out.t2i, texts, media, ce, k=rerank_k, alpha=rerank_alpha)
        records["rerank"] = {"cross_encoder": ce.describe(), **info, "directions": ["t2i"]}
    out.records = records
    return out


def _refuse_video_rerank(media) -> None:
    from ..media import media_type_of

    if any(media_type_of(str(m)) == "video" for m in media):
        raise ConfigError("cross-encoder re-ranking scores (text, image) pairs; this gallery holds videos")


def _run_candidates(out: DenseScores, gallery, txt, groups, texts, media, encoder, fuse, rescore, rescore_params,
                    bank, rerank, rerank_k, rerank_alpha, candidates, show_progress) -> DenseScores:
    """``run_dense(..., candidates=K)``: t2i from the search pipeline, i2t dense (see :func:`run_dense`)."""
    from ..multiquery import parse_fuse_spec
    from .pipeline import Pipeline, SearchOptions, build_stages
    from .query import Query, embed_terms

    if bank is not None and not isinstance(bank, str):
        raise ConfigError("with candidates, the querybank must be a source (dataset spec or text file): it is scored "
                          "against the gallery as an index's is")
    if rescore is not None and not isinstance(rescore, (list, tuple, str)):
        raise ConfigError("with candidates, give re-scorers by name (e.g. ['qbnorm'])")
    names = tuple(rescore.split(",")) if isinstance(rescore, str) else tuple(rescore or ())
    opts = SearchOptions(candidates=candidates, rescore=names, rescore_params=dict(rescore_params or {}), bank=bank)
    stages = build_stages(encoder, opts)
    if rerank is not None:
        from .stages import RerankStage

        _refuse_video_rerank(media)
        cross = None if isinstance(rerank, str) else rerank
        stages.append(RerankStage(rerank if isinstance(rerank, str) else rerank.spec, rerank_k, rerank_alpha,
                                  cross_encoder=cross))
    pipe = Pipeline(encoder, stages, candidates)
    if not pipe.reorders:
        raise ConfigError("candidates only apply with --rescore, --rerank or a head that re-scores (xpool, "
                          "prototypes): without them the top-K search ranks exactly like the dense evaluation")
    reader = memory_reader(gallery, media, encoder.spec)
    pipe.check(reader, None)
    _, model = parse_fuse_spec(fuse)
    rows = [np.asarray([i]) for i in range(len(txt))] if groups is None else list(groups)
    queries = []
    for g in rows:
        q = Query.texts([texts[int(j)] for j in g], fuse=fuse) if len(g) > 1 else Query.text(texts[int(g[0])])
        queries.append(embed_terms(q, txt[g], model=model))
    out.t2i, seconds = run_topk(reader, pipe, queries, candidates, out.base, show_progress)
    records = out.records = {**out.records}
    records["search"] = {"candidates": int(candidates), "stages": pipe.describe(), "directions": ["t2i"],
                         "seconds": round(sum(seconds.values()), 3),
                         "stage_seconds": {k: round(v, 3) for k, v in seconds.items()}}
    if names:  # i2t: the same re-scorers in their dense form
        from ..rescore import build_pipeline

        dense = build_pipeline(list(names), rescore_params, gallery_bank(bank, encoder, gallery, test_texts=texts,
                                                                           show_progress=show_progress))
        out.i2t = dense.dense(out.base, "i2t")
        records["rescore"] = [{**r, "t2i_candidates": int(candidates), "t2i_by": "search pipeline"}
                              for r in dense.records()]
    if rerank is not None:
        st = stages[-1]
        records["rerank"] = {"cross_encoder": st.cross.describe(), "k": int(st.k), "alpha": st.alpha,
                             "pairs_scored": int(min(st.k, candidates, len(gallery)) * len(queries)),
                             "cross_s": round(seconds.get("rerank", 0.0), 3), "directions": ["t2i"],
                             "by": "search pipeline",
                             "gain_vs": "dual encoder (the pipeline runs every stage in one pass)"}
        out.t2i_before_rerank = out.base
    return out


__all__ = ["DenseGallery", "HeadGallery", "DenseScores", "fused_sims", "gallery_bank", "memory_reader", "resolve_rescore", "run_dense",
           "run_topk"]
