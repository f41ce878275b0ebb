"""First stage: candidate generation by inner-product search over an index's item and segment vectors.

For each probe vector of the query (one for linear fusions, one per term for ``max``, see
:class:`~xmr.retrieval.query.QueryEmbedding`):

1. item level: the top ``depth`` items of the wanted media type (the search is deepened when the type filter
   drops rows);
2. segment level: enough of the segment ranking to cover ``depth`` distinct videos (a video's first segment in the
   ranked list is its best one, kept as a hint for the moments stage).

Every candidate gets its exact fused item-level score (the FAISS score when one probe found it, else the stored
vector scored exactly). Any file whose best score (item or best segment) can be in the top ``depth`` is in the
union, so the moments stage that follows makes the top ``depth`` exact.

The item search goes through the index's vector backend (:mod:`xmr.index.backends`, ``reader.backend``). With the
exact ``flat`` backend (the default) everything above is exact. With an approximate one (``hnsw``, ``ivfpq``,
``binary``, ``milvus``) the reader fetches ``rerank_factor × depth`` candidates from the backend and re-scores them
exactly from the stored float32 vectors before keeping ``depth`` (:meth:`~xmr.index.snapshot.SnapshotReader.search`):
scores are exact inner products, recall is the backend's (tuned on held-out vectors, see ``xmr info``). This stage's
``stages`` record names the backend, its tuned parameters and the re-ranking. Video segments are always searched
exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .result import SearchResult

MAX_K = 10_000
MEDIA_TYPES = ("image", "video")


def check_media_type(media_type: str | None) -> str | None:
    """``None``/``"all"`` -> None; ``"image"``/``"video"`` unchanged; anything else: ConfigError."""
    if media_type in (None, "all"):
        return None
    if media_type not in MEDIA_TYPES:
        raise ConfigError(f"media type must be one of image, video, all; got {media_type!r}")
    return media_type


def check_k(k, what: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= MAX_K:
        raise ConfigError(f"{what} must be an integer between 1 and {MAX_K}, got {k!r}")
    return int(k)


@dataclass
class FirstStage:
    """Exact first stage (see the module docstring)."""

    depth: int
    media_type: str | None = None
    backend: object = None  # the reader's vector backend, set by run()

    name = "first-stage"

    def params(self) -> dict:
        b = self.backend
        if b is None or b.exact:
            return {"stage": self.name, "backend": "faiss-flat-ip", "exact": True, "depth": self.depth,
                    "type": self.media_type or "all"}
        return {"stage": self.name, "backend": b.name, "exact": False, "depth": self.depth,
                "type": self.media_type or "all",
                "backend_params": {k: v for k, v in b.describe().items() if k != "tuning"},
                "rerank": {"exact": True, "from": "stored float32 vectors",
                           "candidates": b.candidates(self.depth)}}

    def run(self, reader, emb) -> tuple[list[SearchResult], dict[int, tuple[float, float, float]]]:
        """(candidates with exact item-level scores, {video id: (best segment score, start, end)} hints)."""
        want, depth = self.media_type, self.depth
        self.backend = reader.backend
        probes = emb.probes
        found: dict[int, float | None] = {}  # item id -> FAISS score (single probe) or None (score exactly)
        recs = {}
        hints: dict[int, tuple[float, float, float]] = {}
        n_items = reader.count()
        single = len(probes) == 1
        for p in probes:
            q = np.ascontiguousarray(p.reshape(1, -1), dtype=np.float32)
            kk = min(depth, n_items)
            while kk > 0:
                scores, ids = reader.search(q, kk)
                got = reader.get_items([i for i in ids[0] if i >= 0])
                hits = [(float(s), int(i)) for s, i in zip(scores[0], ids[0])
                        if int(i) in got and (want is None or got[int(i)].media_type == want)]
                if len(hits) >= depth or kk >= n_items:
                    for s, i in hits[:depth]:
                        found[i] = s if single else None
                        recs[i] = got[i]
                    break
                kk = min(n_items, kk * 4)
            n_segs = reader.count_segments() if want in (None, "video") else 0
            ks = min(n_segs, depth * 8)
            best: dict[int, tuple[float, float, float]] = {}
            while ks > 0:
                scores, sids = reader.search_segments(q, ks)
                segs = reader.get_segments([i for i in sids[0] if i >= 0])
                best = {}
                for s, i in zip(scores[0], sids[0]):
                    rec = segs.get(int(i))
                    if rec is not None and rec.item_id not in best:  # ranked list: the first one is the best
                        best[rec.item_id] = (float(s), rec.start, rec.end)
                if len(best) >= depth or ks >= n_segs:
                    break
                ks = min(n_segs, ks * 4)
            for i in best:
                found.setdefault(i, None)
            if single:
                hints = best
        missing = [i for i in found if i not in recs]
        recs.update(reader.get_items(missing))
        exact = [i for i, s in found.items() if s is None and i in recs]
        if exact:
            for i, s in zip(exact, emb.score(reader.item_vectors(exact))):
                found[i] = float(s)
        out = [SearchResult(0, rec.id, rec.path, float(found[i]), rec.media_type, rec.root)
               for i, rec in recs.items() if i in found and (want is None or rec.media_type == want)]
        return out, hints
