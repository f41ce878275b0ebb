"""Relevance feedback: the user marks results good or bad and the query vector moves (Rocchio, 1971):

    q' = alpha * q + beta * mean(good) - gamma * mean(bad),   then L2-normalised

with the defaults of the IR literature (SMART; Manning, Raghavan & Schuetze, *Introduction to Information
Retrieval*, 2008, section 9.1.1): ``alpha = 1.0``, ``beta = 0.75``, ``gamma = 0.15`` (positive feedback counts
more than negative). ``q`` is the query's fused embedding (linear fusions only), the marked items' vectors are
read from the index, and the refined query is searched as a vector query.

Feedback must name items the user was shown: :func:`feedback_vector` refuses an id that is not in the index, and,
when the caller passes the ids it showed (``shown``), an id that is not among them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import ConfigError

MAX_FEEDBACK = 100


@dataclass(frozen=True)
class RocchioConfig:
    alpha: float = 1.0
    beta: float = 0.75
    gamma: float = 0.15

    def __post_init__(self):
        vals = (self.alpha, self.beta, self.gamma)
        if not all(np.isfinite(v) and v >= 0 for v in vals) or not self.alpha + self.beta > 0:
            raise ConfigError(f"Rocchio weights must be finite and >= 0, alpha + beta > 0; got {vals}")


def rocchio(query: np.ndarray, good: np.ndarray, bad: np.ndarray, config: RocchioConfig | None = None) -> np.ndarray:
    """The refined, L2-normalised query (d,) from ``query`` (d,) and the good (g, d) / bad (b, d) item vectors
    (either may have no rows). Raises ConfigError when the terms cancel out."""
    c = config or RocchioConfig()
    q = c.alpha * np.asarray(query, np.float64).reshape(-1)
    good, bad = np.asarray(good, np.float64), np.asarray(bad, np.float64)
    if len(good):
        q = q + c.beta * good.mean(0)
    if len(bad):
        q = q - c.gamma * bad.mean(0)
    n = np.linalg.norm(q)
    if not np.isfinite(n) or not n > 1e-9:
        raise ConfigError("relevance feedback cancelled the query out (the good and bad items balance it): mark "
                          "fewer bad items or more good ones")
    return (q / n).astype(np.float32)


def check_feedback(good, bad, reader, shown=None) -> tuple[list[int], list[int]]:
    """Validated (good ids, bad ids): integers, no id both good and bad, every id an item of ``reader``'s index and,
    when ``shown`` (the ids the user saw) is given, among them."""
    try:
        good = [int(i) for i in good or ()]
        bad = [int(i) for i in bad or ()]
    except (TypeError, ValueError):
        raise ConfigError("feedback ids must be integer item ids (the `id` of a result)") from None
    if not good and not bad:
        raise ConfigError("relevance feedback needs at least one good or bad result id")
    if len(good) + len(bad) > MAX_FEEDBACK:
        raise ConfigError(f"at most {MAX_FEEDBACK} feedback ids")
    both = set(good) & set(bad)
    if both:
        raise ConfigError(f"item {min(both)} is marked both good and bad")
    ids = sorted(set(good) | set(bad))
    if shown is not None:
        seen = {int(i) for i in shown}
        missing = [i for i in ids if i not in seen]
        if missing:
            raise ConfigError(f"feedback on item {missing[0]}, which is not in the results shown: mark results of "
                              f"this search only")
    found = reader.get_items(ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise ConfigError(f"feedback on item {missing[0]}, which is not in the index (ids are the `id` of results)")
    return good, bad


def feedback_vector(query_embedding, reader, good=(), bad=(), shown=None,
                    config: RocchioConfig | None = None) -> np.ndarray:
    """Rocchio's refined query vector for an encoded query (:class:`~xmr.retrieval.QueryEmbedding`)."""
    if not query_embedding.linear:
        raise ConfigError("relevance feedback moves one query vector: use a linear fusion (mean-sim, mean-emb), "
                          "not 'max'")
    good, bad = check_feedback(good, bad, reader, shown)
    return rocchio(query_embedding.fused, reader.item_vectors(good), reader.item_vectors(bad), config)


def feedback_search(pipeline, reader, query, k: int = 10, media_type: str | None = None, good=(), bad=(),
                    shown=None, config: RocchioConfig | None = None):
    """Search with ``query`` moved by the feedback; the outcome's ``query`` records the original query and the
    feedback."""
    from ..query import Query, encode_query

    emb = encode_query(pipeline.encoder, query)
    good, bad = check_feedback(good, bad, reader, shown)
    vec = feedback_vector(emb, reader, good, bad, None, config)
    out = pipeline.search(reader, Query.vector(vec), k, media_type)
    c = config or RocchioConfig()
    out.query = {"query": query.describe(), "feedback": {"good": good, "bad": bad, "alpha": c.alpha,
                                                         "beta": c.beta, "gamma": c.gamma}}
    return out


__all__ = ["RocchioConfig", "rocchio", "check_feedback", "feedback_vector", "feedback_search"]
