"""Label-based retrieval metrics: relevance is sharing class labels, not being "the" paired item.

Used by the hashing literature (mAP@K on ImageNet-100, NUS-WIDE, MS-COCO, FCVID, ActivityNet) and by PCME's
plausible-match metrics (:mod:`xmr.eval.plausible`).

Conventions
-----------
* ``sims`` is (num_queries, num_items), higher = more similar (pass ``-hamming`` for hash codes, see
  :func:`hamming_similarity`). numpy arrays / torch tensors; never modified.
* Labels are a multi-hot (N, C) array (0/1 or bool), or a sequence of N label collections (``[{"dog"}, {1, 5},
  ...]``). A missing entry (``None``) is an error naming its index; an empty collection is a valid "no labels".
* Relevance (``relevance=``): ``"any"`` - an item is relevant when it shares at least one label with the query
  (the single- and multi-label hashing papers' rule, e.g. DHD's ``query_labels @ gallery_labels.T > 0``);
  ``"all"`` - it has exactly the query's label set.
* Ties (``ties=``): items with equal scores are ordered by ``"index"`` (gallery order, stable - what a stable
  argsort gives; the default), ``"pessimistic"`` (irrelevant items first inside a tie: a constant score never looks
  good) or ``"optimistic"`` (relevant first). The reference implementations use an unstable argsort, so their
  order inside ties is arbitrary; with Hamming distances ties are common and the rule matters - state it.
* mAP@K follows DHD's ``Evaluate_mAP`` (Jang et al., ECCV 2022, code): for each query take the top K, AP@K is the
  mean over the relevant items found there of (their rank among relevant found) / (their position); a query with no
  relevant item in its top K contributes 0; mAP is the mean over all queries. Reported as a fraction in [0, 1], as
  the hashing papers report it.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._arrays import to_numpy
from ..errors import ConfigError
from ._inputs import as_scores, check_no_nan

TIE_ORDERS = ("index", "pessimistic", "optimistic")
RELEVANCE_RULES = ("any", "all")


def as_multi_hot(labels, name: str, num: int | None = None, vocab: dict | None = None) -> np.ndarray:
    """Labels (multi-hot array or sequence of label collections) -> bool (N, C) array.

    For label collections, ``vocab`` (label -> column) is filled in place, so two calls sharing it give columns
    over the same vocabulary."""
    if labels is None:
        raise ConfigError(f"{name} is missing")
    if isinstance(labels, np.ndarray) or hasattr(labels, "detach"):
        arr = to_numpy(labels, name)
        if arr.ndim != 2:
            raise ConfigError(f"{name} must be a multi-hot (N, C) array, got shape {tuple(arr.shape)}")
        if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
            raise ConfigError(f"{name} must hold 0/1 (multi-hot) values")
        out = arr.astype(bool)
    else:
        if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
            raise ConfigError(f"{name} must be a multi-hot array or a sequence of label collections")
        vocab = {} if vocab is None else vocab
        rows = []
        for i, entry in enumerate(labels):
            if entry is None:
                raise ConfigError(f"{name}[{i}] is missing (None): every entry needs its labels (use [] for none)")
            if isinstance(entry, (str, bytes)) or not hasattr(entry, "__iter__"):
                entry = [entry]
            rows.append([vocab.setdefault(lab, len(vocab)) for lab in entry])
        out = np.zeros((len(rows), max(len(vocab), 1)), dtype=bool)  # caller pads to a shared vocab
        for i, row in enumerate(rows):
            out[i, row] = True
    if num is not None and out.shape[0] != num:
        raise ConfigError(f"{name} has {out.shape[0]} entries but the score matrix has {num} "
                          f"{'rows' if name.startswith('query') else 'columns'} for them")
    return out


def label_pair(query_labels, item_labels, num_queries: int, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Both label sets as bool multi-hot arrays over one vocabulary (collections share their label names)."""
    vocab: dict = {}
    q = as_multi_hot(query_labels, "query_labels", num_queries, vocab)
    g = as_multi_hot(item_labels, "item_labels", num_items, vocab)
    q_arr = isinstance(query_labels, np.ndarray) or hasattr(query_labels, "detach")
    g_arr = isinstance(item_labels, np.ndarray) or hasattr(item_labels, "detach")
    if q_arr != g_arr:
        raise ConfigError("give query_labels and item_labels in the same form: both multi-hot arrays or both "
                          "sequences of label collections")
    if not q_arr:  # pad both to the shared vocabulary
        width = max(len(vocab), 1)
        q = np.pad(q, ((0, 0), (0, width - q.shape[1])))
        g = np.pad(g, ((0, 0), (0, width - g.shape[1])))
    return q, g


