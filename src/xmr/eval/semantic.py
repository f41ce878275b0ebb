"""Average Semantic Precision (ASP) and ASP@K (Li et al., NeurIPS 2022, DAA), exactly as the reference evaluation
(``engine/eval_coco.py`` ``evaluate_ASP``) computes them:

* **ASP**: for every query and *every* gallery item, ``min(R_C, R_S) / max(R_C, R_S)`` with ``R_S`` the item's
  1-based rank by the model's score and ``R_C`` its rank by semantic relevance; mean over all (query, item).
* **ASP@K**: the relevance gathered by the model's top K over the best possible relevance of any K items.

Semantic relevance is any (num_queries, num_items) matrix: the paper uses CIDEr between a query caption and the
item's ground-truth captions; label overlap works too. Ties are broken in gallery order for both rankings (the
reference uses unstable sorts). A query whose relevance is 0 for every item has no ASP@K (0/0: the reference gets
NaN); such queries are left out of the ASP@K mean. Percentages, as the paper reports.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from ._inputs import as_scores, check_no_nan


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(-values, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, values.shape[1] + 1)[None, :].repeat(values.shape[0], 0), axis=1)
    return ranks


def asp(sims, relevance, ks: Sequence[int] = (5, 10, 20)) -> dict[str, float]:
    """``{"ASP": ..., "ASP@5": ..., ...}`` (percent) from scores and semantic relevance, both (Q, G)."""
    s = as_scores(sims).astype(np.float64)
    c = as_scores(relevance, "relevance").astype(np.float64)
    if s.shape != c.shape:
        raise ConfigError(f"sims {s.shape} and relevance {c.shape} must have the same shape")
    check_no_nan(s, None)
    check_no_nan(c, None, "relevance")
    if (c < 0).any():
        raise ConfigError("relevance must be >= 0 (ASP@K divides gathered relevance by the best possible)")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= s.shape[1]:
            raise ConfigError(f"each K must be an integer in [1, {s.shape[1]}] (the gallery size), got {k!r}")
    r_s, r_c = _ranks(s), _ranks(c)
    out = {"ASP": 100.0 * float((np.minimum(r_s, r_c) / np.maximum(r_s, r_c)).mean())}
    top = np.argsort(-s, axis=1, kind="stable")
    best = -np.sort(-c, axis=1)
    for k in ks:
        got = np.take_along_axis(c, top[:, :k], axis=1).sum(1)
        ideal = best[:, :k].sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(ideal > 0, got / np.where(ideal > 0, ideal, 1), np.nan)
        if np.isnan(ratio).all():
            raise ConfigError(f"no query has any relevant item in the gallery: ASP@{k} is undefined")
        out[f"ASP@{k}"] = 100.0 * float(np.nanmean(ratio))
    return out
