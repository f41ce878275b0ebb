"""QB-Norm: querybank normalisation with the Dynamic Inverted Softmax (Bogolin et al., CVPR 2022).

Given test similarities ``S`` (Q, G) and querybank similarities ``B`` (N, G) (training queries against the *same*
test gallery):

* activation set ``A`` = the gallery columns that are in the top-``k`` of at least one querybank row;
* ``Z[g] = sum_n exp(beta * B[n, g])``, the querybank's inverted-softmax normaliser of column g;
* ``mode="dynamic"``: a test row ``q`` is normalised only if its top-1 column ``argmax_g S[q, g]`` is in ``A``;
  ``mode="inverted"``: every row is normalised;
* a normalised score is ``exp(beta * S[q, g]) / Z[g]``; rows that are not normalised keep ``S[q, g]``.

Output domain (``output``): ``"log"`` (default) returns ``beta * S[q, g] - log Z[g]`` for normalised rows, i.e.
the log of the formula above, computed with a log-sum-exp so neither overflow nor underflow can create ties;
``"prob"`` returns the formula's values themselves (``exp`` of the log-domain score, float64). Both rank every
row exactly as the formula does (log is monotone). Rows that are not normalised are identical in both.
Only row-wise (text->item) rankings are meaningful: normalised and untouched rows live on different scales.

Ties: a test row's top-1 is its first maximal column; inside a bank row's top-k ties go to the lower column.
The caller's arrays are never modified (the reference implementation writes into its input).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from . import RESCORERS
from .bank import QueryBank
from .base import Rescorer, as_matrix, check_direction, out_dtype

MODES = ("dynamic", "inverted")
OUTPUTS = ("log", "prob")


def _check(beta: float, k: int, mode: str, output: str) -> None:
    if not np.isfinite(beta) or beta <= 0:
        raise ConfigError(f"qbnorm: beta must be a positive number, got {beta!r}")
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ConfigError(f"qbnorm: k must be a positive integer, got {k!r}")
    if mode not in MODES:
        raise ConfigError(f"qbnorm: mode must be one of {MODES}, got {mode!r}")
    if output not in OUTPUTS:
        raise ConfigError(f"qbnorm: output must be one of {OUTPUTS}, got {output!r}")


def _as_bank(bank_sims, num_items: int) -> QueryBank:
    bank = bank_sims if isinstance(bank_sims, QueryBank) else QueryBank.from_sims(as_matrix(bank_sims, "bank_sims"))
    if bank.num_items != num_items:
        raise ConfigError(f"qbnorm: the querybank scores {bank.num_items} items but test_sims has {num_items} "
                          "columns; the bank must be scored against the same gallery")
    return bank


def qb_norm(test_sims, bank_sims, beta: float = 20.0, k: int = 1, mode: str = "dynamic",
            output: str = "log") -> np.ndarray:
    """QB-Norm of ``test_sims`` (Q, G) with querybank ``bank_sims`` ((N, G) array or :class:`QueryBank`).

    Returns a new (Q, G) array (input dtype, at least float32; float64 for ``output="prob"``); see the module
    docstring for the exact formula and output domain. Inputs are left unmodified.
    """
    _check(beta, k, mode, output)
    s = as_matrix(test_sims, "test_sims")
    bank = _as_bank(bank_sims, s.shape[1])
    stats = bank.compute([("lse", float(beta)), ("active", int(k))])
    lse, active = stats[("lse", float(beta))], stats[("active", int(k))]
    rows = np.arange(s.shape[0]) if mode == "inverted" else np.flatnonzero(active[s.argmax(axis=1)])
    out = np.array(s, dtype=np.float64 if output == "prob" else out_dtype(s), copy=True)
    step = max(1, (1 << 22) // s.shape[1])  # row blocks: the float64 working copy stays ~32 MiB
    for a in range(0, len(rows), step):
        r = rows[a : a + step]
        norm = beta * s[r].astype(np.float64) - lse  # (block, G) log-domain scores
        out[r] = np.exp(norm) if output == "prob" else norm
    return out


def qb_norm_topk(scores, cols, bank: QueryBank, beta: float = 20.0, k: int = 1, mode: str = "dynamic",
                 output: str = "log") -> np.ndarray:
    """QB-Norm on candidate lists: ``scores`` (Q, K) of gallery columns ``cols`` (Q, K), e.g. a top-K search.
    A row's top-1 is its best-scoring valid candidate (the first one on ties). When the candidates are each row's
    top-K, this equals :func:`qb_norm` on the dense matrix read at ``cols``. Missing slots (``cols == -1``) are
    left as they are."""
    _check(beta, k, mode, output)
    sc = as_matrix(scores, "scores")
    c = np.asarray(cols)
    if c.shape != sc.shape:
        raise ConfigError(f"scores {sc.shape} and cols {c.shape} must have the same shape")
    stats = bank.compute([("lse", float(beta)), ("active", int(k))])
    lse, active = stats[("lse", float(beta))], stats[("active", int(k))]
    valid = c >= 0
    if c.size and (c[valid] >= bank.num_items).any():
        raise ConfigError(f"candidate column ids exceed the querybank's gallery ({bank.num_items} items)")
    if mode == "inverted":
        rows = np.arange(sc.shape[0])
    else:  # each row's top-1 is its best valid candidate (first on ties: lists are sorted by score)
        masked = np.where(valid, sc.astype(np.float64), -np.inf)
        has = valid.any(axis=1)
        top1 = c[np.arange(len(c)), masked.argmax(axis=1)] if sc.shape[1] else np.zeros(len(c), int)
        rows = np.flatnonzero(has & active[np.where(has, top1, 0)])
    out = np.array(sc, dtype=np.float64 if output == "prob" else out_dtype(sc), copy=True)
    sub_c = np.where(valid[rows], c[rows], 0)
    norm = beta * sc[rows].astype(np.float64) - lse[sub_c]
    norm = np.exp(norm) if output == "prob" else norm
    out[rows] = np.where(valid[rows], norm, out[rows])
    return out


@RESCORERS.register("qbnorm", help="QB-Norm, dynamic inverted softmax over a querybank (needs --bank)")
class QBNorm(Rescorer):
    """Step form of :func:`qb_norm` (t2i only: the bank holds text queries)."""

    name = "qbnorm"
    bank_use = "required"

    def __init__(self, beta: float = 20.0, k: int = 1, mode: str = "dynamic", output: str = "log"):
        _check(float(beta), k, mode, output)
        self.beta, self.k, self.mode, self.output = float(beta), int(k), mode, output

    def params(self) -> dict:
        return {"beta": self.beta, "k": self.k, "mode": self.mode, "output": self.output}

    def bank_requests(self) -> list[tuple]:
        return [("lse", self.beta), ("active", self.k)]

    def directions(self, bank) -> tuple[str, ...]:
        return ("t2i",)

    def dense(self, sims, direction="t2i", bank=None):
        self._need_bank(bank)
        if check_direction(direction) == "i2t":
            return as_matrix(sims)
        return qb_norm(sims, bank, self.beta, self.k, self.mode, self.output)

    def topk(self, scores, cols, bank=None):
        self._need_bank(bank)
        return qb_norm_topk(scores, cols, bank, self.beta, self.k, self.mode, self.output)
