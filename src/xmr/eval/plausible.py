"""Plausible-match metrics of PCME (Chun et al., CVPR 2021, Sec. 5.1): PMRP and PM-R@1.

COCO captions are many-to-many: a caption fits other images than its own. PCME counts a retrieved item as a
*plausible match* when its class-label vector (COCO instance categories, 80/90 classes) differs from the query's
in at most ``ζ`` classes (L1 distance between the multi-hot vectors ≤ ζ), and reports, averaged over
``ζ ∈ {0, 1, 2}``:

* **PMRP** (plausible-match R-precision): with ``R`` = the number of plausible matches in the ranking, the share
  of plausible matches among the top ``R``;
* **PM-R@1**: whether the first result is a plausible match.

This follows the reference evaluation (naver-ai/pcme ``evaluate_pmrp_coco.py``) step by step:

* items (images) without any label are left out - as queries, and from every ranking - and so are the texts of
  such items (the reference keeps only images that have instance annotations); their count is reported;
* the ranking is the full ranking of the remaining gallery (all items for text queries, all texts for item
  queries), a caption's label vector being its image's;
* the score is ``100 ×`` the mean over thresholds and queries.

Tie order inside equal scores: see ``ties`` in :mod:`xmr.eval.labels` (default ``"index"``; the reference sorts with
an unstable argsort). 5-fold COCO-1K numbers: call this on each fold's slice and average, as the reference does.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ._inputs import as_scores, as_text_to_item, check_no_nan
from .labels import TIE_ORDERS, as_multi_hot, ranked


def label_distance(labels: np.ndarray) -> np.ndarray:
    """(N, C) bool -> (N, N) int L1 distance between multi-hot vectors (classes present in exactly one)."""
    x = labels.astype(np.int32)
    n = x.sum(axis=1)
    return n[:, None] + n[None, :] - 2 * (x @ x.T)


def _one_direction(scores: np.ndarray, query_item: np.ndarray, cand_item: np.ndarray, dist: np.ndarray,
                   thresholds: range, ties: str) -> tuple[float, float]:
    rp = np.zeros((len(thresholds), scores.shape[0]))
    r1 = np.zeros_like(rp)
    for qi in range(scores.shape[0]):
        d = dist[query_item[qi], cand_item]
        for ti, thr in enumerate(thresholds):
            matched = d <= thr
            order = ranked(scores[qi], matched, ties)
            m = matched[order]
            r = int(m.sum())  # >= 1: the query's own item (or own captions) is at distance 0
            rp[ti, qi] = m[:r].sum() / r
            r1[ti, qi] = float(m[0])
    return 100.0 * float(rp.mean()), 100.0 * float(r1.mean())


def pmrp(sims, text_to_item, item_labels, *, max_threshold: int = 3, ties: str = "index") -> dict:
    """PMRP and PM-R@1 in both directions from a (num_texts, num_items) score matrix.

    ``item_labels``: per item (image) its class labels (multi-hot (N, C) or label collections).
    ``max_threshold``: the thresholds are ``0 .. max_threshold - 1`` (PCME: 3, i.e. ζ ∈ {0, 1, 2}).
    Returns ``{"t2i": {"PMRP", "PM-R@1"}, "i2t": {...}, "num_items", "num_texts", "excluded_items"}``."""
    scores = as_scores(sims)
    check_no_nan(scores, None)
    t2i = as_text_to_item(text_to_item, *scores.shape)
    labels = as_multi_hot(item_labels, "item_labels", scores.shape[1])
    if isinstance(max_threshold, bool) or not isinstance(max_threshold, (int, np.integer)) or max_threshold < 1:
        raise ConfigError(f"max_threshold must be a positive integer, got {max_threshold!r}")
    if ties not in TIE_ORDERS:
        raise ConfigError(f"unknown tie rule {ties!r}. Available: {', '.join(TIE_ORDERS)}")
    kept_items = np.flatnonzero(labels.any(axis=1))
    if kept_items.size == 0:
        raise ConfigError("no item has a label: plausible matches are defined by shared labels")
    kept_texts = np.flatnonzero(np.isin(t2i, kept_items))
    if kept_texts.size == 0:
        raise ConfigError("no text belongs to a labelled item")
    dist = label_distance(labels)
    sub = scores[np.ix_(kept_texts, kept_items)]
    thresholds = range(int(max_threshold))
    text_item = t2i[kept_texts]
    t_pmrp, t_r1 = _one_direction(sub, text_item, kept_items, dist, thresholds, ties)
    i_pmrp, i_r1 = _one_direction(np.ascontiguousarray(sub.T), kept_items, text_item, dist, thresholds, ties)
    return {
        "t2i": {"PMRP": t_pmrp, "PM-R@1": t_r1},
        "i2t": {"PMRP": i_pmrp, "PM-R@1": i_r1},
        "num_items": int(kept_items.size),
        "num_texts": int(kept_texts.size),
        "excluded_items": int(scores.shape[1] - kept_items.size),
    }
