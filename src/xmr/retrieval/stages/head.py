"""Exact re-scoring by a video head that scores (query, frames) itself: X-Pool (text-conditioned attention over
frames) and prototypes (the query takes its best prototype). The index stores a query-independent candidate vector
per video and its frame embeddings; this stage scores each candidate video -- the whole clip and every stored
window -- with the head, and the video's score becomes max(whole, best window), as for plain search.

A multi-term query with ``max`` fusion is scored per term and the maximum kept; linear fusions are scored with the
fused vector. Images in the pool keep their cosine score."""
from __future__ import annotations

from ...errors import XmrIndexError
from .base import Stage, StageContext

#: default first-stage pool re-scored by the head (xmr search --candidates)
DEFAULT_CANDIDATES = 100


class HeadStage(Stage):
    name = "head"

    def __init__(self, encoder):
        encoder.require("video_rescoring", "head re-scoring")
        from ...encoders.video import VideoRescorer

        self.head_name = encoder.head.name
        self.rescorer = VideoRescorer(encoder.head)

    def params(self) -> dict:
        return {"head": self.head_name, "scores": "exact head similarity of whole video and each window"}

    def run(self, ctx: StageContext, cands):
        qs = ctx.emb.head_queries()
        for r in cands:
            if r.media_type != "video":
                continue
            fr = ctx.reader.frames_of(r.id)
            if fr is None:
                raise XmrIndexError(f"video {r.path} has no stored frame features, which this index's head needs to "
                                    "re-score it; re-index the folder (xmr index DIR --index ...)")
            segs, _ = ctx.reader.segments_of(r.id)
            windows = [(g.start, g.end) for g in segs]
            best = None
            for q, _w in qs:
                whole, seg_scores = self.rescorer.score(q, fr[0], fr[1], windows)
                cand = (whole, None, None)
                scored = [(s, g) for s, g in zip(seg_scores, segs) if s is not None]
                if scored:
                    s, g = max(scored, key=lambda x: x[0])
                    cand = (max(whole, s), g.start, g.end)
                if best is None or cand[0] > best[0]:
                    best = cand
            r.score, r.start, r.end = best
        return cands

