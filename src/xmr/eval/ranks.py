"""Ranks and ranking metrics: the building blocks under :func:`xmr.eval.evaluate_sims`.

Conventions
-----------
* ``sims`` is (num_texts, num_items), higher = more similar; ``text_to_item[t]`` is the column of text t's
  item. numpy arrays and torch tensors are accepted and never modified.
* Ranks are **0-based** (0 = the match comes first). Metrics report them **1-based**: ``MdR = median + 1``,
  ``MnR = mean + 1``. ``R@K`` is the percentage of queries with rank < K.
* Ranks are found by counting candidates that score above / equal to the match, one row block at a time,
  never by sorting the matrix (see :mod:`xmr.eval._counting`).

Tie rules (``ties=``), for a match with ``a`` candidates strictly ahead and ``e`` non-matching candidates tied:

* ``"pessimistic"`` - rank = a + e: ties count against the query, so a constant matrix never looks perfect
  (xmr's default).
* ``"optimistic"``  - rank = a: the match wins every tie.
* ``"average"``     - rank = a + (ties)/2, the mean of the tied positions (collaborative-experts). With several
  texts per item the tied set includes the item's other texts that reach the same score, as CE does.
* ``"expand"``      - one rank *per tied position* a, a+1, ..., a+e: a query with ties contributes several
  entries and R@K / MdR / MnR are taken over all entries (what CLIP4Clip's ``compute_metrics`` does).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from ._counting import RankCounts, i2t_counts, t2i_counts
from ._inputs import as_scores, as_text_to_item, check_chunk_size, check_no_nan

TIE_RULES = ("pessimistic", "optimistic", "average", "expand")
MEDIAN_RULES = ("numpy", "lower", "floor")
I2T_MODES = ("best_text", "group_max")
DEFAULT_KS = (1, 5, 10, 50)


def check_rule(value: str, allowed: Sequence[str], what: str) -> str:
    if value not in allowed:
        raise ConfigError(f"unknown {what} {value!r}. Available: {', '.join(allowed)}")
    return value


def ranks_from_counts(counts: RankCounts, ties: str) -> np.ndarray:
    """Apply a tie rule to :class:`RankCounts`. int64 ranks, float64 for ``"average"``; ``"expand"`` returns
    one entry per tied position, query by query."""
    check_rule(ties, TIE_RULES, "tie rule")
    if ties == "pessimistic":
        return counts.ahead + counts.tied_neg
    if ties == "optimistic":
        return counts.ahead.copy()
    if ties == "average":
        return counts.ahead + (counts.tied_neg + counts.tied_pos) / 2.0
    if counts.tied_pos.any():
        raise ConfigError("tie rule 'expand' is defined for one match per query; use it with group_max i2t")
    width = counts.tied_neg + 1
    offsets = np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width)
    return np.repeat(counts.ahead, width) + offsets


def _prepare(sims, text_to_item, chunk_size):
    scores = as_scores(sims)
    t2i = as_text_to_item(text_to_item, *scores.shape)
    chunk_size = check_chunk_size(chunk_size)
    check_no_nan(scores, chunk_size)
    return scores, t2i, chunk_size


def ranks_t2i(sims, text_to_item, *, ties: str = "pessimistic", chunk_size: int | None = None) -> np.ndarray:
    """0-based rank of each text's item among all items (num_texts entries, or more for ``ties="expand"``).

    ``chunk_size`` rows are compared at a time (default: about 4M scores per block)."""
    check_rule(ties, TIE_RULES, "tie rule")
    scores, t2i, chunk_size = _prepare(sims, text_to_item, chunk_size)
    return ranks_from_counts(t2i_counts(scores, t2i, chunk_size), ties)


def ranks_i2t(
    sims,
    text_to_item,
    *,
    mode: str = "best_text",
    ties: str = "pessimistic",
    chunk_size: int | None = None,
    allow_textless_items: bool = False,
) -> np.ndarray:
    """0-based rank of each item's texts, one entry per item (ascending item index).

    ``mode="best_text"``: rank of the item's best-scoring text among *all texts* (VSE++, CE, CLIP_benchmark);
    under ``"pessimistic"`` only non-matching texts tied with it count against it.
    ``mode="group_max"``: rank among *items*, each candidate item scored by its best text for this query
    (CLIP4Clip, X-Pool). An item without any text cannot be ranked: ConfigError, unless
    ``allow_textless_items=True``, which leaves such items out (they then get no entry)."""
    check_rule(ties, TIE_RULES, "tie rule")
    check_rule(mode, I2T_MODES, "item->text mode")
    if ties == "expand" and mode == "best_text":
        raise ConfigError("tie rule 'expand' is only defined for mode='group_max' (as CLIP4Clip uses it)")
    scores, t2i, chunk_size = _prepare(sims, text_to_item, chunk_size)
    return ranks_from_counts(i2t_counts(scores, t2i, mode, chunk_size, allow_textless_items), ties)


def _median(sorted_at, n: int, rule: str) -> float:
    """Median of n values given ``sorted_at(k)`` -> k-th smallest (0-based)."""
    lo, hi = sorted_at((n - 1) // 2), sorted_at(n // 2)
    if rule == "lower":  # torch.median: the lower of the two middle values
        return float(lo)
    med = (lo + hi) / 2.0  # numpy.median
    return float(np.floor(med)) if rule == "floor" else float(med)


def _check_ks(ks: Sequence[int]) -> None:
    if not ks or any(isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1 for k in ks):
        raise ConfigError(f"ks must be positive integers (the K of R@K), got {ks!r}")


def _recall(hits: int, n: int) -> float:
    return 100.0 * hits / n


def metrics_from_ranks(
    ranks,
    ks: Sequence[int] = DEFAULT_KS,
    median: str = "numpy",
    *,
    r1_exact_zero: bool = False,
) -> dict[str, float]:
    """``{"R@K": percent of ranks < K, ..., "MdR": median + 1, "MnR": mean + 1}`` from 0-based ranks.

    ``median``: ``"numpy"`` (mean of the two middle values for an even count), ``"lower"`` (the lower middle
    value, as ``torch.median``), ``"floor"`` (``floor(numpy median)``, VSE++). ``r1_exact_zero``: R@1 counts only
    ranks equal to 0 (collaborative-experts; differs from rank < 1 only for averaged ties such as 0.5).
    """
    check_rule(median, MEDIAN_RULES, "median rule")
    _check_ks(ks)
    r = np.asarray(ranks)
    if r.ndim != 1 or r.size == 0:
        raise ConfigError(f"ranks must be a non-empty 1-D array, got shape {tuple(r.shape)}")
    n = r.size
    out = {}
    for k in ks:
        hits = np.count_nonzero(r == 0) if (k == 1 and r1_exact_zero) else np.count_nonzero(r < k)
        out[f"R@{k}"] = _recall(int(hits), n)

    def kth(k: int):
        return np.partition(r, k)[k]

    out["MdR"] = _median(kth, n, median) + 1
    out["MnR"] = float(np.mean(r)) + 1
    return out


def metrics_from_counts(
    counts: RankCounts,
    ties: str,
    ks: Sequence[int] = DEFAULT_KS,
    median: str = "numpy",
    *,
    r1_exact_zero: bool = False,
) -> dict[str, float]:
    """Metrics for a tie rule straight from :class:`RankCounts`.

    Equals ``metrics_from_ranks(ranks_from_counts(counts, ties), ...)``; for ``"expand"`` it works on a
    histogram of positions instead of materialising every tied position (a constant 25k x 5k matrix would
    otherwise expand to 125M entries)."""
    check_rule(median, MEDIAN_RULES, "median rule")
    _check_ks(ks)
    if ties != "expand":
        return metrics_from_ranks(ranks_from_counts(counts, ties), ks, median, r1_exact_zero=r1_exact_zero)
    if counts.tied_pos.any():
        raise ConfigError("tie rule 'expand' is defined for one match per query; use it with group_max i2t")
    size = counts.num_candidates
    last = counts.ahead + counts.tied_neg  # each query covers positions ahead .. last
    hist = np.cumsum(np.bincount(counts.ahead, minlength=size + 1) - np.bincount(last + 1, minlength=size + 1))
    hist = hist[:size]  # hist[p] = number of entries at position p
    n = int(hist.sum())
    cum = np.cumsum(hist)
    out = {f"R@{k}": _recall(int(cum[min(k, size) - 1]), n) for k in ks}

    def kth(k: int):
        return int(np.searchsorted(cum, k, side="right"))

    out["MdR"] = _median(kth, n, median) + 1
    out["MnR"] = float(np.dot(np.arange(size, dtype=np.int64), hist) / n) + 1
    return out
