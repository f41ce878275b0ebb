"""Moment search (``xmr search --type moment``): moments ranked across the corpus, several per video allowed.

The index's sliding-window segments are the clips (their vectors and ``start`` / ``end`` times). Steps:

1. the query is encoded with the index's encoder; the ``depth`` best segments of the corpus (exact, the segment
   backend) name the candidate videos;
2. every candidate video's segments are scored, then localised:

   * default, ``localizer="proposals"`` (no training): span proposals over the video's segment scores, boundary
     refinement and temporal NMS (:mod:`xmr.localize.proposals`); a moment's score is the mean cosine of the
     segments inside it, so moments of different videos compare;
   * ``model=`` a :class:`~xmr.localize.squidnet.SQuiDNet` (``--moment-model DIR``) trained on this encoder's
     space (its ``dim``): the best spans of all candidate videos by ``log p(video) + log p_start + log p_end``
     (:func:`xmr.localize.corpus.corpus_top_spans`);

3. the best ``k`` moments, best first; each :class:`SearchResult` is a video with ``start`` / ``end``.

An index without videos (no segments) is refused with an error saying what to do.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError, XmrIndexError
from .first_stage import check_k
from .query import Query, encode_query
from .result import SearchOutcome, SearchResult, rank

DEFAULT_DEPTH = 200
MOMENTS_PER_VIDEO = 3


def _candidates(reader, emb, depth: int) -> list[int]:
    _, sids = reader.search_segments(emb.probes, depth)
    rows = reader.get_segments([int(s) for s in np.unique(sids) if s >= 0])
    seen: dict[int, None] = {}
    for s in sids.reshape(-1):
        r = rows.get(int(s))
        if r is not None:
            seen.setdefault(int(r.item_id), None)
    return list(seen)


def _proposal_moments(emb, clips, per_video: int) -> list[tuple[int, float, float, float]]:
    from ..localize.proposals import propose, refine

    out = []
    for item_id, (times, vecs) in clips.items():
        scores = emb.score(vecs)
        for span in propose(scores, times, top=per_video):
            r = refine(span, scores, times)
            out.append((item_id, r.start, r.end, float(scores[span.first:span.last + 1].mean())))
    return out


def _model_moments(model, emb, clips, k: int) -> list[tuple[int, float, float, float]]:
    from ..localize.corpus import corpus_top_spans

    if emb.fused is None:
        raise ConfigError("a moment model scores one query vector; --fuse max gives several (use mean-sim)")
    if model.config.dim != len(emb.fused):
        raise ConfigError(f"the moment model was trained on {model.config.dim}-wide features but this index's "
                          f"encoder gives {len(emb.fused)}; train it on this index's encoder")
    ids = list(clips)
    t = max(len(clips[i][0]) for i in ids)
    frames = np.zeros((len(ids), t, model.config.dim), np.float32)
    times = np.zeros((len(ids), t, 2))
    mask = np.zeros((len(ids), t), bool)
    for n, i in enumerate(ids):
        tm, vecs = clips[i]
        frames[n, :len(tm)], times[n, :len(tm)], mask[n, :len(tm)] = vecs, tm, True
    st, ed, vid = model.corpus_logp(frames, emb.fused[None].astype(np.float32), mask=mask)
    st, ed = np.where(mask, st[0] + vid[0][:, None], -np.inf), np.where(mask, ed[0], -np.inf)
    return [(ids[v], float(times[v, i, 0]), float(times[v, j, 1]), s)
            for v, i, j, s in corpus_top_spans(st, ed, max_len=model.config.max_moment, top=k)]


def search_moments(reader, encoder, query: Query, k: int = 10, *, model=None, depth: int = DEFAULT_DEPTH,
                   per_video: int = MOMENTS_PER_VIDEO) -> SearchOutcome:
    """Top-``k`` moments for ``query`` on ``reader`` (see the module docstring)."""
    k = check_k(k)
    depth = check_k(depth, "depth")
    if reader.model_spec is not None and reader.model_spec != encoder.spec:
        raise ConfigError(f"index was built with {reader.model_spec!r} but the query encoder is {encoder.spec!r}")
    from ..video.clips import refuse_moments

    refuse_moments(encoder, reader)  # a whole-clip model's index from before its windows were embedded
    check_has_videos(reader)
    return search_moments_embedded(reader, encode_query(encoder, query), k, model=model, depth=depth,
                                   per_video=per_video, model_spec=encoder.spec)


def check_has_videos(reader) -> None:
    """XmrIndexError saying what to do when the index holds no video segments."""
    if reader.count_segments() == 0:
        raise XmrIndexError("moment search needs videos, and this index holds none (no video segments): index a "
                            "folder with videos (xmr index DIR), or search images with --type image / all (an index "
                            "that a whole-clip model, trained:DIR of a video run, built before its windows were "
                            "embedded has no segments: re-index it)")


def search_moments_embedded(reader, emb, k: int, *, model=None, depth: int = DEFAULT_DEPTH,
                            per_video: int = MOMENTS_PER_VIDEO, model_spec: str | None = None) -> SearchOutcome:
    """:func:`search_moments` for an already encoded query (the server encodes concurrent queries in one batch)."""
    k = check_k(k)
    check_has_videos(reader)
    spec = model_spec if model_spec is not None else reader.model_spec
    clips = {}
    for item_id in _candidates(reader, emb, max(depth, k)):
        segs, vecs = reader.segments_of(item_id)
        if segs:
            clips[item_id] = (np.array([[s.start, s.end] for s in segs], dtype=np.float64), vecs)
    if not clips:
        return SearchOutcome([], emb.query.describe(), spec, [], reader.generation)
    if model is None:
        moments = _proposal_moments(emb, clips, per_video)
        stage = {"stage": "moments", "localizer": "proposals", "depth": depth, "per_video": per_video}
    else:
        moments = _model_moments(model, emb, clips, k)
        stage = {"stage": "moments", "localizer": "squidnet", "depth": depth,
                 "debias_weight": model.config.debias_weight}  # the videos compared: the candidates
    items = reader.get_items(list({m[0] for m in moments}))
    results = []
    for item_id, start, end, score in moments:
        it = items.get(item_id)
        if it is None:  # deleted after the snapshot
            continue
        results.append(SearchResult(0, item_id, it.path, score, "video", it.root, start, end))
    results.sort(key=lambda r: (-r.score, r.id, r.start))
    out = rank(results, None)[:k]  # rank sorts by (score, id); the start breaks ties of one video above
    return SearchOutcome(out, emb.query.describe(), spec,
                         [{"stage": "first", "source": "segments", "depth": depth}, stage], reader.generation)


__all__ = ["check_has_videos", "search_moments", "search_moments_embedded", "DEFAULT_DEPTH", "MOMENTS_PER_VIDEO"]
