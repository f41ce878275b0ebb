"""Moments: a video's score is the best of its whole-video score and its segments' scores, and the result
carries the best segment's ``start``/``end`` (seconds). Exact: every segment of each candidate video is scored
(the first stage's best-segment hint is used when it has one, which is the same value)."""
from __future__ import annotations

import numpy as np

from .base import Stage, StageContext


class MomentStage(Stage):
    name = "moments"
    changes_scores = False  # exact completion of the first stage's scores; never needs a deeper pool

    def params(self) -> dict:
        return {"rule": "max(whole video, best segment)", "segments": "stored sliding windows"}

    def run(self, ctx: StageContext, cands):
        for r in cands:
            if r.media_type != "video":
                continue
            seg = ctx.hints.get(r.id)
            if seg is None:
                segs, vecs = ctx.reader.segments_of(r.id)
                if not segs:
                    continue
                s = ctx.emb.score(vecs)
                j = int(np.argmax(s))
                seg = (float(s[j]), segs[j].start, segs[j].end)
            r.score, r.start, r.end = max(r.score, seg[0]), seg[1], seg[2]
        return cands
