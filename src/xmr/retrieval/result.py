"""What a search returns: ranked :class:`SearchResult` rows and the record of every stage that made them."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


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
    match: str | None = None  # experts stage: "visual" or the expert whose score contributed most
    experts: dict | None = None  # experts stage: {name: {"score", "text", "field"[, "start", "end", "phrase"]}}
    #: experts stage with a trained fuser (laff, mmt): each source's weight in the fused score ({"visual": 0.7, ...};
    #: LAFF's attention, MMT's query-predicted expert weights), summing to 1 over the sources the item has
    weights: dict | None = None

    def to_dict(self) -> dict:
        """JSON form. ``start``/``end`` are present for videos only (image results keep their v1 shape);
        ``match``/``experts`` only when the experts stage ran, ``weights`` only with a trained fuser."""
        d = asdict(self)
        if self.start is None and self.end is None:
            del d["start"], d["end"]
        for k in ("match", "experts", "weights"):
            if d[k] is None:
                del d[k]
        return d


def rank(results: list[SearchResult], k: int | None = None) -> list[SearchResult]:
    """Sort by score (ties: lower id first), cut to ``k``, number the ranks from 1."""
    results.sort(key=lambda r: (-r.score, r.id))
    out = results if k is None else results[:k]
    for n, r in enumerate(out, 1):
        r.rank = n
    return out


@dataclass
class SearchOutcome:
    """Results plus what produced them: the query, the model and each stage with its parameters (the fingerprint
    habit of ``xmr eval``, applied to search)."""

    results: list[SearchResult]
    query: object  # Query.describe()
    model: str
    stages: list[dict] = field(default_factory=list)
    generation: int | None = None
    seconds: dict = field(default_factory=dict)  # stage name -> wall time of this search (not in to_dict)

    def to_dict(self) -> dict:
        return {"query": self.query, "model": self.model, "stages": self.stages,
                "results": [r.to_dict() for r in self.results]}