def shared_label_counts(query_labels: np.ndarray, item_labels: np.ndarray) -> np.ndarray:
    """(Q, C) and (G, C) bool -> (Q, G) number of labels each pair shares."""
    if query_labels.shape[1] != item_labels.shape[1]:
        raise ConfigError(f"query labels have {query_labels.shape[1]} classes but item labels have "
                          f"{item_labels.shape[1]}; give both over the same label vocabulary")
    return query_labels.astype(np.int32) @ item_labels.astype(np.int32).T


def relevance(query_labels, item_labels, rule: str = "any") -> np.ndarray:
    """(Q, G) bool relevance from labels (see the module docstring for the rules)."""
    if rule not in RELEVANCE_RULES:
        raise ConfigError(f"unknown relevance rule {rule!r}. Available: {', '.join(RELEVANCE_RULES)}")
    shared = shared_label_counts(query_labels, item_labels)
    if rule == "any":
        return shared > 0
    q_n = query_labels.sum(axis=1)[:, None]
    g_n = item_labels.sum(axis=1)[None, :]
    return (shared == q_n) & (shared == g_n) & (q_n > 0)


def ranked(scores_row: np.ndarray, rel_row: np.ndarray, ties: str) -> np.ndarray:
    """Order of the items for one query (best first) under a tie rule."""
    idx = np.arange(scores_row.shape[0])
    if ties == "index":
        return np.lexsort((idx, -scores_row.astype(np.float64)))
    key = rel_row.astype(np.int8) if ties == "pessimistic" else -rel_row.astype(np.int8)
    return np.lexsort((idx, key, -scores_row.astype(np.float64)))


def _check(sims, query_labels, item_labels, k, ties, rule):
    scores = as_scores(sims)
    check_no_nan(scores, None)
    if ties not in TIE_ORDERS:
        raise ConfigError(f"unknown tie rule {ties!r}. Available: {', '.join(TIE_ORDERS)}")
    q, g = label_pair(query_labels, item_labels, scores.shape[0], scores.shape[1])
    if k is not None:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer or None (whole ranking), got {k!r}")
        if k > scores.shape[1]:
            raise ConfigError(f"k={k} is larger than the gallery ({scores.shape[1]} items)")
    rel = relevance(q, g, rule)
    return scores, rel, (scores.shape[1] if k is None else int(k))


def label_map(sims, query_labels, item_labels, k: int | None, *, ties: str = "index",
              relevance_rule: str = "any") -> float:
    """mAP@k (fraction in [0, 1]) with label-sharing relevance; ``k=None`` ranks the whole gallery."""
    scores, rel, k = _check(sims, query_labels, item_labels, k, ties, relevance_rule)
    total = 0.0
    for i in range(scores.shape[0]):
        hits = rel[i][ranked(scores[i], rel[i], ties)[:k]]
        pos = np.flatnonzero(hits) + 1.0
        if pos.size:
            total += float(np.mean(np.arange(1, pos.size + 1) / pos))
    return total / scores.shape[0]


def label_precision_at_k(sims, query_labels, item_labels, k: int, *, ties: str = "index",
                         relevance_rule: str = "any") -> float:
    """Mean over queries of (relevant items in the top k) / k, as a fraction."""
    if k is None:
        raise ConfigError("precision@k needs a k")
    scores, rel, k = _check(sims, query_labels, item_labels, k, ties, relevance_rule)
    hits = [rel[i][ranked(scores[i], rel[i], ties)[:k]].sum() for i in range(scores.shape[0])]
    return float(np.mean(hits) / k)


def hamming_similarity(query_codes, item_codes) -> np.ndarray:
    """(Q, B) and (G, B) codes in {-1, +1} or {0, 1} -> (Q, G) ``-hamming distance`` (higher = closer)."""
    q = to_numpy(query_codes, "query_codes")
    g = to_numpy(item_codes, "item_codes")
    if q.ndim != 2 or g.ndim != 2:
        raise ConfigError("codes must be (N, bits) arrays")
    if q.shape[1] != g.shape[1]:
        raise ConfigError(f"query codes have {q.shape[1]} bits but item codes have {g.shape[1]}")
    qb, gb = _bits(q, "query_codes"), _bits(g, "item_codes")
    diff = qb.astype(np.int32) @ (1 - gb).T.astype(np.int32) + (1 - qb).astype(np.int32) @ gb.T.astype(np.int32)
    return -diff.astype(np.float64)


def _bits(codes: np.ndarray, name: str) -> np.ndarray:
    vals = np.unique(codes)
    if np.isin(vals, (-1, 1)).all():
        return (codes > 0).astype(np.uint8)
    if np.isin(vals, (0, 1)).all():
        return codes.astype(np.uint8)
    raise ConfigError(f"{name} must hold binary codes in {{-1, +1}} or {{0, 1}}")
