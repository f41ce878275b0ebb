"""CSLS, cross-domain similarity local scaling (Lample et al., ICLR 2018), against hubness.

``csls(S, k)[q, g] = 2 * S[q, g] - r_text[q] - r_item[g]`` where ``r_text[q]`` is the mean of the ``k`` highest
scores of row q (the query's k nearest items) and ``r_item[g]`` the mean of the ``k`` highest scores of column g
(the item's k nearest queries). ``r_text`` is a constant per row, so it never changes a text->item ranking; it
matters for item->text. Over the test queries ``r_item`` is transductive; with a querybank it comes from the
bank's queries instead (not transductive, usable on top-K candidates).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from . import RESCORERS
from .base import Rescorer, as_matrix, out_dtype, topk_rows


def _check_k(k) -> int:
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ConfigError(f"csls: k must be a positive integer, got {k!r}")
    return int(k)


def csls(sims, k: int = 10, r_item: np.ndarray | None = None) -> np.ndarray:
    """``2 S - r_text[:, None] - r_item[None, :]`` as a new array; ``r_item`` defaults to the column top-k means."""
    k = _check_k(k)
    s = as_matrix(sims)
    r_text = topk_rows(s, k, axis=1)
    if r_item is None:
        r_item = topk_rows(s, k, axis=0)
    out = 2.0 * s.astype(np.float64) - r_text[:, None] - np.asarray(r_item, dtype=np.float64)[None, :]
    return out.astype(out_dtype(s), copy=False)


@RESCORERS.register("csls", help="cross-domain similarity local scaling; transductive unless a --bank is given")
class CSLS(Rescorer):
    name = "csls"
    bank_use = "optional"

    def __init__(self, k: int = 10):
        self.k = _check_k(k)

    def params(self) -> dict:
        return {"k": self.k}

    def bank_requests(self) -> list[tuple]:
        return [("topk_mean", self.k)]

    def transductive(self, bank, direction):
        # t2i: r_item comes from the test queries unless a bank is given; i2t: r_text[t] averages text t's scores
        # over the test items, which are the i2t queries
        return bank is None or direction == "i2t"

    def dense(self, sims, direction="t2i", bank=None):
        return csls(sims, self.k, None if bank is None else bank.topk_mean(self.k))

    def topk(self, scores, cols, bank=None):
        if bank is None:
            return super().topk(scores, cols, bank)
        s = as_matrix(scores, "scores")
        c = np.asarray(cols)
        valid = c >= 0
        if valid.sum(axis=1).min() < self.k:
            raise ConfigError(f"csls on candidate lists needs at least k={self.k} candidates per query")
        r_text = np.where(valid, s, -np.inf)
        r_text = -np.sort(-r_text, axis=1)[:, : self.k].mean(axis=1)  # candidates are the row's top-K
        r_item = bank.topk_mean(self.k)[np.where(valid, c, 0)]
        out = 2.0 * s.astype(np.float64) - r_text[:, None] - r_item
        return np.where(valid, out, s).astype(out_dtype(s), copy=False)
