"""Query an index with text or an image.

Images have one vector each. Videos have a video-level vector and one vector per time segment (see
:mod:`xmr.index.video`); a video's score is the best of its video-level score and its segments' scores, and its
result carries ``start``/``end`` (seconds) of its best-scoring segment. Each file appears at most once.

Indexes built with a head that re-scores (``video:<spec>+xpool@DIR``, ``+prototypes@DIR``) store a query-independent
candidate vector per video and segment plus the frame embeddings; :func:`search_vector` then takes the top
``rescorer.candidates`` results by those vectors and re-scores their videos (whole video and every segment) exactly
with the head before cutting to ``k``. Images in the pool keep their cosine score.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import numpy as np

from ..encoders.base import Encoder
from ..errors import ConfigError
from .store import IndexStore

MAX_K = 10_000
MEDIA_TYPES = ("image", "video")


@dataclass
class SearchResult:
    rank: int  # 1-based
    id: int
    path: str
    score: float
    media_type: str
    root: str
    start: float | None = None  # videos: the best segment's start, seconds from the first frame; None for images
    end: float | None = None  # videos: the best segment's end (seconds)

    def to_dict(self) -> dict:
        """JSON form. ``start``/``end`` are present for videos only (image results keep their v1 shape)."""
        d = asdict(self)
        if self.start is None and self.end is None:
            del d["start"], d["end"]
        return d


def search_index(
    store: IndexStore,
    encoder: Encoder,
    *,
    text: str | None = None,
    image: str | os.PathLike | None = None,
    k: int = 10,
    media_type: str | None = None,
    candidates: int | None = None,
) -> list[SearchResult]:
    """Top-``k`` items for a text query or an image query (exactly one of the two).

    ``media_type``: ``"image"`` or ``"video"`` keeps only that kind of file; ``None`` or ``"all"`` keeps both.
    ``candidates``: first-stage pool re-scored by the encoder's head (only for encoders with a
    ``video_rescorer``, i.e. X-Pool / prototype heads; default 100)."""
    if (text is None) == (image is None):
        raise ConfigError("give exactly one of a text query or an image query")
    if not isinstance(k, int) or k < 1 or k > MAX_K:
        raise ConfigError(f"k must be an integer between 1 and {MAX_K}, got {k!r}")
    if text is not None and not text.strip():
        raise ConfigError("empty text query")
    if store.model_spec is not None and store.model_spec != encoder.spec:
        raise ConfigError(f"index was built with {store.model_spec!r} but the query encoder is {encoder.spec!r}")
    want = _check_media_type(media_type)
    make = getattr(encoder, "video_rescorer", None)
    rescorer = make(candidates) if make is not None else None
    if candidates is not None and rescorer is None:
        raise ConfigError(f"candidates only apply to encoders whose head re-scores videos (xpool, prototypes); "
                          f"{encoder.spec!r} ranks exactly without them")
    q = encoder.encode_text([text]) if text is not None else encoder.encode_images([image])
    return search_vector(store, q[0], k, media_type=want, rescorer=rescorer)


def _check_media_type(media_type: str | None) -> str | None:
    if media_type in (None, "all"):
        return None
    if media_type not in MEDIA_TYPES:
        raise ConfigError(f"media type must be one of image, video, all; got {media_type!r}")
    return media_type


def search_vector(store: IndexStore, query: np.ndarray, k: int, *, media_type: str | None = None,
                  rescorer=None) -> list[SearchResult]:
    """Top-``k`` files for one L2-normalised query vector ``(dim,)`` over item and video-segment vectors.

    Exact (same result as scoring every vector): the item-level top-k and enough of the segment-level ranking to
    cover ``k`` distinct videos are merged; any file whose best score can be in the top ``k`` is in one of the
    two lists, and its missing half (video-level score or best segment) is then computed exactly.

    ``store`` is an :class:`IndexStore` or anything with the same read methods used here: ``faiss_index()``
    (``ntotal``, ``reconstruct``), ``search``, ``get_items``, ``count_segments``, ``search_segments``,
    ``get_segments``, ``segments_of``, and ``frames_of`` with a rescorer (``xmr.serve`` passes a snapshot view).

    ``rescorer`` (:class:`xmr.encoders.video.VideoRescorer`): the result is the top ``k`` of the first
    ``rescorer.candidates`` results after exact re-scoring of their videos (see the module docstring).
    """
    want = _check_media_type(media_type)
    if rescorer is not None:
        pool = search_vector(store, query, max(k, rescorer.candidates), media_type=want)
        return rescore_results(store, query, pool, k, rescorer)
    q = np.ascontiguousarray(np.asarray(query, np.float32).reshape(1, -1))
    # 1. item-level: top k of the wanted type (deepened when a type filter drops rows)
    item_score: dict[int, float] = {}
    recs = {}
    n_items = store.faiss_index().ntotal
    kk = min(k, n_items)
    while kk > 0:
        scores, ids = store.search(q, kk)
        got = store.get_items([i for i in ids[0] if i >= 0])
        hits = [(float(s), int(i)) for s, i in zip(scores[0], ids[0])
                if int(i) in got and (want is None or got[int(i)].media_type == want)]
        if len(hits) >= k or kk >= n_items:
            for s, i in hits[:k]:
                item_score[i] = s
                recs[i] = got[i]
            break
        kk = min(n_items, kk * 4)
    # 2. segment-level: best segment per video, until k distinct videos are covered
    best_seg: dict[int, tuple[float, float, float]] = {}  # item id -> (score, start, end)
    n_segs = store.count_segments() if want in (None, "video") else 0
    ks = min(n_segs, k * 8)
    while ks > 0:
        scores, sids = store.search_segments(q, ks)
        segs = store.get_segments([i for i in sids[0] if i >= 0])
        best_seg = {}
        for s, i in zip(scores[0], sids[0]):
            rec = segs.get(int(i))
            if rec is not None and rec.item_id not in best_seg:  # ranked list: the first one is the best
                best_seg[rec.item_id] = (float(s), rec.start, rec.end)
        if len(best_seg) >= k or ks >= n_segs:
            break
        ks = min(n_segs, ks * 4)
    # 3. complete each candidate exactly, merge, rank
    missing = [i for i in best_seg if i not in recs]
    recs.update(store.get_items(missing))
    index = store.faiss_index() if missing else None
    out = []
    for i, rec in recs.items():
        if want is not None and rec.media_type != want:
            continue
        v = item_score.get(i)
        if v is None:
            v = float(index.reconstruct(int(i)) @ q[0])
        start = end = None
        score = v
        if rec.media_type == "video":
            seg = best_seg.get(i) or _best_segment(store, i, q[0])
            if seg is not None:
                score, start, end = max(v, seg[0]), seg[1], seg[2]
        out.append(SearchResult(0, rec.id, rec.path, score, rec.media_type, rec.root, start, end))
    out.sort(key=lambda r: (-r.score, r.id))
    out = out[:k]
    for n, r in enumerate(out, 1):
        r.rank = n
    return out


def rescore_results(store, query: np.ndarray, pool: list[SearchResult], k: int, rescorer) -> list[SearchResult]:
    """Second stage: exact head scores for the videos in ``pool`` (first-stage results, any length), score =
    max(whole video, best segment) as for plain search; returns the new top ``k``."""
    from ..errors import XmrIndexError

    q = np.asarray(query, np.float32).reshape(-1)
    for r in pool:
        if r.media_type != "video":
            continue
        fr = store.frames_of(r.id)
        if fr is None:
            raise XmrIndexError(f"video {r.path} has no stored frame features, which this index's head needs to "
                                "re-score it; re-index the folder (xmr index DIR --index ...)")
        segs, _ = store.segments_of(r.id)
        whole, seg_scores = rescorer.score(q, fr[0], fr[1], [(g.start, g.end) for g in segs])
        r.score, r.start, r.end = whole, None, None
        scored = [(s, g) for s, g in zip(seg_scores, segs) if s is not None]
        if scored:
            s, g = max(scored, key=lambda x: x[0])
            r.score, r.start, r.end = max(whole, s), g.start, g.end
    pool.sort(key=lambda r: (-r.score, r.id))
    out = pool[:k]
    for n, r in enumerate(out, 1):
        r.rank = n
    return out


def _best_segment(store: IndexStore, item_id: int, q: np.ndarray) -> tuple[float, float, float] | None:
    segs, vecs = store.segments_of(item_id)
    if not segs:
        return None
    s = vecs @ q
    j = int(np.argmax(s))
    return float(s[j]), segs[j].start, segs[j].end


def results_from_ids(store: IndexStore, scores: np.ndarray, ids: np.ndarray) -> list[SearchResult]:
    recs = store.get_items([i for i in ids[0] if i >= 0])
    out = []
    for s, i in zip(scores[0], ids[0]):
        rec = recs.get(int(i))
        if rec is None:
            continue
        out.append(SearchResult(len(out) + 1, rec.id, rec.path, float(s), rec.media_type, rec.root))
    return out
