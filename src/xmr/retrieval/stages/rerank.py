"""Two-stage re-ranking: the top ``k`` candidates are scored by a cross-encoder (:mod:`xmr.rerank`) on (query
text, image) pairs and re-ordered by ``alpha * dual + (1 - alpha) * cross``; the rest keep their order below them.

Defined for text queries (several texts: the mean of the cross scores over them) over images. Refused for image or
vector terms (a cross-encoder scores text against an image) and for indexes with videos unless the search is
restricted to images (``--type image``)."""
from __future__ import annotations

import numpy as np

from ...errors import ConfigError
from .base import Stage, StageContext


class RerankStage(Stage):
    name = "rerank"
    #: the re-ranked top-k stay above the rest whatever their scores (cross log-odds are not cosines): the pipeline
    #: keeps this stage's order instead of sorting by score
    keeps_order = True

    def __init__(self, spec: str, k: int = 10, alpha: float = 0.0, device: str | None = None, cross_encoder=None):
        from ...rerank import create_reranker
        from ...rerank.base import check_alpha

        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"rerank k must be at least 1, got {k!r}")
        self.k, self.alpha = k, check_alpha(alpha)
        self.cross = cross_encoder if cross_encoder is not None else create_reranker(spec, device=device)

    def params(self) -> dict:
        return {"cross_encoder": self.cross.spec, "k": self.k, "alpha": self.alpha}

    def check_index(self, reader, encoder, media_type):
        if media_type != "image" and reader.media_counts().get("video"):
            raise ConfigError("cross-encoder re-ranking scores (text, image) pairs and this index holds videos: "
                              "restrict the search to images (--type image)")

    def check_query(self, query):
        if any(t.kind != "text" for t in query.terms) or not query.positive_texts:
            raise ConfigError("cross-encoder re-ranking needs a text query (it scores text against an image); "
                              f"this query is a {query.kind} query")

    def run(self, ctx: StageContext, cands):
        from ...rerank import rerank_candidates

        if not cands:
            return cands
        cands.sort(key=lambda r: (-r.score, r.id))
        texts = ctx.emb.query.positive_texts
        kk = min(self.k, len(cands))
        top = cands[:kk]
        pairs = np.array([(t, j) for j in range(kk) for t in range(len(texts))])
        cross = self.cross.score(texts, [r.path for r in top], pairs).reshape(kk, len(texts)).mean(axis=1)
        scores, cols = rerank_candidates(np.array([[r.score for r in top]]), np.arange(kk)[None], cross[None],
                                         self.alpha)
        out = [top[int(c)] for c in cols[0]]
        for r, s in zip(out, scores[0]):
            r.score = float(s)  # combined score; the order below is kept as is (see ``keeps_order``)
        return out + cands[kk:]
